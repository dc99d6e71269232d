// oidc-provider configured the Gatehouse way: code flow with PKCE (S256) only, rotating refresh tokens,
// exact redirect URIs, storage through the adapter, accounts from PostgreSQL and Gatehouse's own pages.
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Config } from '../config/index.ts';
import { LONGEST_REFRESH_TOKEN_GRACE_PERIOD, PREVIOUS_CLIENT_SECRET, PREVIOUS_CLIENT_SECRET_EXPIRES_AT, REFRESH_TOKEN_GRACE_PERIOD, newClientId, newClientSecret, type ClientService } from '../clients/clients.ts';
import type { InitialAccessTokens } from './initial-access-tokens.ts';
import { standardClaims, type UserService } from '../accounts/users.ts';
import type { SecondFactorService } from '../accounts/second-factor.ts';
import type { ConsentService } from '../accounts/consents.ts';
import type { Store } from '../store/store.ts';
import { SIGNING_ALGORITHMS, type Secrets } from '../keys/secrets.ts';
import type { SigningKeyRing } from '../keys/key-ring.ts';
import { createAdapterFactory } from './adapter.ts';
import type { UnansweredGrants } from './unanswered-grants.ts';
import { oncePerRequest } from './per-request.ts';
import { asProviderError } from './errors.ts';
import { CLAIMS_BY_SCOPE, SCOPES } from './scopes.ts';
import { ACR_SECOND_FACTOR, ACR_VALUES, REQUIRE_SECOND_FACTOR, SECOND_FACTOR_REQUIRED, secondFactorDecision } from './assurance.ts';
import { FIRST_PARTY } from './client-kinds.ts';
import { secureUriProblem, originOf } from '../urls.ts';
import { RETRY_AFTER_OUTAGE_SECONDS } from '../errors.ts';
import { accountConsoleClient } from './account-console-client.ts';
import { WITHHELD_FROM_SINGLE_PAGE_APPS, isSinglePageApp } from './client-kinds.ts';
import { acceptPreviousClientSecrets, keepOldSessionsUntilSaved, newGrant, routeKey, routeParameter, withdrawGrantedScopes, resourceOfRefreshRequest, takeOverLogoutNotices, useSigningKeys, type EngineGrant } from './engine-internals.ts';
import { logoutReachesApplications, logoutReturnsToClient } from './logout.ts';
import { idTokenHintsOfExpiredKeys } from './id-token-hints.ts';
import { GRANT_ID_CLAIM, SESSION_UID_CLAIM, type JwtAccessTokens } from './jwt-access-tokens.ts';
import { answerForJwtAccessTokens, introspectionPolicy } from './token-introspection.ts';
import { API_SCOPES, DEFAULT_RESOURCE, RESOURCE_SERVER, resourceIndicators } from './resource-servers.ts';
import { SCOPE_TOKEN, type ApiService } from '../apis/apis.ts';
import { FRONTCHANNEL_LOGOUT_SESSION_REQUIRED, FRONTCHANNEL_LOGOUT_URI, type LogoutNotices } from './logout-notices.ts';

export interface ProviderDependencies {
  config: Config;
  secrets: Pick<Secrets, 'cookieSecrets'>;
  /** The signing keys of the moment: the engine follows their rotation. */
  signingKeys: Pick<SigningKeyRing, 'jwks' | 'onChange' | 'formerPublicKey'>;
  /** The algorithms those keys sign with (an API's access tokens may use any of them). */
  signingAlgorithms: ReadonlySet<string>;
  /** JWT access tokens, which the engine does not store: checked, revoked, and revoked with their grant here. */
  jwtAccessTokens: JwtAccessTokens;
  /** What opens dynamic client registration: each registration spends a use of one. */
  initialAccessTokens: Pick<InitialAccessTokens, 'spendOne'>;
  /** Codes and refresh tokens consumed by token requests that failed for an outage, given back (unanswered-grants.ts). */
  unansweredGrants: UnansweredGrants;
  /** Seconds a JWKS response may be cached: short enough for a new key to reach every cache before it signs. */
  jwksMaxAgeSeconds: number;
  store: Store;
  users: UserService;
  clients: ClientService;
  /** APIs (resource servers): what a `resource` names, and the format of its access tokens. */
  apis: Pick<ApiService, 'find'>;
  /** The scopes of an API (by identifier) that these roles permit a person to be granted. */
  permittedScopes(roles: readonly string[], api: string): Promise<ReadonlySet<string>>;
  pages: EnginePages;
  /** Where the engine sends a browser to sign in (the interaction pages, src/web/interaction/). */
  interactionPath(uid: string): string;
  /** What people allowed each application, remembered across sign-outs. */
  consents: Pick<ConsentService, 'of'>;
  /** Whether an account has, or must use, a second factor (for step-up). */
  secondFactor: Pick<SecondFactorService, 'loginRequirement'>;
  /** Tells the applications of a session that it ended (back-channel and front-channel logout). */
  logoutNotices: Pick<LogoutNotices, 'sessionEnded'>;
}

