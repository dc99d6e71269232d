// Account console: where the person is signed in. Lists their sessions (device, IP, when, which
// applications), ends one, ends all ("sign out everywhere"), and signs this browser out.
import type { Context } from 'koa';
import { HttpError } from '../kit/errors.ts';
import { formBody, requireCsrf } from '../kit/pages.ts';
import type { SessionSummary } from '../../oidc/account-sessions.ts';
import type { WebDependencies } from '../dependencies.ts';
import { PATHS, within } from '../paths.ts';
import type { AccountPages, AccountRouter, AccountState } from './index.ts';

/** Session uids are the engine's nanoids; anything else cannot be one of the person's sessions. */
const SESSION_UID = /^[\w-]{1,64}$/;

/** Notices shown after a redirect, named by a fixed key (never text taken from the address). */
const NOTICES = new Map([
  ['ended', 'That session is signed out. Applications signed in through it no longer have access.'],
]);

const signedAt = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeStyle: 'short', timeZone: 'UTC' });

export function sessionRoutes(router: AccountRouter, deps: Pick<WebDependencies, 'engine' | 'accountSessions'>, pages: AccountPages): void {
  const { accountSessions, engine } = deps;

  router.get(within('account', 'accountSessions'), async (ctx) => {
    const { user, session: current } = ctx.state.account;
    const sessions = await accountSessions.list(user.id);
    const notice = typeof ctx.query.notice === 'string' ? NOTICES.get(ctx.query.notice) : undefined;
    pages.render(ctx, 'account/sessions', {
      title: 'Where you are signed in',
      notice,
      sessions: sessions.map((session) => present(session, session.uid === current.uid)),
    });
  });

  router.post(within('account', 'accountSessionsEndAll'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user, session } = ctx.state.account;
    const ended = await accountSessions.endAll(user.id, { reason: 'signed_out_everywhere', request: origin(ctx) });
    signedOut(ctx, 'everywhere', ended.frontChannel.get(session.uid) ?? []);
  });

  router.post(within('account', 'accountSessionEnd'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user, session: current } = ctx.state.account;
    const uid = ctx.params.uid ?? '';
    if (uid === current.uid) {
      await endCurrent(ctx);
      return;
    }
    // Not one of the person's sessions (someone else's, gone, made up): the same answer for each.
    if (!SESSION_UID.test(uid) || !(await accountSessions.end(user.id, uid, { reason: 'session_ended', request: origin(ctx) }))) {
      throw new HttpError(404, 'That session was not found. It may have ended already.');
    }
    ctx.status = 303;
    ctx.redirect(`${PATHS.accountSessions}?notice=ended`);
  });

  router.post(within('account', 'accountSignOut'), formBody, async (ctx) => {
    requireCsrf(ctx);
    await endCurrent(ctx);
  });

  /** Ends this browser's session and its grants, forgets its cookie, and says so. */
  async function endCurrent(ctx: Context): Promise<void> {
    const { user, session } = (ctx.state as AccountState).account;
    const ended = await accountSessions.end(user.id, session.uid, { reason: 'signed_out', request: origin(ctx) });
    signedOut(ctx, 'here', ended?.frontChannel ?? []);
  }

  /** Says so, and signs this browser out of its applications that asked for it (front-channel logout). */
  function signedOut(ctx: Context, scope: 'here' | 'everywhere', frontChannel: readonly string[]): void {
    // The engine's session cookie (and its signature): the session behind it is gone already.
    engine.clearSessionCookie(ctx);
    pages.render(ctx, 'account/signed-out', { title: 'Signed out', scope, frontChannel }, 200, frontChannel);
  }
}

function present(session: SessionSummary, current: boolean) {
  const signedInAt = session.loginTs === undefined ? undefined : new Date(session.loginTs * 1000);
  return {
    uid: session.uid,
    current,
    device: session.device ?? 'Unknown device',
    ip: session.ip,
    signedInAt: signedInAt?.toISOString(),
    signedInAtText: signedInAt ? `${signedAt.format(signedInAt)} UTC` : undefined,
    twoFactor: session.amr.includes('otp'),
    applications: session.applications.map((application) => application.name),
  };
}

function origin(ctx: Context): { ip: string; userAgent: string } {
  return { ip: ctx.ip, userAgent: ctx.get('user-agent') };
}
