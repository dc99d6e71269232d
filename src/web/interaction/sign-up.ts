// Creating an account from the sign-in page (/interaction/:uid/sign-up, when SIGNUP_ENABLED), and asking
// for a new verification link from the pages of a sign-in. Sign-up never signs anyone in, and its answer is
// the same whether or not the address had an account: the address's owner is told by email instead.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { minimumPasswordLength } from '../../accounts/password-policy.ts';
import type { SignUp } from '../../accounts/flows/sign-up.ts';
import { NAME_MAX_LENGTH } from '../../text.ts';
import { accountKey } from '../../limits/login-guard.ts';
import { networkOf } from '../../limits/index.ts';
import { HttpError, TooManyAttempts } from '../kit/errors.ts';
import { formBody, formField, requireCsrf } from '../kit/pages.ts';
import { inWords } from '../kit/in-words.ts';
import { upperFirst } from '../kit/views.ts';
import type { WebDependencies } from '../dependencies.ts';
import { pathTo, within } from '../paths.ts';
import { INVALID_EMAIL_MESSAGE, requestNewVerificationLink } from '../emailed-links/verify-email.ts';
import { rememberSignIn } from '../kit/return-to-sign-in.ts';
import type { InteractionPages } from './interaction-pages.ts';

type FieldErrors = Partial<Record<'name' | 'email' | 'password', string>>;

/** What the form says beside the field a refused sign-up names. */
function fieldErrors(refusal: Extract<SignUp, { ok: false }>): FieldErrors {
  switch (refusal.reason) {
    case 'invalid_name':
      return { name: refusal.problem === 'too_long' ? `Your name can have at most ${NAME_MAX_LENGTH} characters.` : 'Your name cannot contain line breaks or control characters.' };
    case 'invalid_email':
      return { email: INVALID_EMAIL_MESSAGE };
    case 'weak_password':
      return { password: `${upperFirst(refusal.problem)}.` };
  }
}

/** Adds the sign-up and new-link routes to the interaction router (prefix /interaction/:uid), with its pages. */
export function signUpRoutes(router: Router, deps: Pick<WebDependencies, 'config' | 'flows' | 'afterResponseWork' | 'limits' | 'database'>, pages: InteractionPages): void {
  const { config } = deps;
  const { signUp } = deps.flows;
  const minimumLength = minimumPasswordLength(config.passwordPolicy);

  async function loginStep(ctx: Context) {
    const interaction = await pages.details(ctx);
    if (interaction.prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    return interaction;
  }

  /** An interaction page whose form for a new verification link posts under the interaction (its CSRF cookie's path). */
  function render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status = 200): void {
    pages.render(ctx, template, { resendAction: pathTo('resendVerificationFromSignIn', { uid: ctx.params.uid }), ...data }, redirectUri, status);
  }

  function requireSignUpEnabled(): void {
    // As if the page did not exist: no form, no hint that it could be turned on.
    if (!config.accounts.signupEnabled) throw new HttpError(404, 'There is no such page. Go back to the application and sign in.');
  }

  function renderForm(ctx: Context, data: { clientName: string; name?: string; email?: string; errors?: FieldErrors }, redirectUri: unknown, status = 200): void {
    render(ctx, 'sign-up', { ...data, errors: data.errors ?? {}, minimumLength }, redirectUri, status);
  }

  router.get(within('interaction', 'signUp'), async (ctx) => {
    requireSignUpEnabled();
    const { params } = await loginStep(ctx);
    renderForm(ctx, { clientName: await pages.clientName(params.client_id), email: typeof params.login_hint === 'string' ? params.login_hint : '' }, params.redirect_uri);
  });

  router.post(within('interaction', 'signUp'), formBody, async (ctx) => {
    requireSignUpEnabled();
    const interaction = await loginStep(ctx);
    const { params } = interaction;
    requireCsrf(ctx);
    // Per IP, and per address: every sign-up mails the address (a link, or a notice to its owner), so many
    // IPs must not be able to flood one inbox. Counted alike for new and registered addresses.
    const addressKey = accountKey(formField(ctx, 'email'));
    const limit = await deps.limits.rates.consumeAll([
      ['signup-ip', networkOf(ctx.ip)],
      ...(addressKey ? [['signup-account-ip', `${addressKey}:${networkOf(ctx.ip)}`] as const, ['signup-account', addressKey] as const] : []),
    ]);
    if (!limit.allowed) {
      throw new TooManyAttempts(limit, { action: 'creating accounts' });
    }
    const name = formField(ctx, 'name').trim();
    const email = formField(ctx, 'email').trim();
    const password = formField(ctx, 'password');
    // Looking up the owner, the audit record and the mail server's time come after the answer (the notice), for both.
    const result = await signUp.signUp({ name, email, password }, { ip: ctx.ip, userAgent: ctx.get('user-agent'), clientId: String(params.client_id) });
    if (!result.ok) {
      renderForm(ctx, { clientName: await pages.clientName(params.client_id), name, email, errors: fieldErrors(result) }, params.redirect_uri, 400);
      return;
    }

    // The same page for a new and a registered address, and no sign-in: the person signs in with their
    // password next (when unverified accounts may), as anyone with an account would.
    const address = result.email;
    const continueHref = config.accounts.unverifiedLoginAllowed ? `${pathTo('interaction', { uid: interaction.uid })}?${new URLSearchParams({ email: address })}` : undefined;
    // The link is followed later, maybe in this browser: its page then leads back to this sign-in.
    rememberSignIn(ctx, interaction);
    render(ctx, 'check-email', { email: address, expiresIn: inWords(config.accounts.emailVerificationTtl), continueHref }, params.redirect_uri);

    deps.afterResponseWork.run(ctx, result.created ? 'sign-up verification email' : 'sign-up notice to an existing account', result.notice);
  });

  // From the "check your email" page and from the page that refuses an unverified sign-in.
  router.post(within('interaction', 'resendVerificationFromSignIn'), formBody, async (ctx) => {
    const interaction = await pages.details(ctx);
    const { params } = interaction;
    requireCsrf(ctx);
    const page = await requestNewVerificationLink(ctx, deps, formField(ctx, 'email'));
    if (page.status === 200 && interaction.prompt.name === 'login') rememberSignIn(ctx, interaction);
    render(ctx, 'check-email', page.data, params.redirect_uri, page.status);
  });
}
