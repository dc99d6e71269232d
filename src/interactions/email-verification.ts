// The emailed verification link (GET /verify-email?token=…) and asking for a new one (POST /verify-email/resend).
// The same request for a new link is also answered under /interaction/:uid (see sign-up.ts), where the
// sign-in pages' CSRF cookie is scoped.
import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { EmailVerification, VERIFY_EMAIL_PATH, addressKey } from '../accounts/email-verification.ts';
import { normalizeEmail } from '../accounts/users.ts';
import { Pages, formBody, formField, requireCsrf } from '../http/pages.ts';
import type { LimitDecision } from '../limits/index.ts';
import type { Runtime } from '../runtime.ts';

const RESEND_PATH = `${VERIFY_EMAIL_PATH}/resend`;
const emailAddress = z.email().max(320);
export const INVALID_EMAIL_MESSAGE = 'Enter an email address, like name@example.com.';

export function createEmailVerification(runtime: Runtime): EmailVerification {
  return new EmailVerification({
    users: runtime.users, tokens: runtime.accountTokens, mailer: runtime.mailer,
    issuer: runtime.config.issuer, ttlSeconds: runtime.config.accounts.emailVerificationTtl,
  });
}

export type NewLinkAnswer = LimitDecision | { allowed: true; invalidEmail: true };

/**
 * Someone asks for a new verification link for an address. Limited per IP and per address (hashed, existing
 * or not, so a refusal says nothing about accounts). Only an existing, enabled, unverified account gets a
 * message, sent after the answer: the answer and its timing are the same whoever owns the address.
 */
export async function requestNewVerificationLink(
  runtime: Runtime, verification: EmailVerification, emailInput: string, ip: string,
): Promise<NewLinkAnswer> {
  const email = normalizeEmail(emailInput);
  if (!emailAddress.safeParse(email).success) return { allowed: true, invalidEmail: true };
  const decision = await runtime.limits.rates.consumeAll([
    ['verification-resend-ip', ip],
    ['verification-resend-account', addressKey(email)],
  ]);
  if (!decision.allowed) return decision;
  const user = await runtime.users.findByEmail(email);
  if (user && !user.emailVerified && !user.disabled) {
    // Not awaited: a message takes the mail server's time, which would tell who has an account. A failure
    // is logged (never the address or the link); the person can ask again.
    void verification.sendLink(user).catch((error: unknown) => {
      runtime.logger.warn({ err: error }, 'a new verification link could not be sent');
    });
  }
  return decision;
}

export function emailVerificationRoutes(runtime: Runtime): Router {
  const { auditTrail, provider, users } = runtime;
  const router = new Router();
  const pages = new Pages(runtime.views);
  const verification = createEmailVerification(runtime);

  function render(ctx: Context, template: string, data: Record<string, unknown>, status = 200): void {
    pages.render(ctx, template, { resendAction: RESEND_PATH, ...data }, { status, csrfPath: VERIFY_EMAIL_PATH });
  }

  /** The signed-in person's address, to fill in the form for a new link. */
  async function signedInEmail(ctx: Context): Promise<string | undefined> {
    const session = await provider.Session.get(ctx as never);
    const user = session.accountId ? await users.findById(session.accountId) : null;
    return user?.email;
  }

  router.get(VERIFY_EMAIL_PATH, async (ctx) => {
    // The router answers HEAD with this handler too; link checkers send HEAD, and must not use up the link.
    if (ctx.method === 'HEAD') {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      return;
    }
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const result = await verification.verify(token);
    if (result.ok) {
      await auditTrail.record({
        action: 'email.verified', outcome: 'success', subjectUserId: result.user.id, subjectEmail: result.user.email,
        ip: ctx.ip, userAgent: ctx.get('user-agent'),
      });
      render(ctx, 'email-verified', { verified: true, email: result.user.email });
      return;
    }
    // One message for every reason: which one it was is of no use to the person and of some to a prober.
    render(ctx, 'email-verified', { verified: false, email: await signedInEmail(ctx) }, result.reason === 'unknown' ? 400 : 410);
  });

  router.post(RESEND_PATH, formBody, async (ctx) => {
    requireCsrf(ctx);
    const email = formField(ctx, 'email');
    const answer = await requestNewVerificationLink(runtime, verification, email, ctx.ip);
    if (!answer.allowed) {
      pages.tooManyAttempts(ctx, answer, { csrfPath: VERIFY_EMAIL_PATH, action: 'sending verification emails' });
      return;
    }
    if ('invalidEmail' in answer) {
      render(ctx, 'check-email', { email, resendError: INVALID_EMAIL_MESSAGE }, 400);
      return;
    }
    render(ctx, 'check-email', { email: normalizeEmail(email), resent: true });
  });

  return router;
}
