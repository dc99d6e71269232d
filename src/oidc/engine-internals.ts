// The one file that reaches into oidc-provider beyond its configuration: the request it is serving (its
// AsyncLocalStorage), its sessions and their cookie, interactions, grants and their revocation, logout tokens,
// and the engine methods Gatehouse wraps or replaces (the client lookup, to check token requests; back-channel
// logout and the ID token's sid; a grant handler, with the engine's own DPoP proof checks). An engine upgrade is
// checked here.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { PREVIOUS_CLIENT_SECRET, PREVIOUS_CLIENT_SECRET_EXPIRES_AT } from '../clients/clients.ts';
import Provider, { errors, type InteractionResults, type KoaContextWithOIDC } from 'oidc-provider';
import type { Context } from 'koa';
import initializeKeystore from 'oidc-provider/lib/helpers/initialize_keystore.js';
import resolveResource from 'oidc-provider/lib/helpers/resolve_resource.js';
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';
import internalsOf from 'oidc-provider/lib/helpers/weak_cache.js';

/** Models whose records carry a grantId, so revoking the grant revokes them (lib/helpers/revoke.js). */
export const GRANT_BOUND_MODELS = ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest', 'PreAuthorizedCode'] as const;

export type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;
export type EngineSession = NonNullable<Awaited<ReturnType<Provider['Session']['findByUid']>>>;
export type EngineGrant = InstanceType<Provider['Grant']>;
export type EngineClient = NonNullable<Awaited<ReturnType<Provider['Client']['find']>>>;

/** What a browser's engine session says about who is signed in there (nothing when nobody is). */
export interface BrowserSession {
  uid: string;
  accountId: string | undefined;
  loginTs: number | undefined;
  amr: string[] | undefined;
  acr: string | undefined;
}

/** A check of token requests: before the client is looked up (the request alone) and once it is known. */
export interface TokenRequestCheck {
  /** Throws the engine's errors to refuse. `clientId`: the client the request names, not looked up yet. */
  beforeClientLookup?(ctx: KoaContextWithOIDC, clientId: string): Promise<void>;
  /** `client`: the client the request names (undefined: there is no such client). */
  afterClientLookup?(ctx: KoaContextWithOIDC, client: EngineClient | undefined): Promise<void>;
  /** Once the engine has answered a request this check saw (ctx.status says how); it cannot change the answer. */
  afterAnswer?(ctx: KoaContextWithOIDC): Promise<void>;
}

/** The request the engine is serving right now, for code it calls without one (the storage adapter). */
export function requestBeingServed(): KoaContextWithOIDC | undefined {
  return (Provider as unknown as { ctx?: KoaContextWithOIDC }).ctx;
}

/** An application signed in through a session, and the session id it knows that session by (the ID token's sid). */
export interface SessionApplication {
  clientId: string;
  sid: string | undefined;
}

/** The applications signed in through a session (every one the engine keeps an authorization for). */
export function applicationsOf(session: Pick<EngineSession, 'authorizations'>): SessionApplication[] {
  return Object.entries(session.authorizations ?? {}).map(([clientId, authorization]) => ({ clientId, sid: authorization.sid }));
}

/**
 * The session a logout confirmation (POST end_session_confirm) is about to end, read before the engine ends it:
 * who was signed in, the applications, and the one application the person chose to sign out of alone (the
 * engine keeps it in the session's state), which the engine forgets as it ends it.
 */
export async function sessionBeingEnded(provider: Provider, ctx: Context): Promise<{ accountId: string | undefined; applications: SessionApplication[]; onlyFrom: string | undefined }> {
  const session = await provider.Session.get(ctx as never);
  const onlyFrom = (session.state as { clientId?: unknown } | undefined)?.clientId;
  return { accountId: session.accountId, applications: applicationsOf(session), onlyFrom: typeof onlyFrom === 'string' ? onlyFrom : undefined };
}

/**
 * Gatehouse tells applications of a logout itself (src/oidc/logout-notices.ts): queued and retried, from every
 * way a session ends, never awaited by the person's logout. The engine's own back-channel call (an awaited POST,
 * lib/actions/end_session.js) does nothing; its feature stays on for discovery and the client metadata. And
 * every ID token names its session (sid), as Keycloak's and Auth0's do, so an application told of a logout by
 * back-channel or front-channel can tell which of its sessions ended: the engine adds it only for some clients.
 */
