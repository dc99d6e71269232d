// Account console: changing the password while signed in. It asks the current password (counted, so a
// borrowed session cannot guess it) and, once changed, ends every other session and grant of the account
// and every link that could still set or move it (reset and email-change links asked for before): the work
// is src/accounts/flows/password-change.ts's.
import { minimumPasswordLength, normalizePassword } from '../../accounts/password-policy.ts';
import { HttpError } from '../kit/errors.ts';
import { formBody, formField, requireCsrf } from '../kit/pages.ts';
import { newPasswordErrors } from '../kit/password-forms.ts';
import type { WebDependencies } from '../dependencies.ts';
import { within } from '../paths.ts';
import type { AccountPages, AccountRouter } from './index.ts';
import { checkCurrentPassword } from './current-password.ts';

const TITLE = 'Change your password';

export function passwordRoutes(router: AccountRouter, deps: Pick<WebDependencies, 'config' | 'flows' | 'afterResponseWork' | 'users'>, pages: AccountPages): void {
  const { config, users } = deps;
  const { passwordChange } = deps.flows;
  const minimumLength = minimumPasswordLength(config.passwordPolicy);

  router.get(within('account', 'accountPassword'), (ctx) => {
    pages.render(ctx, 'account/password', { title: TITLE, minimumLength });
  });

  router.post(within('account', 'accountPassword'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user, session } = ctx.state.account;
    const current = formField(ctx, 'current_password');
    const password = formField(ctx, 'password');
    const refuse = (errors: object) => pages.render(ctx, 'account/password', { title: TITLE, minimumLength, errors }, 400);
    if (!current) return refuse({ current: 'Enter your current password.' });
    if (!await checkCurrentPassword(ctx, deps.flows.reauthentication, user, current, 'change_password', 'changing your password')) {
      return refuse({ current: 'That is not your current password.' });
    }
    const errors = newPasswordErrors(users, user, password, formField(ctx, 'confirm'))
      ?? (normalizePassword(password) === normalizePassword(current) ? { password: 'The new password must differ from your current one.' } : undefined);
    if (errors) return refuse(errors);
    const changed = await passwordChange.change(
      { account: user, newPassword: password, keepSession: session.uid },
      { ip: ctx.ip, userAgent: ctx.get('user-agent') },
    );
    if (!changed.ok) throw new HttpError(403, 'You are signed out. Open your account page and sign in again.');
    pages.render(ctx, 'account/password', { title: TITLE, done: true });
    deps.afterResponseWork.run(ctx, 'password changed notice', changed.notice);
  });
}