/** A page the engine answers with: it writes the response (type, body, headers) on the engine's context. */
type EnginePage<Data> = (ctx: KoaContextWithOIDC, data: Data) => void;

/** The pages the engine shows, in Gatehouse's layout (the web side makes them: src/web/kit/engine-pages.ts). */
export interface EnginePages {
  /**
   * "Sign out of <client>?": `engineForm` is the engine's form to submit; `returnTo`, where it ends. `fromApplication`:
   * the request named an application (id_token_hint or client_id), which the person may sign out of alone; without
   * one there is nothing to sign out of but Gatehouse (the engine's confirmation would end nothing).
   */
  logout: EnginePage<{ engineForm: string; clientName: string | undefined; fromApplication: boolean; returnTo: string | undefined }>;
  /** `onlyFromClient`: the person signed out of that client alone, and is still signed in to Gatehouse. */
  loggedOut: EnginePage<{ clientName: string | undefined; onlyFromClient: boolean }>;
  /**
   * Signing out: the browser loads each application's front-channel logout URL (`frontChannel`) in a hidden
   * frame, then goes on to `continueTo` (where the engine was sending it).
   */
  signingOut: EnginePage<{ frontChannel: readonly string[]; continueTo: string }>;
  /** The engine's own page posts a form whose redirect chain ends at `returnTo`: let the browser follow it. */
  formLeadsTo: EnginePage<{ returnTo: string }>;
  error: EnginePage<{ error: string; error_description?: string | undefined }>;
}

/**
 * Endpoints (engine route names) a single-page app calls from the browser, pushed authorization requests among
 * them (RFC 9126 allows public clients); the engine asks clientBasedCORS about these, and
 * src/web/middleware/cors-preflight.ts answers their preflights.
 */
export const BROWSER_ENDPOINTS: ReadonlySet<string> = new Set(['token', 'userinfo', 'revocation', 'pushed_authorization_request']);