export function takeOverLogoutNotices(provider: Provider): void {
  const prototype = provider.Client.prototype as unknown as { backchannelLogout(): Promise<void>; includeSid(): boolean };
  prototype.backchannelLogout = async () => {};
  prototype.includeSid = () => true;
}

/**
 * A session given a new id (each sign-in it resumes, raiseAssurance) is written under it before its old record goes.
 * The engine deletes the old one first (lib/models/session.js save): when the write then failed (a full Redis still
 * deletes), the browser's cookie named nothing, and the person was signed out, with their apps' tokens that end
 * with the session.
 */
export function keepOldSessionsUntilSaved(provider: Provider): void {
  type Saved = { oldId?: string | undefined; adapter: { destroy(id: string): Promise<void> }; save(ttl: number): Promise<unknown> };
  const prototype = provider.Session.prototype as unknown as Saved;
  const save = prototype.save;
  prototype.save = async function saveThenDestroyOld(this: Saved, ttl: number) {
    const oldId = this.oldId;
    if (!oldId) return save.call(this, ttl);
    this.oldId = undefined;
    let result: unknown;
    try {
      result = await save.call(this, ttl);
    } catch (error) {
      this.oldId = oldId;
      throw error;
    }
    await this.adapter.destroy(oldId);
    return result;
  };
}

/**
 * The engine reads its keys once, when it is made (lib/helpers/initialize_keystore.js); every signature and the
 * JWKS endpoint then read the keystore it built. Signing keys rotate while Gatehouse runs, so the same routine
 * builds the keystore anew from the keys of the moment: the first key of each algorithm signs, all are published
 * and verify (an old ID token given as id_token_hint, say). Swapping it is one assignment: no request sees half.
 */
export function useSigningKeys(provider: Provider, jwks: { keys: object[] }): void {
  initializeKeystore.call(provider, jwks);
}

/**
 * Runs `around` in place of the engine's handler of a grant type, with that handler to call. The engine calls its
 * handler (lib/actions/token.js callTokenHandler) once the client is authenticated and the parameters checked;
 * the handlers are registered when the engine is made (lib/provider.js registerGrantType).
 */
export function aroundGrant(
  provider: Provider, grantType: string, around: (ctx: KoaContextWithOIDC, handle: () => Promise<void>) => Promise<void>,
): void {
  const handlers = (internalsOf(provider) as { grantTypeHandlers: Map<string, (ctx: KoaContextWithOIDC) => Promise<void>> }).grantTypeHandlers;
  const handle = handlers.get(grantType);
  if (!handle) throw new Error(`the engine has no ${grantType} grant to wrap`);
  handlers.set(grantType, (ctx) => around(ctx, () => handle(ctx)));
}

/**
 * The token request's DPoP proof as the engine verifies it at the token endpoint (lib/helpers/validate_dpop.js:
 * signature, typ, htm and htu, iat or nonce), for an answer Gatehouse gives in a grant handler's stead; the result
 * is kept for the request, so the handler, if called after, verifies nothing twice. Undefined without a proof.
 */
export function verifiedDpopProof(provider: Provider, ctx: KoaContextWithOIDC): Promise<{ thumbprint: string } | undefined> {
  return validateDpop(provider, ctx);
}

/** Spends the proof's jti for this client, as the engine's handlers do: a proof seen before is refused (invalid_grant). */
export function spendDpopProof(provider: Provider, ctx: KoaContextWithOIDC, proof: object | undefined, clientId: string): Promise<void> {
  return checkDpopReplay(provider, ctx, proof, clientId);
}

/**
 * After a client's secret is rotated (src/clients/clients.ts), the secret before it is accepted too until its
 * time is up, so the application can be given the new one without an outage. The engine compares one secret
 * (lib/models/client.js compareClientSecret, awaited by lib/shared/client_auth.js); this also compares the other.
 */
export function acceptPreviousClientSecrets(provider: Provider): void {
  type Compared = Record<string, unknown> & { compareClientSecret(actual: string): Promise<boolean> | boolean };
  const prototype = provider.Client.prototype as unknown as Compared;
  const compareCurrent = prototype.compareClientSecret;
  prototype.compareClientSecret = async function compareClientSecret(this: Compared, actual: string) {
    if (await compareCurrent.call(this, actual)) return true;
    const previous = this[PREVIOUS_CLIENT_SECRET];
    const until = this[PREVIOUS_CLIENT_SECRET_EXPIRES_AT];
    return typeof previous === 'string' && typeof until === 'number' && until > Date.now() / 1000 && sameSecret(previous, actual);
  };
}

