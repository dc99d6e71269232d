// Account console: changing the password while signed in. It asks the current password (counted, so a
// borrowed session cannot guess it) and, once changed, ends every other session and grant of the account
// and every link that could still set or move it (reset and email-change links asked for before).
import { minimumPasswordLength, normalizePassword } from '../accounts/password-policy.ts';
import { afterResponse } from '../http/after-response.ts';
import { HttpError } from '../http/errors.ts';
import { formBody, formField, requireCsrf } from '../http/pages.ts';
import { FORGOT_PASSWORD_PATH, newPasswordErrors } from '../http/password-forms.ts';
import type { Runtime } from '../runtime.ts';
import type { AccountPages, AccountRouter } from './index.ts';
import { checkCurrentPassword } from './reauthentication.ts';

const TITLE = 'Change your password';

export function passwordRoutes(router: AccountRouter, runtime: Runtime, pages: AccountPages): void {
  const { config, users, auditTrail, logger } = runtime;
  const minimumLength = minimumPasswordLength(config.passwordPolicy);

  router.get('/password', (ctx) => {
    pages.render(ctx, 'account/password', { title: TITLE, minimumLength });
  });

  router.post('/password', formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user, session } = ctx.state.account;
    const current = formField(ctx, 'current_password');
    const password = formField(ctx, 'password');
    const refuse = (errors: object) => pages.render(ctx, 'account/password', { title: TITLE, minimumLength, errors }, 400);
    // An empty field is a slip, not a guess: it is not counted.
    if (!current) return refuse({ current: 'Enter your current password.' });
    const check = await checkCurrentPassword(runtime, ctx, user, current, 'change_password');
    if (!check.ok && check.refusal) return pages.tooManyAttempts(ctx, check.refusal, 'changing your password');
    if (!check.ok) return refuse({ current: 'That is not your current password.' });
    const errors = newPasswordErrors(users, user, password, formField(ctx, 'confirm'))
      ?? (normalizePassword(password) === normalizePassword(current) ? { password: 'The new password must differ from your current one.' } : undefined);
    if (errors) return refuse(errors);
    const updated = await users.setPassword(user.id, password);
    if (!updated) throw new HttpError(403, 'You are signed out. Open your account page and sign in again.');
    // A link mailed before the change (perhaps asked for by whoever knew the old password) must not undo it.
    await runtime.accountTokens.revoke(user.id, 'change_email');
    await runtime.accountTokens.revoke(user.id, 'reset_password');
    // The person stays signed in here; everywhere else, whoever knew the old password is signed out.
    const request = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    const ended = await runtime.accountSessions.endAll(user.id, { keep: session.uid, reason: 'password_changed', request });
    await auditTrail.record({
      action: 'password.changed', outcome: 'success', subjectUserId: user.id, subjectEmail: user.email, ...request,
      detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
    });
    pages.render(ctx, 'account/password', { title: TITLE, done: true });
    afterResponse(ctx, logger, 'password changed notice', () => runtime.mailQueue.deliver({
      to: updated.email, template: 'password-changed',
      data: { changedAt: new Date(), link: `${config.issuer}${FORGOT_PASSWORD_PATH}` },
    }));
  });
}