export function createProvider({ config, secrets, signingKeys, signingAlgorithms, jwtAccessTokens, initialAccessTokens, unansweredGrants, jwksMaxAgeSeconds, store, users, clients, apis, permittedScopes, pages, interactionPath, secondFactor, consents, logoutNotices }: ProviderDependencies): Provider {
  const personOf = (request: object, accountId: string) => oncePerRequest(request, `person ${accountId}`, () => users.findForTokens(accountId));
  const mayIntrospect = introspectionPolicy(personOf, async (identifier) => await apis.find(identifier) !== undefined);
  const apiAccess = resourceIndicators(apis, async (ctx, accountId, api) => permittedScopes((await personOf(ctx, accountId))?.roles ?? [], api));
  const configuration: Configuration = {
    adapter: createAdapterFactory(store, clients, (grantId) => jwtAccessTokens.grantRevoked(grantId), initialAccessTokens, unansweredGrants, (request, accountId) => {
      // Whoever asks next sees a failure (a 503 if the database is down); until then it is nobody's to report.
      personOf(request, accountId).catch(() => {});
    }),
    // Built in, held in memory by the engine (never looked up in the database).
    clients: [accountConsoleClient(config.issuer)],
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session!.grantIdFor(ctx.oidc.client!.clientId);
      const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      return asProviderError(() => grantToStartFrom(ctx, existing, consents));
    },
    jwks: signingKeys.jwks as Configuration['jwks'],
    cookies: {
      keys: secrets.cookieSecrets,
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    findAccount: (ctx, sub) => asProviderError(async () => {
      const user = await personOf(ctx, sub);
      if (!user || user.disabled) return undefined;
      return { accountId: user.id, claims: () => standardClaims(user) };
    }),
    // A person's roles ride on their access tokens for APIs too (JWT claims, or introspection's answer for
    // opaque ones) when the grant holds the `roles` scope, as on ID tokens and userinfo.
    extraTokenClaims: (ctx, token) => asProviderError(async () => {
      const accountId = 'accountId' in token ? token.accountId : undefined;
      if (!accountId || !('resourceServer' in token) || !token.resourceServer) return undefined;
      const grantId = 'grantId' in token ? token.grantId : undefined;
      // A JWT names its grant, so that revoking the grant reaches it, and the session it ends with, if it does
      // (jwt-access-tokens.ts); a stored token knows both.
      const jwt = token.resourceServer.accessTokenFormat === 'jwt';
      const sessionUid = 'expiresWithSession' in token && token.expiresWithSession ? token.sessionUid : undefined;
      const named = {
        ...(jwt && grantId ? { [GRANT_ID_CLAIM]: grantId } : {}),
        ...(jwt && sessionUid ? { [SESSION_UID_CLAIM]: sessionUid } : {}),
      };
      // Roles only when this token's request asked for them (the code's or refresh token's scope, or a narrower
      // one asked at the refresh), as its ID token has them: a person's grant may hold roles from an earlier request.
      const asked = ctx.oidc.params?.scope ? ctx.oidc.requestParamScopes : (ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.RefreshToken)?.scopes;
      if (!asked?.has('roles')) return named;
      const grant = ctx.oidc.entities.Grant ?? (grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined);
      if (!grant?.getOIDCScope().split(' ').includes('roles')) return named;
      const user = await personOf(ctx, accountId);
      return user ? { ...named, roles: [...user.roles] } : named;
    }),
    // The ID token carries the granted profile and email claims too (as Keycloak and Auth0 do), so an
    // app knows who signed in without a userinfo call; userinfo still answers them.
    conformIdTokenClaims: false,
    claims: Object.fromEntries(Object.entries(CLAIMS_BY_SCOPE).map(([scope, claims]) => [scope, [...claims]])),
    scopes: [...SCOPES],
    // loa:1 password, loa:2 password and second factor (src/oidc/assurance.ts).
    acrValues: [...ACR_VALUES],
    extraClientMetadata: {
      properties: [
        REQUIRE_SECOND_FACTOR, FIRST_PARTY, FRONTCHANNEL_LOGOUT_URI, FRONTCHANNEL_LOGOUT_SESSION_REQUIRED, API_SCOPES, DEFAULT_RESOURCE, RESOURCE_SERVER,
        PREVIOUS_CLIENT_SECRET, PREVIOUS_CLIENT_SECRET_EXPIRES_AT, REFRESH_TOKEN_GRACE_PERIOD,
      ],
      validator: (_ctx, key, value, metadata) => {
        if ((key === REQUIRE_SECOND_FACTOR || key === FIRST_PARTY || key === FRONTCHANNEL_LOGOUT_SESSION_REQUIRED) && value !== undefined && typeof value !== 'boolean') {
          throw new errors.InvalidClientMetadata(`${key} must be true or false`);
        }
        if (key === REFRESH_TOKEN_GRACE_PERIOD && value !== undefined && !(Number.isInteger(value) && (value as number) >= 0 && (value as number) <= LONGEST_REFRESH_TOKEN_GRACE_PERIOD)) {
          throw new errors.InvalidClientMetadata(`${key} must be whole seconds, at most ${LONGEST_REFRESH_TOKEN_GRACE_PERIOD}`);
        }
        if (key === PREVIOUS_CLIENT_SECRET && value !== undefined && typeof value !== 'string') throw new errors.InvalidClientMetadata(`${key} must be a string`);
        if (key === PREVIOUS_CLIENT_SECRET_EXPIRES_AT && value !== undefined && !Number.isSafeInteger(value)) throw new errors.InvalidClientMetadata(`${key} must be a time (epoch seconds)`);
        if (key === API_SCOPES && value !== undefined && (typeof value !== 'string' || !value.split(' ').every((scope) => SCOPE_TOKEN.test(scope)))) {
          throw new errors.InvalidClientMetadata(`${key} must be scope names separated by spaces`);
        }
        if ((key === DEFAULT_RESOURCE || key === RESOURCE_SERVER) && value !== undefined && (typeof value !== 'string' || secureUriProblem(value))) {
          throw new errors.InvalidClientMetadata(`${key} must be an API's identifier`);
        }
        if (key === FRONTCHANNEL_LOGOUT_URI && value !== undefined) {
          const problem = typeof value === 'string' ? secureUriProblem(value) : 'must be a URL';
          if (problem) throw new errors.InvalidClientMetadata(`${key} ${problem}`);
          // Front-Channel Logout 1.0 §2: the application's own site, that of one of its redirect URIs.
          const origins = (metadata.redirect_uris as string[] | undefined ?? []).map(originOf);
          if (!origins.includes(originOf(value as string))) throw new errors.InvalidClientMetadata(`${key} must be on the origin of one of the redirect URIs`);
        }
        // The engine's own back-channel URI is checked with its front-channel sibling (the validator is called
        // for extra properties only, each time, present or not).
        if (key === FRONTCHANNEL_LOGOUT_URI && typeof metadata.backchannel_logout_uri === 'string') {
          const problem = secureUriProblem(metadata.backchannel_logout_uri);
          if (problem) throw new errors.InvalidClientMetadata(`backchannel_logout_uri ${problem}`);
        }
      },
    },
    responseTypes: ['code'],
    // Not client_secret_jwt: its key is the secret itself, which a secret rotation's overlap could not keep working.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    pkce: { required: () => true },
    allowOmittingSingleRegisteredRedirectUri: false,
    // Every algorithm Gatehouse signs with: some resource servers' libraries (express-oauth2-jwt-bearer) take an
    // access token only in an algorithm discovery lists for ID tokens, and an API may sign with any.
    enabledJWA: { idTokenSigningAlgValues: SIGNING_ALGORITHMS.filter((algorithm) => signingAlgorithms.has(algorithm)) },
    // Always rotates. The engine rotates before it asks which API the new access token is for: a request it
    // would refuse then (an API not granted, a scope no longer permitted) is refused here, before the refresh
    // token is spent — or the client's retry with it would count as a reuse and revoke the grant.
    rotateRefreshToken: async (ctx) => {
      await withdrawScopesTakenFromClient(ctx);
      const resource = await resourceOfRefreshRequest(ctx);
      if (resource) await apiAccess.getResourceServerInfo!(ctx, resource, ctx.oidc.client!);
      return true;
    },
    // Single-page apps stay signed in through refresh tokens; others ask for them with offline_access.
    issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token')
      && (code.scopes.has('offline_access') || isSinglePageApp(client)),
    // A browser app's tokens end with the session, whatever it was granted (a grant from before offline access
    // was withheld from browser apps, say); and signing out revokes its grant.
    expiresWithSession: async (ctx, code) => isSinglePageApp(ctx.oidc.client!) || !code.scopes.has('offline_access'),
    ttl: {
      // A token for an API lasts the API's own lifetime; ACCESS_TOKEN_TTL is for the others (userinfo's).
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken,
      AuthorizationCode: config.ttl.authorizationCode,
      IdToken: config.ttl.idToken,
      Interaction: config.ttl.interaction,
      // SESSION_TTL from sign-in, however much the session is used: each save (every sign-in request touches it)
      // keeps the end it had, rather than starting the lifetime again. A session nobody signed in to (a logout
      // request's, holding its form's state) lasts as long as a sign-in may take.
      Session: (_ctx, session) => (session.loginTs
        ? Math.max(1, session.loginTs + config.ttl.session - Math.floor(Date.now() / 1000))
        : config.ttl.interaction),
      // Refresh tokens keep the lifetime of the first one: rotation never extends it (REFRESH_TOKEN_TTL counts from
      // the code exchange), or a chain refreshed often enough would live as long as its grant, however long that is.
      RefreshToken: (ctx) => ctx?.oidc?.entities.RotatedRefreshToken?.remainingTTL ?? config.ttl.refreshToken,
      // The grant must outlive every refresh token issued under it, or refresh fails early.
      Grant: Math.max(config.ttl.refreshToken, config.ttl.session),
    },
    discovery: {
      // Front-channel logout is Gatehouse's (logout-notices.ts); the engine advertises back-channel's.
      frontchannel_logout_supported: true,
      frontchannel_logout_session_supported: true,
    },
    features: {
      devInteractions: { enabled: false },
      // Delivered by Gatehouse, queued (takeOverLogoutNotices): the engine's feature gives the metadata and discovery.
      backchannelLogout: { enabled: true },
      // APIs are records (src/apis/): a `resource` names one, and its tokens are for it alone.
      resourceIndicators: apiAccess,
      clientCredentials: { enabled: true },
      // RFC 7591 and 7592, open only with an initial access token an administrator issued (initial-access-tokens.ts);
      // what applications register obeys the same rules as other clients, and some of its own (clients.ts).
      registration: {
        enabled: true,
        initialAccessToken: true,
        issueRegistrationAccessToken: true,
        idFactory: () => newClientId(),
        secretFactory: () => newClientSecret(),
      },
      registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
      revocation: {
        enabled: true,
        // Only the client a token was issued to may revoke it.
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true,
        // A token's own client may introspect it. Service clients (resource servers) may introspect
        // access tokens they are handed, never refresh tokens, which only their client ever presents.
        // A token whose client was deleted is inactive (the engine would fail reading the missing client).
        // A disabled (or deleted) account's tokens are inactive at once, whatever the store still holds.
        allowedPolicy: (ctx, client, token) => mayIntrospect(ctx, client, {
          kind: token.kind, clientId: token.clientId, accountId: 'accountId' in token ? token.accountId : undefined, aud: 'aud' in token ? token.aud as string | undefined : undefined,
        }),
      },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, engineForm) => {
          const returnTo = ctx.oidc.params?.post_logout_redirect_uri;
          pages.logout(ctx, {
            engineForm, clientName: ctx.oidc.client?.clientName, fromApplication: ctx.oidc.client !== undefined, returnTo: typeof returnTo === 'string' ? returnTo : undefined,
          });
        },
        // The engine names the client here only when the person signed out of it alone ("only this app").
        postLogoutSuccessSource: async (ctx) => pages.loggedOut(ctx, { clientName: ctx.oidc.client?.clientName, onlyFromClient: ctx.oidc.client !== undefined }),
      },
    },
    clientBasedCORS: (ctx, origin, client) => BROWSER_ENDPOINTS.has((ctx as KoaContextWithOIDC).oidc.route)
      && isSinglePageApp(client)
      && (client.redirectUris ?? []).some((uri) => originOf(uri) === origin),
    interactions: { url: (_ctx, interaction) => interactionPath(interaction.uid), policy: signInPolicy(secondFactor) },
    renderError: async (ctx, out) => pages.error(ctx, out),
  };
  const provider = new Provider(config.issuer, configuration);
  // The same client address as the host app sees (src/app.ts): the engine's own ctx.ip feeds session records.
  provider.proxy = config.trustProxy;
  provider.maxIpsCount = config.trustedProxyHops;
  provider.use(retryAfterOnOutage);
  provider.use(cachePublicDocuments(jwksMaxAgeSeconds));
  provider.use(emptyRevocationAnswer);
  provider.use(answerForJwtAccessTokens(jwtAccessTokens, mayIntrospect));
  provider.use(resumeOnlyToRegisteredRedirectUris(provider));
  provider.use(idTokenHintsOfExpiredKeys(provider, signingKeys));
  provider.use(logoutReturnsToClient(pages));
  provider.use(logoutReachesApplications(provider, logoutNotices, pages));
  takeOverLogoutNotices(provider);
  keepOldSessionsUntilSaved(provider);
  acceptPreviousClientSecrets(provider);
  signingKeys.onChange((jwks) => useSigningKeys(provider, jwks));
  return provider;
}

