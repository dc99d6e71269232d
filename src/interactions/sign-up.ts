// Creating an account from the sign-in page (/interaction/:uid/sign-up, when SIGNUP_ENABLED), and asking
// for a new verification link from the pages of a sign-in. A registered address is never revealed: its
// owner is told by email instead, and the page is the one a new account gets when it must verify first.
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { InteractionResults } from 'oidc-provider';
import { AccountError, MINIMUM_PASSWORD_LENGTH, normalizeEmail, type User } from '../accounts/users.ts';
import { MailRejected } from '../mail/mailer.ts';
import { HttpError } from '../http/errors.ts';
import { Pages, formBody, formField, requireCsrf, type Refusal } from '../http/pages.ts';
import { inWords } from '../http/rate-limits.ts';
import { upperFirst } from '../http/views.ts';
import type { Runtime } from '../runtime.ts';
import { INVALID_EMAIL_MESSAGE, createEmailVerification, requestNewVerificationLink } from './email-verification.ts';

const NAME_MAX_LENGTH = 200;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

type FieldErrors = Partial<Record<'name' | 'email' | 'password', string>>;

/** Adds the sign-up and new-link routes to the interaction router (prefix /interaction/:uid). */
export function signUpRoutes(router: Router, runtime: Runtime): void {
  const { provider, users, config, auditTrail, mailer, logger } = runtime;
  const pages = new Pages(runtime.views);
  const verification = createEmailVerification(runtime);
  const minimumLength = Math.max(MINIMUM_PASSWORD_LENGTH, config.passwordPolicy.minimumLength);

  async function details(ctx: Context) {
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    if (interaction.uid !== ctx.params.uid) throw new HttpError(400, 'This sign-in page does not match your sign-in. Go back to the application and try again.');
    return interaction;
  }

  async function loginStep(ctx: Context) {
    const interaction = await details(ctx);
    if (interaction.prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    return interaction;
  }

  function render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status = 200): void {
    const uid = ctx.params.uid;
    pages.render(ctx, template, { resendAction: `/interaction/${uid}/verify-email/resend`, ...data, uid }, { status, csrfPath: `/interaction/${uid}`, formTarget: redirectUri });
  }

  function tooManyAttempts(ctx: Context, refusal: Refusal, redirectUri: unknown, action: string): void {
    pages.tooManyAttempts(ctx, refusal, { csrfPath: `/interaction/${ctx.params.uid}`, formTarget: redirectUri, action });
  }

  async function clientName(clientId: unknown): Promise<string> {
    const client = typeof clientId === 'string' ? await provider.Client.find(clientId) : undefined;
    return client?.clientName ?? 'the application';
  }

  function requireSignUpEnabled(): void {
    // As if the page did not exist: no form, no hint that it could be turned on.
    if (!config.accounts.signupEnabled) throw new HttpError(404, 'There is no such page. Go back to the application and sign in.');
  }

  function renderForm(ctx: Context, data: { clientName: string; name?: string; email?: string; errors?: FieldErrors }, redirectUri: unknown, status = 200): void {
    render(ctx, 'sign-up', { ...data, errors: data.errors ?? {}, minimumLength }, redirectUri, status);
  }

  /** A message whose address the mail server refuses for good changes nothing on the page (no one learns which it was). */
  async function deliver(send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (error) {
      if (!(error instanceof MailRejected)) throw error;
      logger.warn({ err: error }, 'sign-up message refused by the mail server');
    }
  }

  router.get('/sign-up', async (ctx) => {
    requireSignUpEnabled();
    const { params } = await loginStep(ctx);
    renderForm(ctx, { clientName: await clientName(params.client_id), email: typeof params.login_hint === 'string' ? params.login_hint : '' }, params.redirect_uri);
  });

  router.post('/sign-up', formBody, async (ctx) => {
    requireSignUpEnabled();
    const { params } = await loginStep(ctx);
    requireCsrf(ctx);
    const limit = await runtime.limits.rates.consume('signup-ip', ctx.ip);
    if (!limit.allowed) {
      tooManyAttempts(ctx, limit, params.redirect_uri, 'creating accounts');
      return;
    }
    const name = formField(ctx, 'name').trim();
    const email = formField(ctx, 'email').trim();
    const password = formField(ctx, 'password');
    const refuse = async (errors: FieldErrors) => {
      renderForm(ctx, { clientName: await clientName(params.client_id), name, email, errors }, params.redirect_uri, 400);
    };
    if (name.length > NAME_MAX_LENGTH) return refuse({ name: `Your name can have at most ${NAME_MAX_LENGTH} characters.` });
    if (CONTROL_CHARACTERS.test(name)) return refuse({ name: 'Your name cannot contain line breaks or control characters.' });

    let user: User | undefined;
    try {
      // The password is hashed before the address is found taken, so both outcomes take the same time.
      user = await users.create({ email, password, ...(name ? { name } : {}) });
    } catch (error) {
      if (!(error instanceof AccountError)) throw error;
      if (error.code === 'invalid_email') return refuse({ email: INVALID_EMAIL_MESSAGE });
      if (error.code === 'weak_password') return refuse({ password: `${upperFirst(error.message)}.` });
    }

    const seen = { ip: ctx.ip, userAgent: ctx.get('user-agent'), clientId: String(params.client_id) };
    if (user) {
      const created = user;
      await deliver(() => verification.sendLink(created));
      await auditTrail.record({ action: 'account.created', outcome: 'success', ...seen, subjectUserId: created.id, subjectEmail: created.email, detail: { via: 'sign-up' } });
      if (config.accounts.unverifiedLoginAllowed) {
        // As Auth0 does: signed in at once; the client sees email_verified: false until the link is followed.
        await auditTrail.record({ action: 'login.succeeded', outcome: 'success', ...seen, subjectUserId: created.id, subjectEmail: created.email, detail: { via: 'sign-up' } });
        await finish(ctx, { login: { accountId: created.id, amr: ['pwd'] } });
        return;
      }
    } else {
      // The address is taken. Its owner hears about it; the page is the same as for a new account.
      const owner = await users.findByEmail(email);
      if (owner) {
        await deliver(() => mailer.send({ to: owner.email, template: 'account-exists', data: { name: owner.name ?? undefined, link: `${config.issuer}/account` } }));
        await auditTrail.record({ action: 'account.created', outcome: 'failure', ...seen, subjectUserId: owner.id, subjectEmail: owner.email, detail: { reason: 'email_taken' } });
      }
    }
    render(ctx, 'check-email', { email: normalizeEmail(email), expiresIn: inWords(config.accounts.emailVerificationTtl) }, params.redirect_uri);
  });

  // From the "check your email" page and from the page that refuses an unverified sign-in.
  router.post('/verify-email/resend', formBody, async (ctx) => {
    const { params } = await details(ctx);
    requireCsrf(ctx);
    const email = formField(ctx, 'email');
    const answer = await requestNewVerificationLink(runtime, verification, email, ctx.ip);
    if (!answer.allowed) {
      tooManyAttempts(ctx, answer, params.redirect_uri, 'sending verification emails');
      return;
    }
    if ('invalidEmail' in answer) {
      render(ctx, 'check-email', { email, resendError: INVALID_EMAIL_MESSAGE }, params.redirect_uri, 400);
      return;
    }
    render(ctx, 'check-email', { email: normalizeEmail(email), resent: true }, params.redirect_uri);
  });

  async function finish(ctx: Context, result: InteractionResults): Promise<void> {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(returnTo);
  }
}
