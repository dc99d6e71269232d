// What the engine asks about APIs (RFC 8707 resource indicators): which registered API a `resource` names, which
// of its scopes the client may ask for, and the audience, format, lifetime and signature of its access tokens.
// A request for an unknown API, or for scopes the client may not have, is refused in the protocol's words.
import { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Api, ApiService } from '../apis/apis.ts';
import { asProviderError } from './errors.ts';
import { SCOPES, SCOPES_WITHOUT_DATA } from './scopes.ts';
import { oncePerRequest } from './per-request.ts';

/** Client metadata (extraClientMetadata): the API scopes a client may ask for, space-separated, at any API defining them. */
export const API_SCOPES = 'api_scopes';
/** Client metadata: the API a client's tokens are for when its request names none (Auth0's default audience). */
export const DEFAULT_RESOURCE = 'default_resource';
/** Client metadata: the API whose resource server this (service) client is: it may introspect that API's tokens. */
export const RESOURCE_SERVER = 'resource_server';

type ResourceIndicators = NonNullable<NonNullable<Configuration['features']>['resourceIndicators']>;
type EngineClient = Parameters<NonNullable<ResourceIndicators['getResourceServerInfo']>>[2];

const OPENID_SCOPES: ReadonlySet<string> = new Set([...SCOPES, ...SCOPES_WITHOUT_DATA]);

/** The API scopes a client may ask for (its api_scopes metadata). */
export function apiScopesOf(client: object): Set<string> {
  const value = (client as Record<string, unknown>)[API_SCOPES];
  return new Set(typeof value === 'string' ? value.split(' ').filter(Boolean) : []);
}

/** The scopes of an API that a person's roles permit them to be granted (asked during the engine request `request`). */
export type PermittedApiScopes = (request: object, accountId: string, api: string) => Promise<ReadonlySet<string>>;

export function resourceIndicators(apis: Pick<ApiService, 'find'>, permittedApiScopes: PermittedApiScopes): ResourceIndicators {
  // The engine asks once per API a request names, and each answer checks the scopes against every API named:
  // each API, and each person's permissions at it, is read once per request.
  const lookup: RequestLookups = {
    api: (ctx, identifier) => oncePerRequest(ctx, `api ${identifier}`, () => apis.find(identifier)),
    permitted: (ctx, accountId, identifier) => oncePerRequest(ctx, `permitted ${accountId} ${identifier}`, () => permittedApiScopes(ctx, accountId, identifier)),
  };
  return {
    enabled: true,
    // At the authorization endpoint and client_credentials (no `oneOf`): the client's default API, if any. At
    // the token endpoint, with several granted: the client's default among them, else refused as ambiguous.
    defaultResource: async (ctx, client, oneOf) => {
      const preferred = (client as unknown as Record<string, unknown>)[DEFAULT_RESOURCE];
      if (oneOf) return typeof preferred === 'string' && oneOf.includes(preferred) ? preferred : oneOf;
      if (typeof preferred === 'string') return preferred;
      // No API named: a scope beyond the person's would be dropped without a word; say which, and what to do.
      const [first] = requestedApiScopes(ctx);
      if (first) throw new errors.InvalidScope(`the scope "${first}" is not about the person: if an API defines it, name the API with the resource parameter`, first);
      return undefined;
    },
    // A request without `resource` at the token endpoint gets a token for the client's default API when the grant
    // holds it (as Auth0's default audience does), or for the one API its authorization named (as Auth0's audience;
    // oidc-client-ts's `resource` setting sends it there alone); otherwise, with openid, a token for userinfo.
    useGrantedResource: async (ctx, model) => {
      const preferred = (ctx.oidc.client as unknown as Record<string, unknown> | undefined)?.[DEFAULT_RESOURCE];
      if (typeof preferred === 'string' && model.resourceIndicators.has(preferred)) return true;
      return typeof model.resource === 'string';
    },
    getResourceServerInfo: (ctx, indicator, client) => asProviderError(async () => {
      const api = await lookup.api(ctx, indicator);
      if (!api) throw new errors.InvalidTarget(`no API is registered as ${indicator}`);
      const clientMay = allowedScopes(api, client);
      if (!clientMay.length) throw new errors.InvalidTarget(`this client may not use the API ${indicator}: none of its scopes is allowed to the client`);
      // A person is granted only what their roles permit (a service client acts for nobody).
      const accountId = personOf(ctx);
      const permitted = accountId ? await lookup.permitted(ctx, accountId, api.identifier) : undefined;
      await refuseScopesNotAllowed(ctx, lookup, client, accountId, indicator);
      return {
        scope: clientMay.filter((scope) => !permitted || permitted.has(scope)).join(' '),
        audience: api.identifier,
        accessTokenTTL: api.accessTokenTtl,
        accessTokenFormat: api.accessTokenFormat,
        ...(api.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: api.signingAlg } } } : {}),
      };
    }),
  };
}