/** How long a cache (or a client) may keep discovery. */
export const DISCOVERY_MAX_AGE_SECONDS = 300;

/**
 * Discovery and the JWKS are the same for everyone (every URL in them comes from ISSUER), so shared caches may
 * keep them, for a deliberate while; the engine sets nothing. The JWKS for less than a key rotation's delay.
 */
function cachePublicDocuments(jwksMaxAgeSeconds: number) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    await next();
    if (ctx.status !== 200) return;
    if (ctx.oidc?.route === 'discovery') ctx.set('Cache-Control', `public, max-age=${DISCOVERY_MAX_AGE_SECONDS}`);
    if (ctx.oidc?.route === 'jwks') ctx.set('Cache-Control', `public, max-age=${jwksMaxAgeSeconds}`);
  };
}

/**
 * A sign-in resuming for a redirect URI its client no longer has (an administrator removed it, its domain lost, while
 * the person was on the sign-in pages): the engine checks the URI when the request comes, not when the sign-in resumes,
 * and would send the code there. Refused with the engine's invalid_redirect_uri on a page instead; it comes back to
 * life only if the URI is registered again.
 */
function resumeOnlyToRegisteredRedirectUris(provider: Provider) {
  const resuming = `${routeKey(provider.pathFor('authorization'))}/`;
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    // The sign-in as the engine's router finds it (/AUTH/uid/ resumes it too).
    const uid = ctx.method === 'GET' || ctx.method === 'HEAD' ? routeParameter(ctx.path, resuming) : undefined;
    if (uid !== undefined) {
      const withdrawn = await asProviderError(async () => {
        const interaction = await provider.Interaction.find(uid);
        const { client_id: clientId, redirect_uri: redirectUri } = interaction?.params ?? {};
        const client = typeof clientId === 'string' ? await provider.Client.find(clientId) : undefined;
        return client !== undefined && typeof redirectUri === 'string' && !client.redirectUriAllowed(redirectUri);
      });
      if (withdrawn) throw new errors.InvalidRedirectUri();
    }
    await next();
  };
}

