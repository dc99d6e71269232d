// The pages a person sees while signing in to a client: login, consent and cancel, all under
// /interaction/:uid because the engine scopes its interaction cookie to that path.
import Router from '@koa/router';
import { bodyParser } from '@koa/bodyparser';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { InteractionResults } from 'oidc-provider';
import type { UserService } from '../accounts/users.ts';
import { csrfToken, csrfTokenMatches } from '../http/csrf.ts';
import { contentSecurityPolicy } from '../http/security-headers.ts';
import type { Views } from '../http/views.ts';
import { describeScope } from '../oidc/scopes.ts';
import { HttpError } from '../http/errors.ts';
import { refuseWithPage } from '../http/rate-limits.ts';
import type { LimitDecision, LoginGuard } from '../limits/index.ts';
import type { AuditTrail } from '../audit/audit.ts';

const GENERIC_LOGIN_FAILURE = 'Incorrect email or password.';

export interface InteractionDependencies {
  provider: Provider;
  users: UserService;
  views: Views;
  loginGuard: LoginGuard;
  auditTrail: AuditTrail;
}

export function interactionRoutes({ provider, users, views, loginGuard, auditTrail }: InteractionDependencies): Router {
  const router = new Router({ prefix: '/interaction/:uid' });
  const form = bodyParser({ enableTypes: ['form'], formLimit: '16kb', onError: () => { throw new HttpError(400, 'The form could not be read.'); } });

  async function details(ctx: Context) {
    const interaction = await provider.interactionDetails(ctx.req, ctx.res);
    if (interaction.uid !== ctx.params.uid) throw new HttpError(400, 'This sign-in page does not match your sign-in. Go back to the application and try again.');
    return interaction;
  }

  function render(ctx: Context, template: string, data: Record<string, unknown>, redirectUri: unknown, status = 200): void {
    ctx.status = status;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Security-Policy', contentSecurityPolicy(typeof redirectUri === 'string' ? [redirectUri] : []));
    ctx.body = views.render(template, { ...data, uid: ctx.params.uid, csrf: csrfToken(ctx, `/interaction/${ctx.params.uid}`) });
  }

  /** 429 with Retry-After and a page saying when to try again; identical for lockouts and rate limits. */
  function tooManyAttempts(ctx: Context, refusal: Extract<LimitDecision, { allowed: false }>, redirectUri: unknown): void {
    const { title, message } = refuseWithPage(ctx, refusal);
    render(ctx, 'too-many-attempts', { title, message }, redirectUri, 429);
  }

  function requireCsrf(ctx: Context): void {
    if (!csrfTokenMatches(ctx, (ctx.request.body as Record<string, unknown> | undefined)?.csrf)) {
      throw new HttpError(403, 'This form has expired. Go back and try again.');
    }
  }

  async function finish(ctx: Context, result: InteractionResults, mergeWithLastSubmission: boolean): Promise<void> {
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission });
    ctx.status = 303;
    ctx.redirect(returnTo);
  }

  async function clientName(clientId: unknown): Promise<string> {
    const client = typeof clientId === 'string' ? await provider.Client.find(clientId) : undefined;
    return client?.clientName ?? 'the application';
  }

  router.get('/', async (ctx) => {
    const { prompt, params, session } = await details(ctx);
    const name = await clientName(params.client_id);
    if (prompt.name === 'login') {
      render(ctx, 'login', { clientName: name, email: params.login_hint }, params.redirect_uri);
      return;
    }
    if (prompt.name === 'consent') {
      const account = session?.accountId ? await users.findById(session.accountId) : null;
      render(ctx, 'consent', { clientName: name, email: account?.email, scopes: requestedScopes(prompt.details).map(describeScope) }, params.redirect_uri);
      return;
    }
    throw new HttpError(400, 'This sign-in step is not supported.');
  });

  router.post('/login', form, async (ctx) => {
    const { prompt, params } = await details(ctx);
    requireCsrf(ctx);
    if (prompt.name !== 'login') throw new HttpError(400, 'You are already signed in. Go back to the application.');
    const body = ctx.request.body as Record<string, unknown>;
    const email = typeof body.email === 'string' ? body.email : '';
    const password = typeof body.password === 'string' ? body.password : '';
    const attempt = { email, ip: ctx.ip };
    const seen = { subjectEmail: email, ip: ctx.ip, userAgent: ctx.get('user-agent'), clientId: String(params.client_id) };
    // Counted before the password is checked: a locked account refuses even the right password.
    const before = await loginGuard.beforeAttempt(attempt);
    if (!before.allowed) {
      tooManyAttempts(ctx, before, params.redirect_uri);
      return;
    }
    const user = email && password ? await users.authenticate(email, password) : undefined;
    if (!user) {
      const after = await loginGuard.afterFailure(attempt);
      await auditTrail.record({ action: 'login.failed', outcome: 'failure', ...seen });
      if (!after.allowed && after.lockedNow) await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seen, detail: { seconds: after.retryAfterSeconds } });
      if (!after.allowed) {
        tooManyAttempts(ctx, after, params.redirect_uri);
        return;
      }
      render(ctx, 'login', { clientName: await clientName(params.client_id), email, error: GENERIC_LOGIN_FAILURE }, params.redirect_uri, 401);
      return;
    }
    await loginGuard.afterSuccess(attempt);
    await auditTrail.record({ action: 'login.succeeded', outcome: 'success', ...seen, subjectEmail: user.email, subjectUserId: user.id });
    await finish(ctx, { login: { accountId: user.id, amr: ['pwd'] } }, false);
  });

  router.post('/confirm', form, async (ctx) => {
    const { prompt, params, session, grantId } = await details(ctx);
    requireCsrf(ctx);
    if (prompt.name !== 'consent' || !session) throw new HttpError(400, 'There is nothing to confirm. Go back to the application.');
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: String(params.client_id) });
    if (!grant) throw new HttpError(400, 'This sign-in has expired. Go back to the application and sign in again.');
    const missing = prompt.details as ConsentDetails;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    const savedGrantId = await grant.save();
    await finish(ctx, { consent: grantId ? {} : { grantId: savedGrantId } }, true);
  });

  router.post('/abort', form, async (ctx) => {
    await details(ctx);
    requireCsrf(ctx);
    await finish(ctx, { error: 'access_denied', error_description: 'The user cancelled the sign-in.' }, false);
  });

  return router;
}

interface ConsentDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

function requestedScopes(details: unknown): string[] {
  const { missingOIDCScope = [], missingResourceScopes = {} } = details as ConsentDetails;
  return [...new Set([...missingOIDCScope, ...Object.values(missingResourceScopes).flat()])];
}
