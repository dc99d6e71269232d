// Types of the engine's modules that src/oidc/engine-internals.ts reaches into (the package types only its API).
declare module 'oidc-provider/lib/helpers/weak_cache.js' {
  /** The engine's private state of a provider (its configuration, grant handlers, ...). */
  export default function internalsOf(provider: object): unknown;
}
declare module 'oidc-provider/lib/helpers/initialize_keystore.js' {
  /** Builds the provider's keystore and published JWKS from a private JWK set (`this`: the provider). */
  export default function initializeKeystore(this: object, jwks: { keys: object[] }): void;
}
declare module 'oidc-provider/lib/helpers/resolve_resource.js' {
  /** The single API a token request's access token is for, or undefined for userinfo (throws InvalidTarget). */
  export default function resolveResource(ctx: unknown, model: unknown, config: { userinfo: unknown; resourceIndicators: unknown }, scopes: Set<string>): Promise<unknown>;
}
