// Creating an account from the sign-in page (/interaction/:uid/sign-up, when SIGNUP_ENABLED), and asking
// for a new verification link from the pages of a sign-in. Sign-up never signs anyone in, and its answer is
// the same whether or not the address had an account: the address's owner is told by email instead.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { minimumPasswordLength } from '../accounts/password-policy.ts';
import { AccountError, normalizeEmail, type User } from '../accounts/users.ts';
import { afterResponse } from '../http/after-response.ts';
import { accountKey } from '../limits/login-guard.ts';
import { HttpError, TooManyAttempts } from '../http/errors.ts';
import { formBody, formField, requireCsrf } from '../http/pages.ts';
import { inWords } from '../http/rate-limits.ts';
import { upperFirst } from '../http/views.ts';
import type { Runtime } from '../runtime.ts';
import { INVALID_EMAIL_MESSAGE, createEmailVerification, requestNewVerificationLink } from './email-verification.ts';
import { rememberSignIn } from './return-to-sign-in.ts';
import type { InteractionPages } from './second-factor.ts';

const NAME_MAX_LENGTH = 200;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

type FieldErrors = Partial<Record<'name' | 'email' | 'password', string>>;

/** Adds the sign-up and new-link routes to the interaction router (prefix /interaction/:uid), with its pages. */
export function signUpRoutes(router: Router, runtime: Runtime, pages: InteractionPages): void {
  const { users, config, auditTrail, mailQueue, logger } = runtime;
  const verification = createEmailVerification(runtime);
  const minimumLength = minimumPasswordLength(config.passwordPolicy);

  async function loginStep(ctx: Context) {
    const interaction = await pages.details(ctx);
    if (interaction.prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    return interaction;
  }

  /** An interaction page whose form for a new verification link posts under the interaction (its CSRF cookie's path). */
  function render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status = 200): void {
    pages.render(ctx, template, { resendAction: `/interaction/${ctx.params.uid}/verify-email/resend`, ...data }, redirectUri, status);
  }

  function requireSignUpEnabled(): void {
    // As if the page did not exist: no form, no hint that it could be turned on.
    if (!config.accounts.signupEnabled) throw new HttpError(404, 'There is no such page. Go back to the application and sign in.');
  }

  function renderForm(ctx: Context, data: { clientName: string; name?: string; email?: string; errors?: FieldErrors }, redirectUri: unknown, status = 200): void {
    render(ctx, 'sign-up', { ...data, errors: data.errors ?? {}, minimumLength }, redirectUri, status);
  }

  router.get('/sign-up', async (ctx) => {
    requireSignUpEnabled();
    const { params } = await loginStep(ctx);
    renderForm(ctx, { clientName: await pages.clientName(params.client_id), email: typeof params.login_hint === 'string' ? params.login_hint : '' }, params.redirect_uri);
  });

  router.post('/sign-up', formBody, async (ctx) => {
    requireSignUpEnabled();
    const interaction = await loginStep(ctx);
    const { params } = interaction;
    requireCsrf(ctx);
    // Per IP, and per address: every sign-up mails the address (a link, or a notice to its owner), so many
    // IPs must not be able to flood one inbox. Counted alike for new and registered addresses.
    const addressKey = accountKey(formField(ctx, 'email'));
    const limit = await runtime.limits.rates.consumeAll([
      ['signup-ip', ctx.ip],
      ...(addressKey ? [['signup-account-ip', `${addressKey}:${ctx.ip}`] as const, ['signup-account', addressKey] as const] : []),
    ]);
    if (!limit.allowed) {
      throw new TooManyAttempts(limit, { action: 'creating accounts' });
    }
    const name = formField(ctx, 'name').trim();
    const email = formField(ctx, 'email').trim();
    const password = formField(ctx, 'password');
    const refuse = async (errors: FieldErrors) => {
      renderForm(ctx, { clientName: await pages.clientName(params.client_id), name, email, errors }, params.redirect_uri, 400);
    };
    if (name.length > NAME_MAX_LENGTH) return refuse({ name: `Your name can have at most ${NAME_MAX_LENGTH} characters.` });
    if (CONTROL_CHARACTERS.test(name)) return refuse({ name: 'Your name cannot contain line breaks or control characters.' });

    let created: User | undefined;
    try {
      // The password is hashed before the address is found taken, so both outcomes take the same time.
      created = await users.create({ email, password, ...(name ? { name } : {}) });
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      if (error.code === 'invalid_email') return refuse({ email: INVALID_EMAIL_MESSAGE });
      if (error.code === 'weak_password') return refuse({ password: `${upperFirst(error.message)}.` });
      // email_taken: answered below exactly as a new account is.
    }

    // The same page for a new and a registered address, and no sign-in: the person signs in with their
    // password next (when unverified accounts may), as anyone with an account would.
    const address = normalizeEmail(email);
    const continueHref = config.accounts.unverifiedLoginAllowed ? `/interaction/${ctx.params.uid}?${new URLSearchParams({ email: address })}` : undefined;
    // The link is followed later, maybe in this browser: its page then leads back to this sign-in.
    rememberSignIn(ctx, interaction);
    render(ctx, 'check-email', { email: address, expiresIn: inWords(config.accounts.emailVerificationTtl), continueHref }, params.redirect_uri);

    // Looking up the owner, the audit record and the mail server's time come after the answer, for both.
    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent'), clientId: String(params.client_id) };
    if (created) {
      const user = created;
      afterResponse(ctx, logger, 'sign-up verification email', async () => {
        await auditTrail.record({ action: 'account.created', outcome: 'success', ...seen, subjectUserId: user.id, subjectEmail: user.email, detail: { via: 'sign-up' } });
        await verification.sendLink(user);
      });
      return;
    }
    afterResponse(ctx, logger, 'sign-up notice to an existing account', async () => {
      const owner = await users.findByEmail(address);
      if (!owner) return;
      await auditTrail.record({ action: 'account.created', outcome: 'failure', ...seen, subjectUserId: owner.id, subjectEmail: owner.email, detail: { reason: 'email_taken' } });
      await mailQueue.deliver({ to: owner.email, template: 'account-exists', data: { link: `${config.issuer}/account` } });
    });
  });

  // From the "check your email" page and from the page that refuses an unverified sign-in.
  router.post('/verify-email/resend', formBody, async (ctx) => {
    const interaction = await pages.details(ctx);
    const { params } = interaction;
    requireCsrf(ctx);
    const email = formField(ctx, 'email');
    const answer = await requestNewVerificationLink(ctx, runtime, verification, email);
    if (!answer.allowed) {
      throw new TooManyAttempts(answer, { action: 'sending verification emails' });
    }
    if ('invalidEmail' in answer) {
      render(ctx, 'check-email', { email, resendError: INVALID_EMAIL_MESSAGE }, params.redirect_uri, 400);
      return;
    }
    if (interaction.prompt.name === 'login') rememberSignIn(ctx, interaction);
    render(ctx, 'check-email', { email: normalizeEmail(email), resent: true }, params.redirect_uri);
  });
}
