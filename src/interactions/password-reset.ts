// Password reset by email for people who cannot sign in: the request form, which answers the same way
// whether or not an account has the address, and the emailed link's form, which sets the new password and
// ends every session and grant of the account (the work is src/accounts/flows/password-reset.ts's).
import Router from '@koa/router';
import type { Context } from 'koa';
import { minimumPasswordLength } from '../accounts/password-policy.ts';
import { isEmailAddress, normalizeEmail } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { TooManyAttempts } from '../http/errors.ts';
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
  const { config, users, limits } = runtime;
  const { passwordReset } = runtime.flows;
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
      throw new TooManyAttempts(refusal, { action: 'sending password reset links' });
    }
    // The page goes out first, identical for every address; looking the account up, issuing the link and
    // talking to the mail server happen after it, so neither the answer nor its timing depends on them.
    render(ctx, 'password-forgot-sent', { email, expiresIn: inWords(ttlSeconds) });
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    afterResponse(ctx, runtime.afterResponseWork, 'password reset request', () => passwordReset.requestLink(email, seen));
  });

  function linkInvalid(ctx: Context): void {
    render(ctx, 'link-invalid', {
      title: 'This link no longer works',
      message: `Password reset links work once, only the newest one sent works, and each one sent expires ${inWords(ttlSeconds)}. Ask for a new link.`,
      next: { href: FORGOT_PASSWORD_PATH, label: 'Ask for a new link' },
    }, 400);
  }

  /** Counts a use of an emailed link per IP (tokens cannot be guessed, but nobody may keep trying); throws once refused. */
  async function countLinkUse(ctx: Context): Promise<void> {
    const decision = await limits.rates.consume('emailed-link-ip', ctx.ip);
    if (!decision.allowed) throw new TooManyAttempts(decision, { action: 'using emailed links' });
  }

  // Only looks at the link (mail scanners open links before people do): it is used when the form is sent.
  router.get(RESET_PASSWORD_PATH, async (ctx) => {
    await countLinkUse(ctx);
    const token = queryField(ctx, 'token');
    const link = await passwordReset.checkLink(token);
    if (!link.ok) {
      linkInvalid(ctx);
      return;
    }
    render(ctx, 'password-reset', { token, email: link.user.email, minimumLength });
  });

  router.post(RESET_PASSWORD_PATH, formBody, async (ctx) => {
    requireCsrf(ctx);
    await countLinkUse(ctx);
    const token = formField(ctx, 'token');
    const password = formField(ctx, 'password');
    const confirmation = formField(ctx, 'confirm');
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    const reset = await passwordReset.complete({
      token, password, newPasswordErrors: (account) => newPasswordErrors(users, account, password, confirmation),
    }, seen);
    if (!reset.ok && reset.reason === 'link_invalid') {
      linkInvalid(ctx);
      return;
    }
    // A refused password leaves the link usable: the person tries another one on the same page.
    if (!reset.ok) {
      render(ctx, 'password-reset', { token, email: reset.user.email, minimumLength, errors: reset.errors }, 400);
      return;
    }
    // Reading the address's mail is the proof the lockout cannot check: this browser gets past a lock that
    // someone else's guesses set again (trusted-device.ts).
    trustThisDevice(ctx, reset.user.email);
    render(ctx, 'password-reset-done', {
      secondFactorRemoved: reset.secondFactorRemoved, continueTo: await takeSignInToContinue(ctx, runtime.engine, reset.user.email),
    });
    afterResponse(ctx, runtime.afterResponseWork, 'password changed notice', reset.notice);
  });

  return router;
}
