// The emailed verification link: GET /verify-email?token=… only checks it and shows a "Confirm" button, whose
// POST /verify-email uses it; and asking for a new link (POST /verify-email/resend). The same request for a
// new link is also answered under /interaction/:uid (see sign-up.ts), where the sign-in pages' CSRF cookie is.
import Router from '@koa/router';
import type { Context } from 'koa';
import { PATHS } from '../web/paths.ts';
import { isEmailAddress, normalizeEmail } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { TooManyAttempts } from '../http/errors.ts';
import { Pages, formBody, formField, queryField, requireCsrf } from '../http/pages.ts';
import type { LimitDecision } from '../limits/index.ts';
import { accountKey } from '../limits/login-guard.ts';
import type { Runtime } from '../runtime.ts';
import { takeSignInToContinue } from './return-to-sign-in.ts';

export const INVALID_EMAIL_MESSAGE = 'Enter an email address, like name@example.com.';

export type NewLinkAnswer = LimitDecision | { allowed: true; invalidEmail: true };

/**
 * Someone asks for a new verification link for an address. Limited per IP and per address (hashed, existing
 * or not, so a refusal says nothing about accounts). Only an existing, enabled, unverified account gets a
 * message, looked up and sent after the answer: the answer and its timing are the same whoever owns the address.
 */
export async function requestNewVerificationLink(ctx: Context, runtime: Runtime, emailInput: string): Promise<NewLinkAnswer> {
  const email = normalizeEmail(emailInput);
  const key = isEmailAddress(email) ? accountKey(email) : undefined;
  if (!key) return { allowed: true, invalidEmail: true };
  const decision = await runtime.limits.rates.consumeAll([
    ['verification-resend-ip', ctx.ip],
    ['verification-resend-account-ip', `${key}:${ctx.ip}`],
    ['verification-resend-account', key],
  ]);
  if (!decision.allowed) return decision;
  afterResponse(ctx, runtime.afterResponseWork, 'new verification link', () => runtime.flows.emailVerification.sendNewLink(email));
  return decision;
}

export function emailVerificationRoutes(runtime: Runtime): Router {
  const { engine, users, limits } = runtime;
  const verification = runtime.flows.emailVerification;
  const router = new Router();
  const pages = new Pages(runtime.views);

  function render(ctx: Context, template: string, data: Record<string, unknown>, status = 200): void {
    pages.render(ctx, template, { resendAction: PATHS.resendVerification, ...data }, { status, csrfPath: PATHS.verifyEmail });
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

  /** Following up emailed links is limited per IP: tokens cannot be guessed, but nobody gets to try many. */
  async function countLinkUse(ctx: Context): Promise<void> {
    const decision = await limits.rates.consume('emailed-link-ip', ctx.ip);
    if (!decision.allowed) throw new TooManyAttempts(decision, { action: 'confirming email addresses' });
  }

  // Opening the link never uses it: mail scanners and link previews open links before (or instead of) the
  // person, and would otherwise confirm an address for whoever signed up with it. The button below does.
  router.get(PATHS.verifyEmail, async (ctx) => {
    // The router answers HEAD with this handler too; link checkers send HEAD, and get nothing looked up.
    if (ctx.method === 'HEAD') {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      return;
    }
    const token = queryField(ctx, 'token');
    if (!token) return linkInvalid(ctx);
    await countLinkUse(ctx);
    const result = await verification.check(token);
    if (!result.ok) return linkInvalid(ctx);
    render(ctx, 'confirm-email', { token, email: result.user.email });
  });

  router.post(PATHS.verifyEmail, formBody, async (ctx) => {
    requireCsrf(ctx);
    await countLinkUse(ctx);
    const result = await verification.verify(formField(ctx, 'token'), { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    if (!result.ok) return linkInvalid(ctx);
    render(ctx, 'email-verified', { verified: true, email: result.user.email, continueTo: await takeSignInToContinue(ctx, engine, result.user.email) });
  });

  router.post(PATHS.resendVerification, formBody, async (ctx) => {
    requireCsrf(ctx);
    const email = formField(ctx, 'email');
    const answer = await requestNewVerificationLink(ctx, runtime, email);
    if (!answer.allowed) {
      throw new TooManyAttempts(answer, { action: 'sending verification emails' });
    }
    if ('invalidEmail' in answer) {
      render(ctx, 'check-email', { email, resendError: INVALID_EMAIL_MESSAGE }, 400);
      return;
    }
    render(ctx, 'check-email', { email: normalizeEmail(email), resent: true });
  });

  return router;
}
