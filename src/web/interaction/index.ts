// The pages a person sees while signing in to a client: login, consent and cancel, all under
// /interaction/:uid because the engine scopes its interaction cookie to that path.
import Router from '@koa/router';
import type { Context } from 'koa';
import type { InteractionResults } from 'oidc-provider';
import { Pages, formBody as form, requireCsrf } from '../kit/pages.ts';
import { describeScope, scopesAboutPeople } from '../../oidc/scopes.ts';
import { describeApiScope } from '../../apis/apis.ts';
import type { Interaction } from '../../oidc/engine-internals.ts';
import { WITHHELD_FROM_SINGLE_PAGE_APPS, isSinglePageApp } from '../../oidc/client-kinds.ts';
import { HttpError, SignInInterrupted, TooManyAttempts } from '../kit/errors.ts';
import { PATHS, pathTo, within } from '../paths.ts';
import { secondFactorRoutes } from './second-factor.ts';
import { finishSignIn, signInRequest, type InteractionPages } from './interaction-pages.ts';
import { SECOND_FACTOR_REQUIRED } from '../../oidc/assurance.ts';
import type { StepUp } from '../../accounts/flows/sign-in.ts';
import type { WebDependencies } from '../dependencies.ts';
import { rememberSignIn } from '../kit/return-to-sign-in.ts';
import { forgetThisDevice, trustThisDevice, trustedDeviceFor } from '../kit/trusted-device.ts';
import { signUpRoutes } from './sign-up.ts';

const GENERIC_LOGIN_FAILURE = 'Incorrect email or password.';
const MISSING_FIELD = { email: 'Enter your email address.', password: 'Enter your password.' } as const;