/** What the grant of a sign-in may hold without a consent page: scopes and claims, and API scopes by API. */
interface Allowance {
  scopes: readonly string[];
  claims: readonly string[];
  resources: Readonly<Record<string, readonly string[]>>;
}

/** An organisation's own (first-party) application is allowed what it asks. */
function firstPartyAllowance(ctx: KoaContextWithOIDC): Allowance | undefined {
  if ((ctx.oidc.client as unknown as Record<string, unknown>)[FIRST_PARTY] !== true) return undefined;
  // Of each API the request names, the scopes asked that it may have (its resource server's, src/oidc/resource-servers.ts).
  const asked = ctx.oidc.requestParamScopes;
  const resources = Object.fromEntries(Object.entries(ctx.oidc.resourceServers ?? {}).map(([identifier, server]) => [
    identifier, (server.scope ?? '').split(' ').filter((scope) => scope && asked.has(scope)),
  ]));
  return { scopes: [...ctx.oidc.requestParamOIDCScopes], claims: [...ctx.oidc.requestParamClaims], resources };
}

/**
 * A scope about the person that the client may no longer have (an administrator took it from the client's scope)
 * leaves the grant at its next refresh: the new ID token, access token and userinfo stop releasing its claims, as
 * a new authorization request would be refused it. (API scopes are checked at each refresh by getResourceServerInfo.)
 */
