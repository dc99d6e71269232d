// Account console: changing the email address. The current password is asked, a link goes to the new
// address (nothing changes until it is followed) and the current address is told; following the link makes
// the new address the account's, verified, and tells the old one.
import Router from '@koa/router';
import type { Context } from 'koa';
import { AccountError, isEmailAddress, normalizeEmail, type User } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { Pages, formBody, formField, requireCsrf } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH } from '../http/password-forms.ts';
import { inWords } from '../http/rate-limits.ts';
import { accountKey } from '../limits/login-guard.ts';
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter } from './index.ts';
import { checkCurrentPassword } from './reauthentication.ts';

/**
 * Outside /account: the link is often opened in another browser (the new mailbox's), where nobody is
 * signed in, and it must work there; the token in it is the credential.
 */
export const CONFIRM_EMAIL_CHANGE_PATH = '/email/confirm-change';
const CONFIRM_CSRF_PATH = '/email';

const TITLE = 'Change your email address';

export function emailRoutes(router: AccountRouter, runtime: Runtime, pages: AccountPages): void {
  const { config, users, auditTrail, limits, logger, accountTokens } = runtime;
  const ttlSeconds = config.accounts.emailVerificationTtl;
  const action = 'changing your email address';

  router.get('/email', (ctx) => {
    pages.render(ctx, 'account/email', { title: TITLE });
  });

  router.post('/email', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    const typed = formField(ctx, 'email').slice(0, 320);
    const newEmail = normalizeEmail(typed);
    const current = formField(ctx, 'current_password');
    const seen = { subjectUserId: user.id, subjectEmail: user.email, ip: ctx.ip, userAgent: ctx.get('user-agent') };
    const refuse = (errors: Record<string, string>) => pages.render(ctx, 'account/email', { title: TITLE, email: typed, errors }, 400);
    if (!isEmailAddress(newEmail)) return refuse({ email: 'Enter the new email address, like name@example.com.' });
    if (newEmail === user.email) return refuse({ email: 'That is already your email address. Enter the new one.' });
    // An empty field is a slip, not a guess: it is not counted.
    if (!current) return refuse({ current: 'Enter your current password.' });
    const check = await checkCurrentPassword(runtime, ctx, user, current, 'change_email');
    if (!check.ok && check.refusal) return pages.tooManyAttempts(ctx, check.refusal, action);
    if (!check.ok) return refuse({ current: 'That is not your current password.' });
    // Each request mails two addresses: bounded per account, and per new address whoever asks (one mailbox
    // cannot be flooded from many accounts; the count is shared with the verification links it receives).
    // Counted whether or not the address is taken, so a refusal says nothing about other accounts.
    const decision = await limits.rates.consumeAll([
      ['email-change-account', user.id],
      ['verification-resend-account', `${accountKey(newEmail)}`],
    ]);
    if (!decision.allowed) return pages.tooManyAttempts(ctx, decision, action);
    // The page is the same whether or not another account has the address (that is not this person's to
    // learn), and it goes out before the lookup and the mail so its timing says nothing either.
    pages.render(ctx, 'account/email', { title: TITLE, sent: newEmail, expiresIn: inWords(ttlSeconds) });
    // Three independent pieces of work, each failing (and logged) on its own: a link that cannot be sent must
    // not cost the audit record, nor the notice to the current address. They share one lookup.
    let lookup: Promise<boolean> | undefined;
    const addressTaken = () => (lookup ??= users.findByEmail(newEmail).then((owner) => owner !== null));
    afterResponse(ctx, logger, 'email change link', async () => {
      if (await addressTaken()) return;
      const token = await accountTokens.issue(user.id, 'change_email', newEmail, ttlSeconds);
      await runtime.mailQueue.deliver({
        to: newEmail, template: 'confirm-email-change',
        data: { name: user.name ?? undefined, link: `${config.issuer}${CONFIRM_EMAIL_CHANGE_PATH}?token=${token}`, expiresInMinutes: Math.max(1, Math.ceil(ttlSeconds / 60)) },
      });
    });
    afterResponse(ctx, logger, 'email change audit record', async () => {
      const taken = await addressTaken();
      await auditTrail.record({ action: 'email_change.requested', outcome: taken ? 'failure' : 'success', ...seen, detail: { newEmail, ...(taken ? { reason: 'email_taken' } : {}) } });
    });
    // The current address hears of it either way: if this was not its owner, they should act now.
    afterResponse(ctx, logger, 'email change notice', () => runtime.mailQueue.deliver({
      to: user.email, template: 'email-change-requested',
      data: { name: user.name ?? undefined, newEmail, requestedAt: new Date(), link: `${config.issuer}${FORGOT_PASSWORD_PATH}` },
    }));
  });
}

