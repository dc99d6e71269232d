// The emailed verification link: GET /verify-email?token=… only checks it and shows a "Confirm" button, whose
// POST /verify-email uses it; and asking for a new link (POST /verify-email/resend). The same request for a
// new link is also answered under /interaction/:uid (see sign-up.ts), where the sign-in pages' CSRF cookie is.
import Router from '@koa/router';
import type { Context } from 'koa';
import { isEmailAddress, normalizeEmail } from '../../accounts/users.ts';
import { accountKey } from '../../limits/login-guard.ts';
import { networkOf } from '../../limits/index.ts';
import type { WebDependencies } from '../dependencies.ts';
import { Pages, formBody, formField, requireCsrf } from '../kit/pages.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { PATHS } from '../paths.ts';
import { takeSignInToContinue } from '../kit/return-to-sign-in.ts';
import { emailedLinkRoutes } from './emailed-link.ts';

export const INVALID_EMAIL_MESSAGE = 'Enter an email address, like name@example.com.';

/** The "check your email" page's data and status, after a new link was asked for. */
export interface NewLinkPage {
  status: 200 | 400;
  data: { email: string; resent?: true; resendError?: string };
}

/**
 * Someone asks for a new verification link for an address. Limited per IP and per address (hashed, existing
 * or not, so a refusal says nothing about accounts; over a limit, the 429 page is thrown). Only an existing,
 * enabled, unverified account gets a message, looked up and sent after the answer: the answer and its timing
 * are the same whoever owns the address.
 */
export async function requestNewVerificationLink(
  ctx: Context, deps: Pick<WebDependencies, 'limits' | 'flows' | 'afterResponseWork' | 'database'>, emailInput: string,
): Promise<NewLinkPage> {
  const email = normalizeEmail(emailInput);
  if (!isEmailAddress(email)) return { status: 400, data: { email: emailInput, resendError: INVALID_EMAIL_MESSAGE } };
  const key = accountKey(email)!;
  const decision = await deps.limits.rates.consumeAll([
    ['verification-resend-ip', networkOf(ctx.ip)],
    ['verification-resend-account-ip', `${key}:${networkOf(ctx.ip)}`],
    ['verification-resend-account', key],
  ]);
  if (!decision.allowed) throw new TooManyAttempts(decision, { action: 'sending verification emails' });
  // Looked up after the answer, but not with the database down: a 503 then, not a link promised and lost.
  await deps.database.ping();
  deps.afterResponseWork.run(ctx, 'new verification link', () => deps.flows.emailVerification.sendNewLink(email));
  return { status: 200, data: { email, resent: true } };
}

export function emailVerificationRoutes(deps: Pick<WebDependencies, 'views' | 'engine' | 'users' | 'limits' | 'flows' | 'afterResponseWork' | 'database'>): Router {
  const { engine, users, limits } = deps;
  const verification = deps.flows.emailVerification;
  const router = new Router();
  const pages = new Pages(deps.views);

  function render(ctx: Context, template: string, data: Record<string, unknown>, status = 200): void {
    pages.render(ctx, template, { resendAction: PATHS.resendVerification, ...data }, { status });
  }

  /** The signed-in person's address, to fill in the form for a new link. */
  async function signedInEmail(ctx: Context): Promise<string | undefined> {
    const session = await engine.browserSession(ctx);
    const user = session.accountId ? await users.findById(session.accountId) : null;
    return user?.email;
  }

  /**
   * One page and one status for every reason (unknown, used, expired, replaced, sent to an old address):
   * which one it was is of no use to the person and of some to a prober.
   */
  async function linkInvalid(ctx: Context): Promise<void> {
    render(ctx, 'email-verified', { verified: false, email: await signedInEmail(ctx) }, 400);
  }

  // Opening the link never uses it, or mail scanners would confirm an address for whoever signed up with it.
  emailedLinkRoutes(router, limits.rates, {
    path: 'verifyEmail',
    paused: 'confirming email addresses',
    check: async (token) => {
      const result = await verification.check(token);
      return result.ok ? result.user : undefined;
    },
    showButton: (ctx, token, user) => render(ctx, 'confirm-email', { token, email: user.email }),
    showInvalid: linkInvalid,
    async use(ctx, token) {
      const result = await verification.verify(token, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
      if (!result.ok) return linkInvalid(ctx);
      render(ctx, 'email-verified', { verified: true, email: result.user.email, continueTo: await takeSignInToContinue(ctx, engine, result.user.email) });
    },
  });

  router.post(PATHS.resendVerification, formBody, async (ctx) => {
    requireCsrf(ctx);
    const page = await requestNewVerificationLink(ctx, deps, formField(ctx, 'email'));
    render(ctx, 'check-email', page.data, page.status);
  });

  return router;
}
