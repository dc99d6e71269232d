// Account console: changing the email address. The current password is asked, a link goes to the new address
// (nothing changes until it is followed: web/emailed-links/email-change.ts) and the current address is told.
import { within } from '../paths.ts';
import { isNewEmailAddress, normalizeEmail } from '../../accounts/users.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { formBody, formField, requireCsrf } from '../kit/pages.ts';
import { inWords } from '../kit/in-words.ts';
import { accountKey } from '../../limits/login-guard.ts';
import type { WebDependencies } from '../dependencies.ts';
import type { AccountPages, AccountRouter } from './index.ts';
import { checkCurrentPassword } from './current-password.ts';

const TITLE = 'Change your email address';

export function emailRoutes(router: AccountRouter, deps: Pick<WebDependencies, 'config' | 'flows' | 'afterResponseWork' | 'limits'>, pages: AccountPages): void {
  const { config, limits } = deps;
  const ttlSeconds = config.accounts.emailVerificationTtl;
  const action = 'changing your email address';

  router.get(within('account', 'accountEmail'), (ctx) => {
    pages.render(ctx, 'account/email', { title: TITLE });
  });

  router.post(within('account', 'accountEmail'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const { user } = ctx.state.account;
    const typed = formField(ctx, 'email').slice(0, 320);
    const newEmail = normalizeEmail(typed);
    const current = formField(ctx, 'current_password');
    const refuse = (errors: Record<string, string>) => pages.render(ctx, 'account/email', { title: TITLE, email: typed, errors }, 400);
    if (!isNewEmailAddress(newEmail)) return refuse({ email: 'Enter the new email address, like name@example.com.' });
    if (newEmail === user.email) return refuse({ email: 'That is already your email address. Enter the new one.' });
    if (!current) return refuse({ current: 'Enter your current password.' });
    if (!await checkCurrentPassword(ctx, deps.flows.reauthentication, user, current, 'change_email', action)) return refuse({ current: 'That is not your current password.' });
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
    const work = deps.flows.emailChange.request(user, newEmail, { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    deps.afterResponseWork.run(ctx, 'email change link', work.link);
    deps.afterResponseWork.run(ctx, 'email change audit record', work.audit);
    deps.afterResponseWork.run(ctx, 'email change notice', work.notice);
  });
}
