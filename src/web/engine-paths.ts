// The engine's own endpoints by path, read from the engine itself (Provider#pathFor), matched the way its router
// matches them: the app sends these straight to the engine, CORS preflights are decided by them, and the request
// log names them.
import type Provider from 'oidc-provider';
import { routeKey } from '../oidc/engine-internals.ts';

/** The engine's discovery documents (it registers these paths itself, under no route name). */
export const DISCOVERY_PATHS = ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server'];

/** The engine's routes that Gatehouse serves, by name (lib/helpers/initialize_app.js). */
const ENGINE_ROUTE_NAMES = [
  'authorization', 'token', 'userinfo', 'introspection', 'revocation', 'jwks', 'registration', 'pushed_authorization_request', 'end_session',
  'end_session_confirm', 'end_session_success',
];

/** The engine's routes with a parameter, under another route's path: resuming an authorization, managing a registration (RFC 7592). */
const ENGINE_ROUTES_WITH_PARAMETER: Array<{ under: string; parameter: string; methods: readonly string[] }> = [
  { under: 'authorization', parameter: ':uid', methods: ['GET', 'HEAD'] },
  { under: 'registration', parameter: ':clientId', methods: ['GET', 'HEAD', 'PUT', 'DELETE'] },
];

/**
 * The methods each of those routes answers, as Gatehouse configures the engine (its router answers HEAD where it
 * answers GET; OPTIONS is each CORS preflight's, decided apart). The authorization and logout endpoints take no POST:
 * enableHttpPostMethods stays off, as it would need the session cookies sent cross-site (SameSite=None).
 */
const ENGINE_ROUTE_METHODS: Record<string, readonly string[]> = {
  authorization: ['GET', 'HEAD'], token: ['POST'], userinfo: ['GET', 'HEAD', 'POST'], introspection: ['POST'], revocation: ['POST'],
  jwks: ['GET', 'HEAD'], registration: ['POST'], pushed_authorization_request: ['POST'], end_session: ['GET', 'HEAD'],
  end_session_confirm: ['POST'], end_session_success: ['GET', 'HEAD'],
};

/** The paths of these routes (a route of a feature that is off has none). */
export function routePaths(provider: Pick<Provider, 'pathFor'>, names: readonly string[]): string[] {
  return names.flatMap((name) => {
    try {
      return [provider.pathFor(name)];
    } catch {
      return [];
    }
  });
}

/** An engine route: its pattern (a metric label), and the methods it answers. */
export interface EngineRoute {
  readonly route: string;
  readonly methods: readonly string[];
}

/** The engine's routes, found by a path's route key. */
export class EngineRoutes {
  readonly #fixed: ReadonlyMap<string, EngineRoute>;
  readonly #withParameter: ReadonlyArray<{ prefix: string; route: EngineRoute }>;

  constructor(provider: Pick<Provider, 'pathFor'>) {
    const fixed = (key: string, methods: readonly string[]) => [key, { route: key, methods }] as const;
    this.#fixed = new Map([
      ...DISCOVERY_PATHS.map((path) => fixed(routeKey(path), ['GET', 'HEAD'])),
      ...ENGINE_ROUTE_NAMES.flatMap((name) => routePaths(provider, [name]).map((path) => fixed(routeKey(path), ENGINE_ROUTE_METHODS[name]!))),
    ]);
    this.#withParameter = ENGINE_ROUTES_WITH_PARAMETER.flatMap(({ under, parameter, methods }) => routePaths(provider, [under]).map((path) => (
      { prefix: `${routeKey(path)}/`, route: { route: `${routeKey(path)}/${parameter}`, methods } }
    )));
  }

  /** The route at a path, by its route key (one segment for a parameter), if the engine has one there. */
  at(key: string): EngineRoute | undefined {
    const fixed = this.#fixed.get(key);
    if (fixed) return fixed;
    return this.#withParameter.find(({ prefix }) => key.length > prefix.length && key.startsWith(prefix) && !key.includes('/', prefix.length))?.route;
  }
}

// Matches a path the way the engine's router does (ASCII letters in any case, one trailing slash or none).
export { routeKey };