async function withdrawScopesTakenFromClient(ctx: KoaContextWithOIDC): Promise<void> {
  const grant = ctx.oidc.entities.Grant;
  const clientScope = ctx.oidc.client?.scope;
  if (!grant || typeof clientScope !== 'string') return;
  const clientMay = new Set(clientScope.split(' '));
  const taken = grant.getOIDCScope().split(' ').filter((scope) => RELEASES_CLAIMS.has(scope) && !clientMay.has(scope));
  if (!taken.length) return;
  withdrawGrantedScopes(grant, taken);
  await grant.save();
}

/** The scopes that release claims about the person (openid's say only how they signed in). */
const RELEASES_CLAIMS: ReadonlySet<string> = new Set(Object.keys(CLAIMS_BY_SCOPE).filter((scope) => scope !== 'openid'));

/** Adds an allowance to a grant; a browser app is never granted offline access (client-kinds.ts): refused, so answered. */
function allow(ctx: KoaContextWithOIDC, grant: EngineGrant, allowed: Allowance): void {
  const withheld = isSinglePageApp(ctx.oidc.client!) ? WITHHELD_FROM_SINGLE_PAGE_APPS : new Set<string>();
  const scopes = allowed.scopes.filter((scope) => !withheld.has(scope));
  const refused = allowed.scopes.filter((scope) => withheld.has(scope));
  if (scopes.length) grant.addOIDCScope(scopes.join(' '));
  if (refused.length) grant.rejectOIDCScope(refused.join(' '));
  if (allowed.claims.length) grant.addOIDCClaims([...allowed.claims]);
  for (const [identifier, resourceScopes] of Object.entries(allowed.resources)) {
    if (resourceScopes.length) grant.addResourceScope(identifier, resourceScopes.join(' '));
  }
}