/** Compares in constant time (hashes are of equal length whatever was sent). */
function sameSecret(expected: string, actual: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(expected), digest(actual));
}

/** Engine.revokeGrant, for the provider's own configuration, which has the provider but no Engine. */
/**
 * The API a refresh_token request's access token will be for, resolved as the engine resolves it
 * (lib/actions/grants/refresh_token.js) — which it does only after rotating the refresh token, so that a
 * refusal found then would spend the token. Asked from rotateRefreshToken, a refusal comes first.
 */
export async function resourceOfRefreshRequest(ctx: KoaContextWithOIDC): Promise<string | undefined> {
  const refreshToken = ctx.oidc.entities.RefreshToken!;
  const named = ctx.oidc.params?.resource;
  // The engine's own refusal would not say which.
  if (typeof named === 'string' && !refreshToken.resourceIndicators.has(named)) {
    throw new errors.InvalidTarget(`the API ${named} was not granted to this refresh token: sign in again asking for it`);
  }
  const { features } = (internalsOf(ctx.oidc.provider) as { configuration: { features: Record<string, unknown> } }).configuration;
  const scopes = ctx.oidc.params?.scope ? ctx.oidc.requestParamScopes : refreshToken.scopes;
  const resource: unknown = await resolveResource(ctx, refreshToken, { userinfo: features['userinfo'], resourceIndicators: features['resourceIndicators'] }, scopes);
  return typeof resource === 'string' ? resource : undefined;
}

export async function revokeGrant(provider: Provider, grantId: string, accountId?: string): Promise<{ id: string; clientId: string | undefined } | undefined> {
  const grant = await provider.Grant.find(grantId, { ignoreExpiration: true });
  if (!grant || (accountId !== undefined && grant.accountId !== accountId)) return undefined;
  await grant.destroy();
  await Promise.all(GRANT_BOUND_MODELS.map((model) => provider[model].revokeByGrantId(grantId)));
  return { id: grantId, clientId: grant.clientId };
}

/**
 * Takes scopes out of what a grant granted. The engine only adds, or rejects (a rejected scope counts as asked
 * already, so the consent page would not ask for it again once it is allowed again): its granted scopes are the
 * grant's `openid.scope` (lib/models/grant.js).
 */
export function withdrawGrantedScopes(grant: EngineGrant, scopes: readonly string[]): void {
  const granted = (grant as unknown as { openid?: { scope?: string } }).openid;
  if (!granted?.scope) return;
  const withdrawn = new Set(scopes);
  granted.scope = granted.scope.split(' ').filter((scope) => !withdrawn.has(scope)).join(' ');
}

/** A grant, not saved yet; for the provider's own configuration, which has the provider but no Engine. */
export function newGrant(provider: Provider, owner: { accountId: string; clientId: string }): EngineGrant {
  return new provider.Grant(owner);
}

/**
 * An ID token for `sub` at `client`, signed now as the engine signs them (the client's algorithm, its current key),
 * carrying nothing else of the account: what the engine checks an id_token_hint with.
 */
export function idTokenHintSignedNow(provider: Provider, client: EngineClient, sub: string): Promise<string> {
  return subjectOnlyIdToken(provider, client, sub).issue({ use: 'idtoken' } as never);
}

/** The engine's ID token for `sub` at `client`, with no claim of the account but sub (no profile). */
function subjectOnlyIdToken(provider: Provider, client: EngineClient, sub: string): InstanceType<Provider['IdToken']> {
  const token = new provider.IdToken({ sub }, { client, ctx: undefined as never });
  (token as unknown as { mask: Record<string, null> }).mask = { sub: null };
  return token;
}

/** Matches a path the way the engine's router does: ASCII letters in any case, one trailing slash or none. */
export function routeKey(path: string): string {
  return withoutTrailingSlash(path).replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}

