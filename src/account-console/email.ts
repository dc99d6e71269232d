// Account console: changing the email address. The current password is asked, a link goes to the new
// address (nothing changes until it is followed) and the current address is told; following the link makes
// the new address the account's, verified, and tells the old one with a link that undoes the change: if
// whoever changed it was not the owner (they had the password and a session), that is the owner's way back.
import Router from '@koa/router';
import type { Context } from 'koa';
import { PATHS } from '../web/paths.ts';
import { isEmailAddress, normalizeEmail } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { TooManyAttempts } from '../http/errors.ts';
import { Pages, formBody, formField, queryField, requireCsrf } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH, RESET_PASSWORD_PATH } from '../http/password-forms.ts';
import { inWords } from '../http/rate-limits.ts';
import { accountKey } from '../limits/login-guard.ts';
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter } from './index.ts';

const CONFIRM_CSRF_PATH = '/email';

const TITLE = 'Change your email address';

export function emailRoutes(router: AccountRouter, runtime: Runtime, pages: AccountPages): void {
  const { config, limits } = runtime;
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
    const refuse = (errors: Record<string, string>) => pages.render(ctx, 'account/email', { title: TITLE, email: typed, errors }, 400);
    if (!isEmailAddress(newEmail)) return refuse({ email: 'Enter the new email address, like name@example.com.' });
    if (newEmail === user.email) return refuse({ email: 'That is already your email address. Enter the new one.' });
    // An empty field is a slip, not a guess: it is not counted.
    if (!current) return refuse({ current: 'Enter your current password.' });
    const check = await runtime.flows.reauthentication.checkPassword(user, current, 'change_email', { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    if (!check.ok && check.refusal) throw new TooManyAttempts(check.refusal, { action });
    if (!check.ok) return refuse({ current: 'That is not your current password.' });
    // Each request mails two addresses: bounded per account, and per new address whoever asks (one mailbox
    // cannot be flooded from many accounts; the count is shared with the verification links it receives).
    // Counted whether or not the address is taken, so a refusal says nothing about other accounts.
    const decision = await limits.rates.consumeAll([
      ['email-change-account', user.id],
      ['verification-resend-account', `${accountKey(newEmail)}`],
    ]);
    if (!decision.allowed) throw new TooManyAttempts(decision, { action });
    // The page is the same whether or not another account has the address (that is not this person's to
    // learn), and it goes out before the lookup and the mail (the flow's) so its timing says nothing either.
    pages.render(ctx, 'account/email', { title: TITLE, sent: newEmail, expiresIn: inWords(ttlSeconds) });
    const work = runtime.flows.emailChange.request(user, newEmail, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    afterResponse(ctx, runtime.afterResponseWork, 'email change link', work.link);
    afterResponse(ctx, runtime.afterResponseWork, 'email change audit record', work.audit);
    afterResponse(ctx, runtime.afterResponseWork, 'email change notice', work.notice);
  });
}

/**
 * The pages the emailed links open (GET: shows a button; mail scanners open links too) and their forms: the
 * new address's link confirms the change, the previous address's link undoes it (src/accounts/flows/email-change.ts).
 */
export function emailChangeConfirmationRoutes(runtime: Runtime): Router {
  const { config, limits } = runtime;
  const { emailChange } = runtime.flows;
  const undoTtlSeconds = config.accounts.emailChangeUndoTtl;
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

  /** Counts a use of an emailed link per IP (tokens cannot be guessed, but nobody may keep trying); throws once refused. */
  async function countLinkUse(ctx: Context): Promise<void> {
    const decision = await limits.rates.consume('emailed-link-ip', ctx.ip);
    if (!decision.allowed) throw new TooManyAttempts(decision, { action: 'using emailed links' });
  }

  router.get(PATHS.confirmEmailChange, async (ctx) => {
    await countLinkUse(ctx);
    const token = queryField(ctx, 'token');
    const change = await emailChange.checkConfirmLink(token);
    if (!change.ok) {
      linkInvalid(ctx);
      return;
    }
    render(ctx, 'email-change-confirm', { token, newEmail: change.newEmail });
  });

  router.post(PATHS.confirmEmailChange, formBody, async (ctx) => {
    requireCsrf(ctx);
    await countLinkUse(ctx);
    const confirmed = await emailChange.confirm(formField(ctx, 'token'), { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    if (!confirmed.ok && confirmed.reason === 'email_taken') {
      render(ctx, 'link-invalid', {
        title: 'This address is not available',
        message: `Another account started using ${confirmed.newEmail} after you asked for the change, so your email address is still ${confirmed.user.email}. Choose another address.`,
        next: { href: '/account/email', label: 'Change your email address' },
      }, 409);
      return;
    }
    if (!confirmed.ok) {
      linkInvalid(ctx);
      return;
    }
    render(ctx, 'email-change-done', { newEmail: confirmed.user.email });
    afterResponse(ctx, runtime.afterResponseWork, 'email changed notice', confirmed.notice);
  });

  function restoreLinkInvalid(ctx: Context): void {
    render(ctx, 'link-invalid', {
      title: 'This link no longer works',
      message: `A link to undo a change of email address works once, and each one sent expires ${inWords(undoTtlSeconds)}. If someone else has your account, ask the administrator for help.`,
      next: { href: FORGOT_PASSWORD_PATH, label: 'Reset your password' },
    }, 400);
  }

  router.get(PATHS.restoreEmail, async (ctx) => {
    await countLinkUse(ctx);
    const token = queryField(ctx, 'token');
    const restore = await emailChange.checkRestoreLink(token);
    if (!restore.ok) {
      restoreLinkInvalid(ctx);
      return;
    }
    render(ctx, 'email-restore-confirm', { token, previousEmail: restore.previousEmail });
  });

  router.post(PATHS.restoreEmail, formBody, async (ctx) => {
    requireCsrf(ctx);
    await countLinkUse(ctx);
    const restored = await emailChange.restore(formField(ctx, 'token'), { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    if (!restored.ok && restored.reason === 'email_taken') {
      render(ctx, 'link-invalid', {
        title: 'Your address could not be put back',
        message: `Another account uses ${restored.previousEmail} now. Ask the administrator for help getting your account back.`,
      }, 409);
      return;
    }
    if (!restored.ok) {
      restoreLinkInvalid(ctx);
      return;
    }
    // The password is still the one whoever made the change knew: the page leads on to a new one.
    render(ctx, 'email-restore-done', {
      previousEmail: restored.user.email, secondFactorRemoved: restored.secondFactorRemoved,
      resetLink: `${RESET_PASSWORD_PATH}?token=${restored.resetToken}`, resetExpiresIn: inWords(config.accounts.passwordResetTtl),
    });
  });

  return router;
}
