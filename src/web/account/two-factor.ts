// Account console: two-factor authentication. Shows whether it is on, sets it up (password, QR code, a code,
// recovery codes shown once), makes new recovery codes (a code), turns it off (password and a code). Passwords
// are checked by the re-authentication flow; codes, their lockout, the audit trail and the notices are the flow's.
import type { Context } from 'koa';
import type { CodeFailure } from '../../accounts/second-factor.ts';
import type { CodeRequest } from '../../accounts/flows/second-factor-settings.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { formBody, formField, requireCsrf } from '../kit/pages.ts';
import { enrollmentView } from '../kit/two-factor-display.ts';
import { unreadableSecretPage } from '../kit/unreadable-secret.ts';
import { ACR_SECOND_FACTOR, AMR_SECOND_FACTOR } from '../../oidc/assurance.ts';
import type { WebDependencies } from '../dependencies.ts';
import { PATHS, within } from '../paths.ts';
import type { AccountPages, AccountRouter, AccountState } from './index.ts';
import { checkCurrentPassword } from './current-password.ts';

const TITLE = 'Two-factor authentication';
const SETUP_TITLE = 'Set up two-factor authentication';
const PAUSED = 'checking two-factor codes';

const CODE_ERRORS: Record<CodeFailure, string> = {
  wrong: 'That code is not right. Enter the 6-digit code your authenticator app shows now, or an unused recovery code.',
  used: 'That code was already used. Wait for the next code in your authenticator app and enter it.',
  not_enabled: 'Two-factor authentication is not on.',
};

/** Notices shown after a redirect, named by a fixed key (never text taken from the address). */
const NOTICES = new Map([
  ['off', 'Two-factor authentication is off. Signing in now asks only for your password.'],
]);

type AccountContext = Context & { state: AccountState };

