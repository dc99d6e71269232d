// The account console under /account: a signed-in person sees their account and manages its password,
// email, second factor and sessions. It reads the engine's own session cookie, so being signed in here
// is being signed in for every application; a visitor without a session is sent through the login pages.
import { createHash, randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import type { User } from '../../accounts/users.ts';
import { Pages } from '../kit/pages.ts';
import { HttpError } from '../kit/errors.ts';
import { scopeCsrfTokens } from '../kit/csrf.ts';
import type { WebDependencies } from '../dependencies.ts';
import { ACCOUNT_CONSOLE_CLIENT_ID } from '../../oidc/account-console-client.ts';
import { PATHS, within } from '../paths.ts';
import { ACR_SECOND_FACTOR, secondFactorDecision } from '../../oidc/assurance.ts';
import { passwordRoutes } from './password.ts';
import { emailRoutes } from './email.ts';
import { twoFactorRoutes } from './two-factor.ts';
import { sessionRoutes } from './sessions.ts';
import { applicationRoutes } from './applications.ts';

/** What the console knows about the visitor once signed in (ctx.state.account). */
export interface SignedIn {
  user: User;
  /** The engine session: its uid names it on the sessions page; amr/acr say how the person signed in. */
  session: { uid: string; accountId: string; loginTs?: number | undefined; amr?: string[] | undefined; acr?: string | undefined };
}

export interface AccountState {
  account: SignedIn;
}

export type AccountRouter = Router<AccountState>;

/** Renders account pages: CSRF scoped to /account, forms post only to this server. */
export class AccountPages {
  readonly #pages: Pages;

  constructor(pages: Pages) {
    this.#pages = pages;
  }

  /** `frames`: applications' front-channel logout URLs the page loads (the signed-out page). */
  render(ctx: Context, template: string, data: Record<string, unknown>, status = 200, frames: readonly string[] = []): void {
    this.#pages.render(ctx, template, { ...data, account: ctx.state.account }, { status, frames });
  }
}

const SIGN_IN_COOKIE = 'gatehouse.account-sign-in';

export function accountConsoleRoutes(deps: WebDependencies): Router {
  const { views } = deps;
  const router: AccountRouter = new Router<AccountState>({ prefix: PATHS.account });
  const pages = new AccountPages(new Pages(views));

  router.get(within('account', 'accountCallback'), async (ctx) => {
    const started = ctx.cookies.get(SIGN_IN_COOKIE, { signed: true });
    ctx.cookies.set(SIGN_IN_COOKIE, null, { path: PATHS.account });
    const { state, returnTo } = parseSignIn(started);
    if (!state || ctx.query.state !== state) throw new HttpError(400, 'This sign-in did not start here. Open your account page again.');
    if (typeof ctx.query.error === 'string') {
      throw new HttpError(400, ctx.query.error === 'access_denied' ? 'You cancelled signing in.' : 'Signing in did not complete. Open your account page again.');
    }
    // The code is never exchanged: the session cookie the engine just set is the console's credential,
    // and without the PKCE verifier (discarded) the code is useless to anyone who sees it.
    ctx.status = 303;
    ctx.redirect(returnTo);
  });

  router.use(requireSignedIn(deps));

  router.get(within('account', 'account'), (ctx) => {
    pages.render(ctx, 'account/overview', { title: 'Your account' });
  });

  passwordRoutes(router, deps, pages);
  emailRoutes(router, deps, pages);
  twoFactorRoutes(router, deps, pages);
  sessionRoutes(router, deps, pages);
  applicationRoutes(router, deps, pages);
  return router;
}

/**
 * Every /account page (but the callback): the signed-in person, or a redirect to sign in and come back.
 * A session signed in with the password alone, for an account that must use its second factor (it has
 * one on, or its role requires one), signs in again through the step-up, as an application would.
 */
function requireSignedIn({ engine, users, secondFactor, config }: Pick<WebDependencies, 'engine' | 'users' | 'secondFactor' | 'config'>) {
  return async function signedIn(ctx: Context, next: Next): Promise<void> {
    const session = await engine.browserSession(ctx);
    const user = session.accountId ? await users.findById(session.accountId) : null;
    const needsSecondFactor = user && session.acr !== ACR_SECOND_FACTOR && (await secondFactorDecision(
      (accountId) => secondFactor.loginRequirement(accountId), { accountId: user.id, client: undefined, acrValues: undefined },
    )).required;
    if (!user || user.disabled || !session.accountId || needsSecondFactor) {
      if (ctx.method !== 'GET') throw new HttpError(403, 'You are signed out. Open your account page and sign in again.');
      startSignIn(ctx, config.issuer);
      return;
    }
    ctx.state.account = {
      user,
      session: { uid: session.uid, accountId: session.accountId, loginTs: session.loginTs, amr: session.amr, acr: session.acr },
    } satisfies SignedIn;
    // A form of the console acts on whoever is signed in when it is sent: it must have been shown to that sign-in.
    scopeCsrfTokens(ctx, JSON.stringify([session.uid, session.accountId, session.loginTs]));
    await next();
  };
}

function startSignIn(ctx: Context, issuer: string): void {
  const state = randomBytes(16).toString('base64url');
  // PKCE is required of every client; the verifier is thrown away with the code (see the callback).
  const challenge = createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url');
  const returnTo = isConsolePath(ctx.path) ? ctx.path : PATHS.account;
  ctx.cookies.set(SIGN_IN_COOKIE, JSON.stringify({ state, returnTo }), { signed: true, httpOnly: true, sameSite: 'lax', path: PATHS.account, overwrite: true });
  const authorize = new URL('/auth', issuer);
  authorize.search = new URLSearchParams({
    client_id: ACCOUNT_CONSOLE_CLIENT_ID,
    response_type: 'code',
    scope: 'openid',
    redirect_uri: `${issuer}${PATHS.accountCallback}`,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
  }).toString();
  ctx.set('Cache-Control', 'no-store');
  ctx.redirect(authorize.href);
}

/** A page of the console, to come back to after signing in (never a path elsewhere, nor a crafted one). */
function isConsolePath(path: string): boolean {
  return path === PATHS.account || (path.startsWith(`${PATHS.account}/`) && /^[\w/-]*$/.test(path));
}

function parseSignIn(cookie: string | undefined): { state?: string; returnTo: string } {
  try {
    const parsed = JSON.parse(cookie ?? '{}') as { state?: unknown; returnTo?: unknown };
    const returnTo = typeof parsed.returnTo === 'string' && isConsolePath(parsed.returnTo) ? parsed.returnTo : PATHS.account;
    return { ...(typeof parsed.state === 'string' ? { state: parsed.state } : {}), returnTo };
  } catch {
    return { returnTo: PATHS.account };
  }
}
