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
declare module 'oidc-provider/lib/helpers/validate_dpop.js' {
  /** The request's DPoP proof, verified as the token endpoint verifies it (once per request: then kept), or undefined without one. */
  export default function validateDpop(provider: object, ctx: unknown): Promise<{ thumbprint: string; jti: string } | undefined>;
  /** Refuses a proof (its jti) seen before for this client (`ErrorClass`, InvalidGrant by default). */
  export function checkDpopReplay(provider: object, ctx: unknown, proof: unknown, clientId: string): Promise<void>;
}