export function interactionRoutes(deps: Pick<WebDependencies, 'config' | 'logger' | 'views' | 'engine' | 'flows' | 'afterResponseWork' | 'limits' | 'users' | 'consents' | 'apis' | 'database'>): Router {
  const { engine, users, views, consents } = deps;
  const { signIn } = deps.flows;
  const router = new Router({ prefix: PATHS.interaction });
  const pages = new Pages(views);

  async function details(ctx: Context) {
    const interaction = await engine.interactionDetails(ctx).catch(async (refusal: unknown) => {
      const restartUrl = await engine.restartOfInterruptedSignIn(refusal, ctx, ctx.params.uid!);
      throw restartUrl === undefined ? refusal : new SignInInterrupted(restartUrl);
    });
    if (interaction.uid !== ctx.params.uid) throw new HttpError(400, 'This sign-in page does not match your sign-in. Go back to the application and try again.');
    return interaction;
  }

  /** Renders an interaction page; its forms may end at the client's redirect URI. */
  function render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status = 200): void {
    pages.render(ctx, template, { ...data, uid: ctx.params.uid }, { status, formTarget: redirectUri });
  }

  async function finish(ctx: Context, result: InteractionResults, mergeWithLastSubmission: boolean): Promise<void> {
    const returnTo = await engine.finishInteraction(ctx, result, { mergeWithLastSubmission });
    ctx.status = 303;
    ctx.redirect(returnTo);
  }

  /** Scopes this client may ask for but is never granted (offline access for browser apps: client-kinds.ts). */
  async function withheldScopes(clientId: unknown): Promise<ReadonlySet<string>> {
    const client = await engine.findClient(clientId);
    return client && isSinglePageApp(client) ? WITHHELD_FROM_SINGLE_PAGE_APPS : new Set();
  }

  async function clientName(clientId: unknown): Promise<string> {
    const client = await engine.findClient(clientId);
    return client?.clientName ?? 'the application';
  }

  const interactionPages: InteractionPages = { details, render, finish, clientName };

  router.get(within('interaction', 'interaction'), async (ctx) => {
    const interaction = await details(ctx);
    const { prompt, params, session } = interaction;
    const name = await clientName(params.client_id);
    if (prompt.name === 'login') {
      // Signed in with a password already, and only the second factor is missing (step-up): ask just that.
      // ("Sign in as someone else" asks for an email and password instead.)
      const stepUp: StepUp = ctx.query.account !== 'other' && prompt.reasons.length === 1 && prompt.reasons[0] === SECOND_FACTOR_REQUIRED
        ? await signIn.stepUp(signInRequest(ctx, interaction)) : { next: 'password' };
      if (stepUp.next === 'second_factor') {
        ctx.status = 303;
        ctx.redirect(pathTo('secondFactor', { uid: interaction.uid }));
        return;
      }
      // ?email= comes from sign-up's "Continue to sign in"; it only fills in the field. A step-up that must
      // set up a second factor asks the signed-in account's password first.
      const email = typeof ctx.query.email === 'string' ? ctx.query.email.slice(0, 320) : stepUp.email ?? params.login_hint;
      render(ctx, 'login', { clientName: name, email, signupEnabled: deps.config.accounts.signupEnabled }, params.redirect_uri);
      return;
    }
    if (prompt.name === 'consent') {
      const account = session?.accountId ? await users.findById(session.accountId) : null;
      const scopes = await consentWords(prompt, params, await withheldScopes(params.client_id), deps.apis);
      render(ctx, 'consent', { clientName: name, email: account?.email, scopes }, params.redirect_uri);
      return;
    }
    throw new HttpError(400, 'This sign-in step is not supported.');
  });

  router.post(within('interaction', 'login'), form, async (ctx) => {
    const interaction = await details(ctx);
    const { prompt, params } = interaction;
    requireCsrf(ctx);
    if (prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    const body = ctx.request.body as Record<string, unknown>;
    const email = typeof body.email === 'string' ? body.email : '';
    const password = typeof body.password === 'string' ? body.password : '';
    // A browser that proved before that it is this account holder's has a lockout of its own (trusted-device.ts).
    const credentials = { email, password, device: trustedDeviceFor(ctx, email) };
    const result = await signIn.withPassword(signInRequest(ctx, interaction), credentials, finishSignIn(ctx, interactionPages));
    // The right password proves this browser is the account holder's: trusted from now on (a new device).
    if (result.ok || result.reason === 'email_not_verified') trustThisDevice(ctx, email);
    if (result.ok) {
      if (result.next === 'second_factor') {
        ctx.status = 303;
        ctx.redirect(pathTo('secondFactor', { uid: interaction.uid }));
      }
      return;
    }
    switch (result.reason) {
      case 'too_many_attempts':
        // A trusted device's lock ends its trust: from now on this browser is under the account's lockout.
        if (result.untrustDevice) forgetThisDevice(ctx);
        throw new TooManyAttempts(result.refusal);
      case 'email_not_verified':
        // No session until the address is confirmed (UNVERIFIED_LOGIN_ALLOWED=false); the link leads back here.
        rememberSignIn(ctx, interaction);
        render(ctx, 'verify-email-required', { email: result.email }, params.redirect_uri, 403);
        return;
      case 'missing_credentials':
        render(ctx, 'login', {
          clientName: await clientName(params.client_id), email, error: MISSING_FIELD[result.field], errorField: result.field, signupEnabled: deps.config.accounts.signupEnabled,
        }, params.redirect_uri, 400);
        return;
      case 'wrong_credentials':
        render(ctx, 'login', { clientName: await clientName(params.client_id), email, error: GENERIC_LOGIN_FAILURE, signupEnabled: deps.config.accounts.signupEnabled }, params.redirect_uri, 401);
        return;
      case 'other_account':
        render(ctx, 'login', {
          clientName: await clientName(params.client_id), email, error: 'This application asked for another account. Sign in as the person it named, or go back to it.',
          signupEnabled: deps.config.accounts.signupEnabled,
        }, params.redirect_uri, 403);
    }
  });

  // "Forgot your password?": the reset pages are not under the interaction, so this browser remembers the
  // sign-in it leaves, to continue it once the emailed link is used here.
  router.get(within('interaction', 'forgotPasswordFromSignIn'), async (ctx) => {
    // A sign-in that expired (or cannot be read now) leaves nothing to come back to; the request form still helps.
    const interaction = await details(ctx).catch(() => undefined);
    if (interaction?.prompt.name === 'login') rememberSignIn(ctx, interaction);
    ctx.status = 303;
    ctx.redirect(PATHS.forgotPassword);
  });

  router.post(within('interaction', 'consent'), form, async (ctx) => {
    const { prompt, params, session, grantId } = await details(ctx);
    requireCsrf(ctx);
    if (prompt.name !== 'consent' || !session) throw new HttpError(400, 'There is nothing to confirm. Go back to the application.');
    const grant = grantId
      ? await engine.findGrant(grantId)
      : engine.newGrant({ accountId: session.accountId!, clientId: String(params.client_id) });
    if (!grant) throw new HttpError(400, 'This sign-in has expired. Go back to the application and sign in again.');
    const missing = prompt.details as ConsentDetails;
    const withheld = await withheldScopes(params.client_id);
    const asked = askedOIDCScopes(prompt, params);
    const consented = asked.filter((scope) => !withheld.has(scope));
    const refused = asked.filter((scope) => withheld.has(scope));
    if (consented.length) grant.addOIDCScope(consented.join(' '));
    // Refused, not left out: the engine then counts it as answered and grants the rest without asking again.
    if (refused.length) grant.rejectOIDCScope(refused.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const savedGrantId = await grant.save();
    // Remembered past signing out: the next sign-in to this app asks only what it newly asks (until withdrawn).
    await consents.remember(session.accountId!, String(params.client_id), {
      scopes: consented, claims: missing.missingOIDCClaims ?? [], resources: missing.missingResourceScopes ?? {},
    });
    await finish(ctx, { consent: grantId ? {} : { grantId: savedGrantId } }, true);
  });

  router.post(within('interaction', 'abort'), form, async (ctx) => {
    const { uid } = await details(ctx);
    requireCsrf(ctx);
    await signIn.cancel(uid);
    await finish(ctx, { error: 'access_denied', error_description: 'The user cancelled the sign-in.' }, false);
  });

  // After the password: the authenticator or recovery code, or enrollment when it is required.
  secondFactorRoutes(router, deps, interactionPages);
  signUpRoutes(router, deps, interactionPages);
  return router;
}

interface ConsentDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

/**
 * The OpenID scopes the consent page asks about: those not consented to yet, or, when the app asked for the
 * question itself (prompt=consent, as offline access needs), everything it asks — never an empty question.
 */
function askedOIDCScopes(prompt: Interaction['prompt'], params: Interaction['params']): string[] {
  if (prompt.reasons.includes('consent_prompt')) return scopesAboutPeople(typeof params.scope === 'string' ? params.scope : undefined);
  return (prompt.details as ConsentDetails).missingOIDCScope ?? [];
}

/** What the consent page asks for, in words: what the client asked and may be granted, about the person and of APIs. */
async function consentWords(prompt: Interaction['prompt'], params: Interaction['params'], withheld: ReadonlySet<string>, apis: WebDependencies['apis']): Promise<string[]> {
  const { missingResourceScopes = {} } = prompt.details as ConsentDetails;
  const aboutPerson = askedOIDCScopes(prompt, params).filter((scope) => !withheld.has(scope)).map(describeScope);
  const ofApis = await Promise.all(Object.entries(missingResourceScopes).map(async ([identifier, scopes]) => {
    const api = await apis.find(identifier);
    return scopes.map((scope) => (api ? describeApiScope(api, scope) : describeScope(scope)));
  }));
  return [...new Set([...aboutPerson, ...ofApis.flat()])];
}
