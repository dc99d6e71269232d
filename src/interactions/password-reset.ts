// Password reset by email for people who cannot sign in: the request form, which answers the same way
// whether or not an account has the address, and the emailed link's form, which sets the new password and
// ends every session and grant of the account.
import Router from '@koa/router';
import type { Context } from 'koa';
import { minimumPasswordLength } from '../accounts/password-policy.ts';
import { isEmailAddress, normalizeEmail, type User } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { Pages, formBody, formField, queryField, requireCsrf } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH, RESET_PASSWORD_PATH, newPasswordErrors } from '../http/password-forms.ts';
import { inWords } from '../http/rate-limits.ts';
import { accountKey } from '../limits/login-guard.ts';
import type { Runtime } from '../runtime.ts';
import { takeSignInToContinue } from './return-to-sign-in.ts';
import { trustThisDevice } from './trusted-device.ts';

// The CSRF cookie of these pages is scoped here: the request form and the link's form share it.
const CSRF_PATH = '/password';

export function passwordResetRoutes(runtime: Runtime): Router {
  const { config, users, accountTokens, auditTrail, limits, logger } = runtime;
  const router = new Router();
  const pages = new Pages(runtime.views);
  const ttlSeconds = config.accounts.passwordResetTtl;
  const minimumLength = minimumPasswordLength(config.passwordPolicy);
  const render = (ctx: Context, template: string, data: Record<string, unknown>, status = 200) =>
    pages.render(ctx, template, data, { status, csrfPath: CSRF_PATH });

  router.get(FORGOT_PASSWORD_PATH, (ctx) => {
    const email = typeof ctx.query.email === 'string' ? ctx.query.email.slice(0, 320) : '';
    render(ctx, 'password-forgot', { email });
  });

  router.post(FORGOT_PASSWORD_PATH, formBody, async (ctx) => {
    requireCsrf(ctx);
    const typed = formField(ctx, 'email').slice(0, 320);
    const email = normalizeEmail(typed);
    if (!isEmailAddress(email)) {
      render(ctx, 'password-forgot', { email: typed, error: 'Enter the email address of your account, like name@example.com.' }, 400);
      return;
    }
    // Counted by address whether or not an account has it, so a refusal tells nothing either. The address's
    // own limit holds from any number of IPs: one mailbox cannot be flooded with links.
    const key = accountKey(email);
    const refusal = await limits.rates.consumeAll([['reset-ip', ctx.ip], ['reset-account-ip', `${key}:${ctx.ip}`], ['reset-account', `${key}`]]);
    if (!refusal.allowed) {
      pages.tooManyAttempts(ctx, refusal, { csrfPath: CSRF_PATH, action: 'sending password reset links' });
      return;
    }
    // The page goes out first, identical for every address; looking the account up, issuing the link and
    // talking to the mail server happen after it, so neither the answer nor its timing depends on them.
    render(ctx, 'password-forgot-sent', { email, expiresIn: inWords(ttlSeconds) });
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    afterResponse(ctx, logger, 'password reset request', () => sendResetLink(email, seen));
  });

  async function sendResetLink(email: string, seen: { ip: string; userAgent: string }): Promise<void> {
    const user = await users.findByEmail(email);
    if (!user || user.disabled) {
      // A disabled account gets no link: a new password would not let it sign in.
      await auditTrail.record({ action: 'password_reset.requested', outcome: 'failure', subjectEmail: email, subjectUserId: user?.id, ...seen, detail: { reason: user ? 'account_disabled' : 'unknown_email' } });
      return;
    }
    const token = await accountTokens.issue(user.id, 'reset_password', user.email, ttlSeconds);
    const link = `${config.issuer}${RESET_PASSWORD_PATH}?token=${token}`;
    let delivered;
    try {
      // While the mail server is down the link is queued and sent once it is back (the page said "check your email").
      delivered = await runtime.mailQueue.deliver({ to: user.email, template: 'reset-password', data: { link, expiresInMinutes: Math.max(1, Math.ceil(ttlSeconds / 60)) } });
    } catch (error) {
      await auditTrail.record({ action: 'password_reset.requested', outcome: 'failure', subjectEmail: user.email, subjectUserId: user.id, ...seen, detail: { reason: 'mail_not_sent' } });
      throw error;
    }
    await auditTrail.record({ action: 'password_reset.requested', outcome: 'success', subjectEmail: user.email, subjectUserId: user.id, ...seen, ...(delivered === 'queued' ? { detail: { mail: 'queued' } } : {}) });
  }

  /** The account a reset link is for, if the link is still good and still goes to the account's address. */
  async function accountOfLink(token: string): Promise<User | undefined> {
    const link = await accountTokens.peek(token, 'reset_password');
    if (!link.ok) return undefined;
    const user = await users.findById(link.userId);
    // A link sent to an address the account no longer has proves nothing about the person now reading it.
    if (!user || user.disabled || user.email !== normalizeEmail(link.email)) return undefined;
    return user;
  }

  function linkInvalid(ctx: Context): void {
    render(ctx, 'link-invalid', {
      title: 'This link no longer works',
      message: `Password reset links work once, only the newest one sent works, and each one sent expires ${inWords(ttlSeconds)}. Ask for a new link.`,
      next: { href: FORGOT_PASSWORD_PATH, label: 'Ask for a new link' },
    }, 400);
  }

  /** Counts a use of an emailed link per IP (tokens cannot be guessed, but nobody may keep trying); false once refused. */
  async function linkUseAllowed(ctx: Context): Promise<boolean> {
    const decision = await limits.rates.consume('emailed-link-ip', ctx.ip);
    if (decision.allowed) return true;
    pages.tooManyAttempts(ctx, decision, { csrfPath: CSRF_PATH, action: 'using emailed links' });
    return false;
  }

  // Only looks at the link (mail scanners open links before people do): it is used when the form is sent.
  router.get(RESET_PASSWORD_PATH, async (ctx) => {
    if (!await linkUseAllowed(ctx)) return;
    const token = queryField(ctx, 'token');
    const user = await accountOfLink(token);
    if (!user) {
      linkInvalid(ctx);
      return;
    }
    render(ctx, 'password-reset', { token, email: user.email, minimumLength });
  });

  router.post(RESET_PASSWORD_PATH, formBody, async (ctx) => {
    requireCsrf(ctx);
    if (!await linkUseAllowed(ctx)) return;
    const token = formField(ctx, 'token');
    const password = formField(ctx, 'password');
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    const user = await accountOfLink(token);
    if (!user) {
      await auditTrail.record({ action: 'password_reset.completed', outcome: 'failure', ...seen, detail: { reason: 'link_invalid' } });
      linkInvalid(ctx);
      return;
    }
    // A refused password leaves the link usable: the person tries another one on the same page.
    const errors = newPasswordErrors(users, user, password, formField(ctx, 'confirm'));
    if (errors) {
      render(ctx, 'password-reset', { token, email: user.email, minimumLength, errors }, 400);
      return;
    }
    // Exactly one of two concurrent submissions gets here with the link.
    const redeemed = await accountTokens.redeem(token, 'reset_password');
    if (!redeemed.ok || redeemed.userId !== user.id) {
      await auditTrail.record({ action: 'password_reset.completed', outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, ...seen, detail: { reason: 'link_invalid' } });
      linkInvalid(ctx);
      return;
    }
    // The link proved the person reads the address it went to: the address is verified too.
    const updated = await users.setPassword(user.id, password, { confirmedEmail: redeemed.email });
    if (!updated) {
      linkInvalid(ctx);
      return;
    }
    // The password is new before anything old is ended, so no session can start with the old one after.
    await runtime.accountTokens.revoke(user.id, 'change_email');
    // Before this link nobody had proved they read the address: whoever signed up with it may have enrolled
    // a second factor of their own, which would keep the owner out (or a way in for that someone).
    const secondFactorRemoved = !user.emailVerified && await runtime.secondFactor.removeForAccountRecovery(user.id);
    if (secondFactorRemoved) {
      await auditTrail.record({ action: 'second_factor.removed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...seen, detail: { reason: 'password_reset_unverified_email' } });
    }
    const ended = await runtime.accountSessions.endAll(user.id, { reason: 'password_reset', request: seen });
    await limits.login.forgive(updated.email);
    // Reading the address's mail is the proof the lockout cannot check: this browser gets past a lock that
    // someone else's guesses set again (trusted-device.ts).
    trustThisDevice(ctx, updated.email);
    await auditTrail.record({
      action: 'password_reset.completed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...seen,
      detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
    });
    render(ctx, 'password-reset-done', { secondFactorRemoved, continueTo: await takeSignInToContinue(ctx, runtime.provider, updated.email) });
    afterResponse(ctx, logger, 'password changed notice', () => runtime.mailQueue.deliver({
      to: updated.email, template: 'password-changed',
      data: { changedAt: new Date(), link: `${config.issuer}${FORGOT_PASSWORD_PATH}` },
    }));
  });

  return router;
}