export function twoFactorRoutes(router: AccountRouter, deps: Pick<WebDependencies, 'logger' | 'engine' | 'flows' | 'afterResponseWork' | 'secondFactor'>, pages: AccountPages): void {
  const { secondFactor, engine } = deps;
  const { secondFactorSettings } = deps.flows;

  async function renderStatus(ctx: AccountContext, extra: Record<string, unknown> = {}, status = 200): Promise<void> {
    const { user } = ctx.state.account;
    const current = await secondFactor.status(user.id);
    const { requiredByRole } = await secondFactor.loginRequirement(user.id);
    pages.render(ctx, 'account/two-factor', {
      title: TITLE,
      enabled: current.enabled,
      enabledOn: current.enabledAt ? current.enabledAt.toISOString().slice(0, 10) : undefined,
      recoveryCodesLeft: current.recoveryCodesLeft,
      requiredByRole,
      ...extra,
    }, status);
  }

  function toStatus(ctx: AccountContext, query = ''): void {
    ctx.status = 303;
    ctx.redirect(`${PATHS.accountTwoFactor}${query}`);
  }

  /** Where a code was typed from, for the lockout and the audit trail. */
  function codeRequest(ctx: Context): CodeRequest {
    return { ip: ctx.ip, userAgent: ctx.get('user-agent') };
  }

  const unreadableSecret = unreadableSecretPage(deps.logger, (ctx, page) => pages.render(ctx, 'error', { ...page }, 503));

  router.get(within('account', 'accountTwoFactor'), async (ctx) => {
    const notice = typeof ctx.query.notice === 'string' ? NOTICES.get(ctx.query.notice) : undefined;
    await renderStatus(ctx, { notice });
  });

  // Turning it on asks the password: a borrowed, signed-in browser must not enroll its own authenticator
  // and lock the owner out of the account.
  router.post(within('account', 'accountTwoFactorStart'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    if ((await secondFactor.status(user.id)).enabled) {
      // Already on: the status page says so and offers what can be done.
      toStatus(ctx);
      return;
    }
    const password = formField(ctx, 'password');
    if (!await checkCurrentPassword(ctx, deps.flows.reauthentication, user, password, 'enable_second_factor', 'setting up two-factor authentication')) {
      await renderStatus(ctx, { errors: { start: password ? 'That is not your password.' : 'Enter your password.' } }, 400);
      return;
    }
    const enrollment = await secondFactorSettings.startSetup(user, ctx.state.account.session.uid);
    if (!enrollment) {
      toStatus(ctx);
      return;
    }
    pages.render(ctx, 'account/two-factor-setup', { title: SETUP_TITLE, ...await enrollmentView(enrollment) });
  });

  router.post(within('account', 'accountTwoFactorConfirm'), unreadableSecret, formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    const result = await secondFactorSettings.confirmSetup(user, formField(ctx, 'code'), { ...codeRequest(ctx), sessionUid: ctx.state.account.session.uid });
    if (!result.ok) {
      if (result.reason === 'too_many_attempts') throw new TooManyAttempts(result.refusal, { action: PAUSED });
      if (result.reason === 'nothing_to_confirm') {
        // Already on, or not started here with the password (or too long ago): the status page offers to start.
        toStatus(ctx);
        return;
      }
      pages.render(ctx, 'account/two-factor-setup', { title: SETUP_TITLE, error: CODE_ERRORS[result.reason], ...await enrollmentView(result.enrollment) }, 401);
      return;
    }
    // The password (to start) and a code (to confirm) were both just given in this browser: its session now
    // counts as signed in with the second factor, as a sign-in with both would, and no step-up follows (with
    // a new session id, so a copy of the old cookie taken before does not carry loa:2).
    await engine.raiseAssurance(ctx, user.id, { amr: AMR_SECOND_FACTOR, acr: ACR_SECOND_FACTOR });
    pages.render(ctx, 'account/two-factor-recovery-codes', { title: 'Two-factor authentication is on', recoveryCodes: result.recoveryCodes, enrolled: true });
    deps.afterResponseWork.run(ctx, 'two-factor change notice', result.notice);
  });

  router.post(within('account', 'accountRecoveryCodes'), unreadableSecret, formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    const result = await secondFactorSettings.renewRecoveryCodes(user, formField(ctx, 'code'), codeRequest(ctx));
    if (!result.ok) {
      if (result.reason === 'too_many_attempts') throw new TooManyAttempts(result.refusal, { action: PAUSED });
      await renderStatus(ctx, { errors: { regenerate: CODE_ERRORS[result.reason] } }, result.reason === 'not_enabled' ? 400 : 401);
      return;
    }
    pages.render(ctx, 'account/two-factor-recovery-codes', { title: 'New recovery codes', recoveryCodes: result.recoveryCodes, enrolled: false });
    deps.afterResponseWork.run(ctx, 'two-factor change notice', result.notice);
  });

  router.post(within('account', 'accountTwoFactorDisable'), unreadableSecret, formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    if (!(await secondFactor.status(user.id)).enabled) {
      await renderStatus(ctx, { errors: { disable: CODE_ERRORS.not_enabled } }, 400);
      return;
    }
    // The password first (counted per account, never forgiven), so a wrong one spends no code.
    const password = formField(ctx, 'password');
    if (!await checkCurrentPassword(ctx, deps.flows.reauthentication, user, password, 'disable_second_factor', 'turning off two-factor authentication')) {
      await renderStatus(ctx, { errors: { password: password ? 'That is not your password.' : 'Enter your password.' } }, 400);
      return;
    }
    const result = await secondFactorSettings.turnOff(user, formField(ctx, 'code'), codeRequest(ctx));
    if (!result.ok) {
      if (result.reason === 'too_many_attempts') throw new TooManyAttempts(result.refusal, { action: PAUSED });
      await renderStatus(ctx, { errors: { disable: CODE_ERRORS[result.reason] } }, result.reason === 'not_enabled' ? 400 : 401);
      return;
    }
    toStatus(ctx, '?notice=off');
    deps.afterResponseWork.run(ctx, 'two-factor change notice', result.notice);
  });
}
