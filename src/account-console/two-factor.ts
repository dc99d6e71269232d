// Account console: two-factor authentication. Shows whether it is on, sets it up (QR code, setup key,
// confirmation by a code, recovery codes shown once), makes new recovery codes (asks a code), and turns
// it off (asks the password and a code). Codes are counted by the second-factor limits and lockout.
import type { Context } from 'koa';
import type { CodeFailure } from '../accounts/second-factor.ts';
import { formBody, formField, requireCsrf } from '../http/pages.ts';
import { enrollmentView } from '../http/two-factor-display.ts';
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter, AccountState } from './index.ts';

const TITLE = 'Two-factor authentication';
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

export function twoFactorRoutes(router: AccountRouter, runtime: Runtime, pages: AccountPages): void {
  const { secondFactor, auditTrail, limits } = runtime;
  const guard = limits.secondFactor;

  function seen(ctx: AccountContext) {
    const { user } = ctx.state.account;
    return { subjectUserId: user.id, subjectEmail: user.email, ip: ctx.ip, userAgent: ctx.get('user-agent') };
  }

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

  /** A wrong code: counted (lockout) and audited; true when the 429 page was sent. */
  async function refused(ctx: AccountContext, reason: CodeFailure, during: string): Promise<boolean> {
    const { user } = ctx.state.account;
    const after = await guard.afterFailure({ accountId: user.id, ip: ctx.ip });
    await auditTrail.record({
      action: 'second_factor.failed', outcome: 'failure', ...seen(ctx),
      detail: { reason, during, ...(!after.allowed && after.lockedNow ? { lockedSeconds: after.retryAfterSeconds } : {}) },
    });
    if (after.allowed) return false;
    pages.tooManyAttempts(ctx, after, PAUSED);
    return true;
  }

  /** Counts a code attempt; false when the 429 page was sent. */
  async function mayTryCode(ctx: AccountContext): Promise<boolean> {
    const before = await guard.beforeAttempt({ accountId: ctx.state.account.user.id, ip: ctx.ip });
    if (before.allowed) return true;
    pages.tooManyAttempts(ctx, before, PAUSED);
    return false;
  }

  router.get('/two-factor', async (ctx) => {
    const notice = typeof ctx.query.notice === 'string' ? NOTICES.get(ctx.query.notice) : undefined;
    await renderStatus(ctx, { notice });
  });

  router.post('/two-factor/start', formBody, async (ctx) => {
    requireCsrf(ctx);
    const enrollment = await secondFactor.startEnrollment(ctx.state.account.user.id);
    if (!enrollment) {
      // Already on: the status page says so and offers what can be done.
      ctx.status = 303;
      ctx.redirect('/account/two-factor');
      return;
    }
    pages.render(ctx, 'account/two-factor-setup', { title: 'Set up two-factor authentication', ...await enrollmentView(enrollment) });
  });

  router.post('/two-factor/confirm', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    if (!await mayTryCode(ctx)) return;
    const result = await secondFactor.confirmEnrollment(user.id, formField(ctx, 'code'));
    if (!result.ok) {
      const enrollment = result.reason === 'not_enabled' ? undefined : await secondFactor.pendingEnrollment(user.id);
      if (!enrollment) {
        // Nothing to confirm (already on, or never started): back to the status page.
        ctx.status = 303;
        ctx.redirect('/account/two-factor');
        return;
      }
      if (await refused(ctx, result.reason, 'enrollment')) return;
      pages.render(ctx, 'account/two-factor-setup', {
        title: 'Set up two-factor authentication', error: CODE_ERRORS[result.reason], ...await enrollmentView(enrollment),
      }, 401);
      return;
    }
    await guard.afterSuccess({ accountId: user.id, ip: ctx.ip });
    await auditTrail.record({ action: 'second_factor.enrolled', outcome: 'success', ...seen(ctx), detail: { method: 'totp', during: 'account' } });
    pages.render(ctx, 'account/two-factor-recovery-codes', { title: 'Two-factor authentication is on', recoveryCodes: result.recoveryCodes, enrolled: true });
  });

  router.post('/two-factor/recovery-codes', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    if (!await mayTryCode(ctx)) return;
    const result = await secondFactor.regenerateRecoveryCodes(user.id, formField(ctx, 'code'));
    if (!result.ok) {
      if (result.reason !== 'not_enabled' && await refused(ctx, result.reason, 'recovery_codes')) return;
      await renderStatus(ctx, { errors: { regenerate: CODE_ERRORS[result.reason] } }, result.reason === 'not_enabled' ? 400 : 401);
      return;
    }
    await guard.afterSuccess({ accountId: user.id, ip: ctx.ip });
    await auditTrail.record({ action: 'recovery_codes.regenerated', outcome: 'success', ...seen(ctx) });
    pages.render(ctx, 'account/two-factor-recovery-codes', { title: 'New recovery codes', recoveryCodes: result.recoveryCodes, enrolled: false });
  });

  router.post('/two-factor/disable', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    // The password is counted per account (as on the password page), the code by the second-factor limits.
    const passwordCheck = await limits.rates.consume('password-check-account', user.id);
    if (!passwordCheck.allowed) {
      pages.tooManyAttempts(ctx, passwordCheck, 'turning off two-factor authentication');
      return;
    }
    if (!await mayTryCode(ctx)) return;
    const result = await secondFactor.disable(user.id, formField(ctx, 'password'), formField(ctx, 'code'));
    if (!result.ok) {
      if (result.reason === 'wrong_password') {
        const password = formField(ctx, 'password');
        await renderStatus(ctx, { errors: { password: password ? 'That is not your password.' : 'Enter your password.' } }, 400);
        return;
      }
      if (result.reason !== 'not_enabled' && await refused(ctx, result.reason, 'disable')) return;
      await renderStatus(ctx, { errors: { disable: CODE_ERRORS[result.reason] } }, result.reason === 'not_enabled' ? 400 : 401);
      return;
    }
    await limits.rates.reset('password-check-account', user.id);
    await guard.afterSuccess({ accountId: user.id, ip: ctx.ip });
    await auditTrail.record({ action: 'second_factor.removed', outcome: 'success', ...seen(ctx), detail: { method: 'totp' } });
    ctx.status = 303;
    ctx.redirect('/account/two-factor?notice=off');
  });
}
