// Account console: changing the password while signed in. It asks the current password (counted, so a
// borrowed session cannot guess it) and, once changed, ends every other session and grant of the account.
import { MINIMUM_PASSWORD_LENGTH } from '../accounts/users.ts';
import { normalizePassword } from '../accounts/password-policy.ts';
import { HttpError } from '../http/errors.ts';
import { formBody, formField, requireCsrf } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH, afterResponse, newPasswordErrors } from '../interactions/password-reset.ts';
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter } from './index.ts';

const TITLE = 'Change your password';

export function passwordRoutes(router: AccountRouter, runtime: Runtime, pages: AccountPages): void {
  const { config, users, auditTrail, limits, logger } = runtime;
  const minimumLength = Math.max(MINIMUM_PASSWORD_LENGTH, config.passwordPolicy.minimumLength);

  router.get('/password', (ctx) => {
    pages.render(ctx, 'account/password', { title: TITLE, minimumLength });
  });

  router.post('/password', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user, session } = ctx.state.account;
    const current = formField(ctx, 'current_password');
    const password = formField(ctx, 'password');
    const seen = { subjectUserId: user.id, subjectEmail: user.email, ip: ctx.ip, userAgent: ctx.get('user-agent') };
    // Counted before the check, per account: a session left open somewhere cannot be used to guess it.
    const decision = await limits.rates.consume('password-check-account', user.id);
    if (!decision.allowed) {
      pages.tooManyAttempts(ctx, decision, 'changing your password');
      return;
    }
    if (!current || !await users.verifyPassword(user.id, current)) {
      await auditTrail.record({ action: 'password.changed', outcome: 'failure', ...seen, detail: { reason: 'wrong_current_password' } });
      pages.render(ctx, 'account/password', { title: TITLE, minimumLength, errors: { current: current ? 'That is not your current password.' : 'Enter your current password.' } }, 400);
      return;
    }
    // The person proved they know it: earlier slips are forgiven.
    await limits.rates.reset('password-check-account', user.id);
    const errors = newPasswordErrors(users, user, password, formField(ctx, 'confirm'))
      ?? (normalizePassword(password) === normalizePassword(current) ? { password: 'The new password must differ from your current one.' } : undefined);
    if (errors) {
      pages.render(ctx, 'account/password', { title: TITLE, minimumLength, errors }, 400);
      return;
    }
    const updated = await users.setPassword(user.id, password);
    if (!updated) throw new HttpError(403, 'You are signed out. Open your account page and sign in again.');
    await runtime.accountTokens.revoke(user.id, 'change_email');
    // The person stays signed in here; everywhere else, whoever knew the old password is signed out.
    const ended = await runtime.accountSessions.endAll(user.id, { keep: session.uid, reason: 'password_changed', request: { ip: ctx.ip, userAgent: ctx.get('user-agent') } });
    await auditTrail.record({ action: 'password.changed', outcome: 'success', ...seen, detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants } });
    pages.render(ctx, 'account/password', { title: TITLE, done: true });
    afterResponse(ctx, logger, 'password changed notice', () => runtime.mailer.send({
      to: updated.email, template: 'password-changed',
      data: { name: updated.name ?? undefined, changedAt: new Date(), link: `${config.issuer}${FORGOT_PASSWORD_PATH}` },
    }));
  });
}