/** The parameter the engine's router reads after `prefix` (a route key ending in /) in `path`, decoded as it decodes it. */
export function routeParameter(path: string, prefix: string): string | undefined {
  if (!routeKey(path).startsWith(prefix)) return undefined;
  try {
    return decodeURIComponent(withoutTrailingSlash(path).slice(prefix.length));
  } catch {
    return undefined;
  }
}

function withoutTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

/** The engine's refusals of a sign-in whose browser session ended ('session not found') or is another account's now. */
const SESSION_NO_LONGER_THE_SIGN_INS = new Set(['session not found', 'session principal changed']);

export class Engine {
  readonly #provider: Provider;

  constructor(provider: Provider) {
    this.#provider = provider;
  }

  // --- interactions (the sign-in pages) -------------------------------------------------------------

  /** The sign-in this browser is in (by the engine's interaction cookie); throws SessionNotFound without one. */
  interactionDetails(ctx: Context): Promise<Interaction> {
    return this.#provider.interactionDetails(ctx.req, ctx.res);
  }

  /**
   * Where the sign-in on page `uid` starts again, if the engine refused it (`refusal`, from interactionDetails) only
   * because the browser's session ended or changed account since it began (signed out, or in as someone else, in
   * another tab): its authorization request, as the application sent it. Undefined for any other refusal (no sign-in
   * cookie, the sign-in gone or expired), for a page that is not the sign-in the browser's own cookie names (another
   * browser's: its request is not this one's to see or run), and for parameters a client authenticated to push (PAR)
   * or signed (a request object), which are not put in the browser's address.
   */
  async restartOfInterruptedSignIn(refusal: unknown, ctx: Context, uid: string): Promise<string | undefined> {
    // The engine checks the browser's sign-in cookie and finds the sign-in before it compares sessions (Provider#getInteraction).
    if (!(refusal instanceof errors.SessionNotFound) || !SESSION_NO_LONGER_THE_SIGN_INS.has(String(refusal.error_description))) return undefined;
    const named = this.#provider.createContext(ctx.req, ctx.res).cookies.get(this.#provider.cookieName('interaction'), { signed: true });
    if (named !== uid) return undefined;
    const interaction = await this.#provider.Interaction.find(uid);
    if (!interaction || interaction.trusted?.length) return undefined;
    const request = new URLSearchParams();
    for (const [name, value] of Object.entries(interaction.params)) {
      for (const each of Array.isArray(value) ? value : [value]) if (typeof each === 'string') request.append(name, each);
    }
    return `${this.#provider.pathFor('authorization')}?${request}`;
  }

  /** Stores the outcome of a sign-in step; the URL to send the browser to, where the engine resumes. */
  finishInteraction(ctx: Context, result: InteractionResults, options: { mergeWithLastSubmission: boolean }): Promise<string> {
    return this.#provider.interactionResult(ctx.req, ctx.res, result, options);
  }

  /** A sign-in by its uid, without its browser (to offer going back to it); undefined when gone. */
  async findInteraction(uid: string): Promise<Pick<Interaction, 'uid' | 'prompt' | 'params' | 'result' | 'exp'> | undefined> {
    return this.#provider.Interaction.find(uid);
  }

  findClient(clientId: unknown): Promise<EngineClient | undefined> {
    return typeof clientId === 'string' ? this.#provider.Client.find(clientId) : Promise.resolve(undefined);
  }