/**
 * The grant a sign-in starts from. The session's own, if it has one (a first-party app's grows to what it now
 * asks). Else (the first sign-in in this browser, or after signing out) what the person allowed the app before,
 * so the consent page asks only what is new — never offline access, which is consented to each time it is
 * asked (prompt=consent) — or, for a first-party app, what it asks. Saved, as the engine expects of a grant it loads.
 */
async function grantToStartFrom(ctx: KoaContextWithOIDC, existing: EngineGrant | undefined, consents: ProviderDependencies['consents']): Promise<EngineGrant | undefined> {
  const client = ctx.oidc.client!;
  const firstParty = firstPartyAllowance(ctx);
  if (existing) {
    if (!firstParty) return existing;
    allow(ctx, existing, firstParty);
    await existing.save();
    return existing;
  }
  // Remembered consent never holds offline access (ConsentService.remember).
  const allowed = firstParty ?? await consents.of(ctx.oidc.session!.accountId!, client.clientId);
  if (!allowed) return undefined;
  const grant = newGrant(ctx.oidc.provider, { accountId: ctx.oidc.session!.accountId!, clientId: client.clientId });
  allow(ctx, grant, allowed);
  await grant.save();
  return grant;
}

/**
 * RFC 7009 asks only for a 200; the engine's empty string goes out as text/plain, which SPA libraries refuse
 * (oidc-client-ts: "Invalid response Content-Type"). An empty body has no content type.
 */
async function emptyRevocationAnswer(ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> {
  await next();
  if (ctx.oidc?.route === 'revocation' && ctx.status === 200) {
    // First: Koa 3 writes a null body as the text "null" while the type is JSON (left by a JWT's refusal, answered later).
    ctx.remove('Content-Type');
    ctx.body = null;
    ctx.status = 200;
  }
}

/** A 503 (a dependency is down) tells clients when to try again, as Gatehouse's own pages do. */
async function retryAfterOnOutage(ctx: { status: number; set(name: string, value: string): void }, next: () => Promise<void>): Promise<void> {
  await next();
  if (ctx.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_OUTAGE_SECONDS));
}

/**
 * When a sign-in prompts: the engine's policy, plus two login checks. A session whose account may no longer
 * sign in (disabled, deleted) asks for login again; and a session signed in without the second factor asks
 * for it (step-up) when this sign-in needs one (src/oidc/assurance.ts), so single sign-on never skips a
 * required second factor.
 */
function signInPolicy(secondFactor: ProviderDependencies['secondFactor']) {
  const policy = interactionPolicy.base();
  const login = policy.get('login')!;
  login.checks.add(new interactionPolicy.Check(
    'account_unavailable',
    'the signed-in account can no longer sign in',
    (ctx) => Boolean(ctx.oidc.session?.accountId && !ctx.oidc.account),
  ));
  login.checks.add(new interactionPolicy.Check(
    SECOND_FACTOR_REQUIRED,
    'this sign-in requires a second factor',
    async (ctx) => {
      const { session, client, params } = ctx.oidc;
      if (!session?.accountId || session.acr === ACR_SECOND_FACTOR) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const decision = await asProviderError(() => secondFactorDecision(
        (accountId) => secondFactor.loginRequirement(accountId),
        { accountId: session.accountId!, client, acrValues: params?.acr_values },
      ));
      return decision.required ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
    },
  ));
  return policy;
}
