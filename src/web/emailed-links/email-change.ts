// The pages of the two emailed links of a change of email address (src/accounts/flows/email-change.ts): the new
// address's link confirms the change, the previous address's link undoes it. Outside /account: a link is often
// opened in another browser (the new mailbox's), where nobody is signed in, and the token in it is the credential.
import Router from '@koa/router';
import type { Context } from 'koa';
import type { WebDependencies } from '../dependencies.ts';
import { inWords } from '../kit/in-words.ts';
import { Pages } from '../kit/pages.ts';
import { PATHS, pathTo } from '../paths.ts';
import { emailedLinkRoutes } from './emailed-link.ts';

export function emailChangeLinkRoutes(deps: Pick<WebDependencies, 'config' | 'views' | 'limits' | 'flows' | 'afterResponseWork'>): Router {
  const { config, limits, afterResponseWork } = deps;
  const { emailChange } = deps.flows;
  const router = new Router();
  const pages = new Pages(deps.views);
  const render = (ctx: Context, template: string, data: Record<string, unknown>, status = 200) =>
    pages.render(ctx, template, data, { status });
  const changeAgain = { href: pathTo('accountEmail'), label: 'Change your email address' };

  const confirmLinkInvalid = (ctx: Context) => render(ctx, 'link-invalid', {
    title: 'This link no longer works',
    message: `Email change links work once, only the newest one sent works, and each one sent expires ${inWords(config.accounts.emailVerificationTtl)}. Your email address was not changed. To try again, ask for a new link from your account.`,
    next: changeAgain,
  }, 400);

  emailedLinkRoutes(router, limits.rates, {
    path: 'confirmEmailChange',
    paused: 'using emailed links',
    check: async (token) => {
      const change = await emailChange.checkConfirmLink(token);
      return change.ok ? change : undefined;
    },
    showButton: (ctx, token, change) => render(ctx, 'email-change-confirm', { token, newEmail: change.newEmail }),
    showInvalid: confirmLinkInvalid,
    async use(ctx, token) {
      const confirmed = await emailChange.confirm(token, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
      if (!confirmed.ok && confirmed.reason === 'email_taken') {
        return render(ctx, 'link-invalid', {
          title: 'This address is not available',
          message: `Another account started using ${confirmed.newEmail} after you asked for the change, so your email address is still ${confirmed.user.email}. Choose another address.`,
          next: changeAgain,
        }, 409);
      }
      // Most often the second submission of a double click, whose answer the browser shows: the first one did it.
      if (!confirmed.ok && confirmed.reason === 'link_used') return render(ctx, 'email-change-done', { newEmail: confirmed.user.email });
      if (!confirmed.ok) return confirmLinkInvalid(ctx);
      render(ctx, 'email-change-done', { newEmail: confirmed.user.email });
      afterResponseWork.run(ctx, 'email changed notice', confirmed.notice);
    },
  });

  const restoreLinkInvalid = (ctx: Context) => render(ctx, 'link-invalid', {
    title: 'This link no longer works',
    message: `A link to undo a change of email address works once, and each one sent expires ${inWords(config.accounts.emailChangeUndoTtl)}. If someone else has your account, ask the administrator for help.`,
    next: { href: PATHS.forgotPassword, label: 'Reset your password' },
  }, 400);

  emailedLinkRoutes(router, limits.rates, {
    path: 'restoreEmail',
    paused: 'using emailed links',
    check: async (token) => {
      const restore = await emailChange.checkRestoreLink(token);
      return restore.ok ? restore : undefined;
    },
    showButton: (ctx, token, restore) => render(ctx, 'email-restore-confirm', { token, previousEmail: restore.previousEmail }),
    showInvalid: restoreLinkInvalid,
    async use(ctx, token) {
      const restored = await emailChange.restore(token, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
      if (!restored.ok && restored.reason === 'email_taken') {
        return render(ctx, 'link-invalid', {
          title: 'Your address could not be put back',
          message: `Another account uses ${restored.previousEmail} now. Ask the administrator for help getting your account back.`,
        }, 409);
      }
      if (!restored.ok && restored.reason === 'link_used') {
        return render(ctx, 'link-invalid', {
          title: 'This link was already used',
          message: `Your email address is back to ${restored.user.email}. If you have not chosen a new password since, do it now: the password is still the one whoever changed your address knew.`,
          next: { href: PATHS.forgotPassword, label: 'Reset your password' },
        }, 400);
      }
      if (!restored.ok) return restoreLinkInvalid(ctx);
      // The password is still the one whoever made the change knew: the page leads on to a new one.
      render(ctx, 'email-restore-done', {
        previousEmail: restored.user.email, secondFactorRemoved: restored.secondFactorRemoved,
        resetLink: `${PATHS.resetPassword}?token=${restored.resetToken}`, resetExpiresIn: inWords(config.accounts.passwordResetTtl),
      });
    },
  });

  return router;
}