/** What answering a request reads, once per request. */
interface RequestLookups {
  api(ctx: object, identifier: string): Promise<Api | undefined>;
  permitted(ctx: object, accountId: string, identifier: string): Promise<ReadonlySet<string>>;
}

/** The API's scopes this client may be granted, in the API's order. */
function allowedScopes(api: Api, client: EngineClient): string[] {
  const mayAsk = apiScopesOf(client);
  return api.scopes.map((scope) => scope.name).filter((name) => mayAsk.has(name));
}

/**
 * A requested scope that is not about the person must be one the client may have at one of the APIs the request
 * names (or, naming none, at the one the engine chose: the client's default, or at the token endpoint the one
 * granted, RFC 8707 §2.2); otherwise the engine would drop it without a word. Said by name: which scope, and why.
 */
async function refuseScopesNotAllowed(
  ctx: KoaContextWithOIDC, lookup: RequestLookups, client: EngineClient, accountId: string | undefined, indicator: string,
): Promise<void> {
  const requested = requestedApiScopes(ctx);
  if (!requested.length) return;
  const param = ctx.oidc.params?.resource;
  const named = (Array.isArray(param) ? param : [param]).filter((value): value is string => typeof value === 'string');
  const indicators = named.length ? named : [indicator];
  const found = (await Promise.all(indicators.map((identifier) => lookup.api(ctx, identifier)))).filter((api) => api !== undefined);
  const defined = new Set(found.flatMap((api) => api.scopes.map((scope) => scope.name)));
  const allowed = new Set(found.flatMap((api) => allowedScopes(api, client)));
  const permitted = accountId
    ? new Set((await Promise.all(found.map((api) => lookup.permitted(ctx, accountId, api.identifier)))).flatMap((scopes) => [...scopes]))
    : undefined;
  for (const scope of requested) {
    if (!defined.has(scope)) throw new errors.InvalidScope(`the scope "${scope}" is not one of ${indicators.join(', ')}`, scope);
    if (!allowed.has(scope)) throw new errors.InvalidScope(`this client may not ask for the scope "${scope}"`, scope);
    if (permitted && !permitted.has(scope)) throw new errors.InvalidScope(`the person signing in has no role that permits the scope "${scope}"`, scope);
  }
}

/** The requested scopes that are not about the person (the request's `scope`, as the engine parsed it). */
function requestedApiScopes(ctx: KoaContextWithOIDC): string[] {
  const scope = ctx.oidc.params?.scope;
  return typeof scope === 'string' ? scope.split(' ').filter((name) => name && !OPENID_SCOPES.has(name)) : [];
}

/**
 * The person a request is about: the grant's at the token endpoint, the signed-in session's at the authorization
 * endpoint (once signed in: before, nobody is known yet and the consent step comes after). None for a service.
 */
function personOf(ctx: KoaContextWithOIDC): string | undefined {
  return ctx.oidc.entities?.Grant?.accountId ?? (ctx.oidc.route === 'token' ? undefined : ctx.oidc.session?.accountId);
}