/** The page the new address's link opens (GET: shows a button; mail scanners open links too) and its form. */
export function emailChangeConfirmationRoutes(runtime: Runtime): Router {
  const { config, users, auditTrail, limits, logger, accountTokens } = runtime;
  const router = new Router();
  const pages = new Pages(runtime.views);
  const render = (ctx: Context, template: string, data: Record<string, unknown>, status = 200) =>
    pages.render(ctx, template, data, { status, csrfPath: CONFIRM_CSRF_PATH });

  function linkInvalid(ctx: Context): void {
    render(ctx, 'link-invalid', {
      title: 'This link no longer works',
      message: `Email change links work once, only the newest one sent works, and each one sent expires ${inWords(config.accounts.emailVerificationTtl)}. Your email address was not changed. To try again, ask for a new link from your account.`,
      next: { href: '/account/email', label: 'Change your email address' },
    }, 400);
  }

  /** Counts a use of an emailed link per IP (tokens cannot be guessed, but nobody may keep trying); false once refused. */
  async function linkUseAllowed(ctx: Context): Promise<boolean> {
    const decision = await limits.rates.consume('emailed-link-ip', ctx.ip);
    if (decision.allowed) return true;
    pages.tooManyAttempts(ctx, decision, { csrfPath: CONFIRM_CSRF_PATH, action: 'using emailed links' });
    return false;
  }

  /** The account and new address of a link still good, for an account that may still use it. */
  async function changeOfLink(token: string): Promise<{ user: User; newEmail: string } | undefined> {
    const link = await accountTokens.peek(token, 'change_email');
    if (!link.ok) return undefined;
    const user = await users.findById(link.userId);
    return user && !user.disabled ? { user, newEmail: normalizeEmail(link.email) } : undefined;
  }

  router.get(CONFIRM_EMAIL_CHANGE_PATH, async (ctx) => {
    if (!await linkUseAllowed(ctx)) return;
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    const change = await changeOfLink(token);
    if (!change) {
      linkInvalid(ctx);
      return;
    }
    render(ctx, 'email-change-confirm', { token, newEmail: change.newEmail });
  });

  router.post(CONFIRM_EMAIL_CHANGE_PATH, formBody, async (ctx) => {
    requireCsrf(ctx);
    if (!await linkUseAllowed(ctx)) return;
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    const change = await changeOfLink(formField(ctx, 'token'));
    const redeemed = change ? await accountTokens.redeem(formField(ctx, 'token'), 'change_email') : undefined;
    if (!change || !redeemed?.ok) {
      await auditTrail.record({ action: 'email.changed', outcome: 'failure', subjectUserId: change?.user.id, ...seen, detail: { reason: 'link_invalid' } });
      linkInvalid(ctx);
      return;
    }
    const { user, newEmail } = change;
    let updated: User | null;
    try {
      updated = await users.changeEmail(user.id, newEmail);
    } catch (error) {
      if (!(error instanceof AccountError && error.code === 'email_taken')) throw error;
      await auditTrail.record({ action: 'email.changed', outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, ...seen, detail: { newEmail, reason: 'email_taken' } });
      render(ctx, 'link-invalid', {
        title: 'This address is not available',
        message: `Another account started using ${newEmail} after you asked for the change, so your email address is still ${user.email}. Choose another address.`,
        next: { href: '/account/email', label: 'Change your email address' },
      }, 409);
      return;
    }
    if (!updated) {
      linkInvalid(ctx);
      return;
    }
    await auditTrail.record({ action: 'email.changed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...seen, detail: { previousEmail: user.email } });
    render(ctx, 'email-change-done', { newEmail: updated.email });
    afterResponse(ctx, logger, 'email changed notice', () => runtime.mailQueue.deliver({
      to: user.email, template: 'email-changed',
      data: { name: updated.name ?? undefined, newEmail: updated.email, changedAt: new Date(), link: `${config.issuer}${FORGOT_PASSWORD_PATH}` },
    }));
  });

  return router;
}