  /**
   * A back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.4) for a client: signed as its ID
   * tokens are, typ logout+jwt, with the logout event, sub, sid, a new jti, two minutes' expiry and no nonce.
   */
  async logoutToken(client: EngineClient, accountId: string, sid: string | undefined): Promise<string> {
    const token = subjectOnlyIdToken(this.#provider, client, accountId);
    token.set('events', { 'http://schemas.openid.net/event/backchannel-logout': {} });
    token.set('jti', randomUUID());
    if (sid) token.set('sid', sid);
    return token.issue({ use: 'logout' } as never);
  }

  // --- sessions -----------------------------------------------------------------------------------------

  /** Who is signed in in this browser, by the engine's session cookie. */
  async browserSession(ctx: Context): Promise<BrowserSession> {
    const session = await this.#provider.Session.get(ctx as never);
    return { uid: session.uid, accountId: session.accountId, loginTs: session.loginTs, amr: session.amr, acr: session.acr };
  }

  /** A session by the uid that names it for the person (the engine rotates its id at login, never its uid). */
  sessionByUid(uid: string): Promise<EngineSession | undefined> {
    return this.#provider.Session.findByUid(uid);
  }

  /** Destroys a session, and once more under its new id if a login was rotating that id meanwhile. */
  async destroySession(session: EngineSession): Promise<void> {
    await session.destroy();
    const rotated = await this.#provider.Session.findByUid(session.uid);
    if (rotated) await rotated.destroy();
  }

  /**
   * This browser's session, signed in as `accountId`, now counts as signed in with `assurance` (the person
   * just gave what it asks). Raised assurance gets a new session id, as a login does
   * (lib/actions/authorization/resume.js): a copy of the old cookie, taken before, must not carry it.
   * False when the browser is not signed in as that account.
   */
  async raiseAssurance(ctx: Context, accountId: string, assurance: { amr: string[]; acr: string }): Promise<boolean> {
    const session = await this.#provider.Session.get(ctx as never);
    if (session.accountId !== accountId) return false;
    session.amr = assurance.amr;
    session.acr = assurance.acr;
    session.resetIdentifier();
    // Saved under the new id (the old one is destroyed once it is: keepOldSessionsUntilSaved) before the browser is given it.
    await session.persist();
    this.#setSessionCookie(ctx, session);
    return true;
  }

  /** Forgets this browser's session cookie (its session was ended already). */
  clearSessionCookie(ctx: Context): void {
    this.#setSessionCookie(ctx, null);
  }

  /**
   * Sets the cookie as the engine does (its cookies.long options, signed with the same keys; see
   * lib/shared/session.js): a session that is not transient gets an expiry, so the browser keeps it as long
   * as the session lives; null clears it. The cookie holds the session's id, its jti.
   */
  #setSessionCookie(ctx: Context, session: { jti: string; exp?: number | undefined; transient?: boolean | undefined } | null): void {
    const expires = session && !session.transient && session.exp ? new Date(session.exp * 1000) : undefined;
    ctx.cookies.set(this.#provider.cookieName('session'), session?.jti ?? null, { path: '/', signed: true, httpOnly: true, sameSite: 'lax', ...(expires ? { expires } : {}) });
  }

  // --- grants -------------------------------------------------------------------------------------------

  findGrant(grantId: string, options: { ignoreExpiration?: boolean } = {}): Promise<EngineGrant | undefined> {
    return this.#provider.Grant.find(grantId, options);
  }

  /** A grant of a person to a client, not saved yet (the caller adds what was consented to, then saves). */
  newGrant(owner: { accountId: string; clientId: string }): EngineGrant {
    return newGrant(this.#provider, owner);
  }

  /**
   * Revokes a grant and every token issued under it, the way the engine does (lib/helpers/revoke.js): the
   * grant first, so a token whose grant is gone is refused everywhere, even one issued while this runs.
   * `accountId`: only if the grant is that account's. The grant revoked, or undefined.
   */
  revokeGrant(grantId: string, accountId?: string): Promise<{ id: string; clientId: string | undefined } | undefined> {
    return revokeGrant(this.#provider, grantId, accountId);
  }

  // --- the token endpoint ------------------------------------------------------------------------------

  /**
   * The engine reads a token request's body and authenticates its client itself, and no middleware sees the
   * parameters before its grant runs; the one moment both are known is when it looks the client up. The
   * checks run there, once per request, before any code or refresh token is consumed.
   */
  checkTokenRequests(checks: readonly TokenRequestCheck[]): void {
    const Client = this.#provider.Client;
    const find = Client.find.bind(Client);
    const checked = new WeakSet<object>();
    Client.find = async (id: string) => {
      // The request being served; its first lookup is the client's own.
      const ctx = requestBeingServed();
      if (!ctx || ctx.oidc?.route !== 'token' || checked.has(ctx)) return find(id);
      checked.add(ctx);
      for (const check of checks) await check.beforeClientLookup?.(ctx, id);
      const client = await find(id);
      for (const check of checks) await check.afterClientLookup?.(ctx, client);
      return client;
    };
    const answered = checks.filter((check) => check.afterAnswer);
    if (!answered.length) return;
    this.#provider.use(async (ctx: KoaContextWithOIDC, next: () => Promise<void>) => {
      await next();
      if (checked.has(ctx)) for (const check of answered) await check.afterAnswer!(ctx);
    });
  }
}
