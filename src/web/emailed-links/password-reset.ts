// Password reset by email for people who cannot sign in: the request form, which answers the same way
// whether or not an account has the address, and the emailed link's form, which sets the new password and
// ends every session and grant of the account (the work is src/accounts/flows/password-reset.ts's).
import Router from '@koa/router';
import type { Context } from 'koa';
import { minimumPasswordLength } from '../../accounts/password-policy.ts';
import { isEmailAddress, normalizeEmail } from '../../accounts/users.ts';
import { accountKey } from '../../limits/login-guard.ts';
import { networkOf } from '../../limits/index.ts';
import type { WebDependencies } from '../dependencies.ts';
import { inWords } from '../kit/in-words.ts';
import { Pages, formBody, formField, requireCsrf } from '../kit/pages.ts';
import { newPasswordErrors } from '../kit/password-forms.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { PATHS } from '../paths.ts';
import { takeSignInToContinue } from '../kit/return-to-sign-in.ts';
import { trustThisDevice } from '../kit/trusted-device.ts';
import { emailedLinkRoutes } from './emailed-link.ts';

export function passwordResetRoutes(deps: Pick<WebDependencies, 'config' | 'views' | 'users' | 'limits' | 'flows' | 'engine' | 'afterResponseWork' | 'database'>): Router {
  const { config, users, limits, afterResponseWork } = deps;
  const { passwordReset } = deps.flows;
  const router = new Router();
  const pages = new Pages(deps.views);
  const ttlSeconds = config.accounts.passwordResetTtl;
  const minimumLength = minimumPasswordLength(config.passwordPolicy);
  const render = (ctx: Context, template: string, data: Record<string, unknown>, status = 200) =>
    pages.render(ctx, template, data, { status });

  router.get(PATHS.forgotPassword, (ctx) => {
    const email = typeof ctx.query.email === 'string' ? ctx.query.email.slice(0, 320) : '';
    render(ctx, 'password-forgot', { email });
  });

  router.post(PATHS.forgotPassword, formBody, async (ctx) => {
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
    const refusal = await limits.rates.consumeAll([['reset-ip', networkOf(ctx.ip)], ['reset-account-ip', `${key}:${networkOf(ctx.ip)}`], ['reset-account', `${key}`]]);
    if (!refusal.allowed) {
      throw new TooManyAttempts(refusal, { action: 'sending password reset links' });
    }
    // The page goes out first, identical for every address; looking the account up, issuing the link and
    // talking to the mail server happen after it, so neither the answer nor its timing depends on them. Unless the
    // database is down (the same for every address): then a 503 says so, rather than a promise of mail never sent.
    await deps.database.ping();
    render(ctx, 'password-forgot-sent', { email, expiresIn: inWords(ttlSeconds) });
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    afterResponseWork.run(ctx, 'password reset request', () => passwordReset.requestLink(email, seen));
  });

  const linkInvalid = (ctx: Context) => render(ctx, 'link-invalid', {
    title: 'This link no longer works',
    message: `Password reset links work once, only the newest one sent works, and each one sent expires ${inWords(ttlSeconds)}. Ask for a new link.`,
    next: { href: PATHS.forgotPassword, label: 'Ask for a new link' },
  }, 400);

  emailedLinkRoutes(router, limits.rates, {
    path: 'resetPassword',
    paused: 'using emailed links',
    check: async (token) => {
      const link = await passwordReset.checkLink(token);
      return link.ok ? link.user : undefined;
    },
    showButton: (ctx, token, user) => render(ctx, 'password-reset', { token, email: user.email, minimumLength }),
    showInvalid: linkInvalid,
    async use(ctx, token) {
      const password = formField(ctx, 'password');
      const confirmation = formField(ctx, 'confirm');
      const reset = await passwordReset.complete({
        token, password, newPasswordErrors: (account) => newPasswordErrors(users, account, password, confirmation),
      }, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
      if (!reset.ok && reset.reason === 'link_invalid') return linkInvalid(ctx);
      // Most often the second submission of a double click, whose answer the browser shows: the first one did it.
      if (!reset.ok && reset.reason === 'link_used') {
        return render(ctx, 'link-invalid', {
          title: 'This link was already used',
          message: 'A new password was set with this link. Sign in with it. If you did not set it, ask for a new link.',
          next: { href: PATHS.forgotPassword, label: 'Ask for a new link' },
        }, 400);
      }
      // A refused password leaves the link usable: the person tries another one on the same page.
      if (!reset.ok) return render(ctx, 'password-reset', { token, email: reset.user.email, minimumLength, errors: reset.errors }, 400);
      // Reading the address's mail is the proof the lockout cannot check: this browser gets past a lock that
      // someone else's guesses set again (trusted-device.ts).
      trustThisDevice(ctx, reset.user.email);
      render(ctx, 'password-reset-done', {
        secondFactorRemoved: reset.secondFactorRemoved, continueTo: await takeSignInToContinue(ctx, deps.engine, reset.user.email),
      });
      afterResponseWork.run(ctx, 'password changed notice', reset.notice);
    },
  });

  return router;
}
