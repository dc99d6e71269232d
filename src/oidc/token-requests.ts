// The engine reads a token request's body and authenticates its client itself, and no middleware sees the
// request's parameters before its grant runs; the one moment both the parameters and the client are known is
// when the engine looks the client up. Checks of token requests hook in there — the one engine method
// Gatehouse wraps — once per request, before any code or refresh token is consumed.
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

type Client = NonNullable<Awaited<ReturnType<Provider['Client']['find']>>>;

export interface TokenRequestCheck {
  /** Before the client is looked up: what depends on the request alone (its IP). Throws the engine's errors to refuse. */
  beforeClientLookup?(ctx: KoaContextWithOIDC): Promise<void>;
  /** Once the client the request names is known (undefined: there is no such client). */
  afterClientLookup?(ctx: KoaContextWithOIDC, client: Client | undefined): Promise<void>;
}

const installed = new WeakSet<Provider>();

export function checkTokenRequests(provider: Provider, checks: readonly TokenRequestCheck[]): void {
  if (installed.has(provider)) throw new Error('token request checks are installed once per provider');
  installed.add(provider);
  const Client = provider.Client;
  const find = Client.find.bind(Client);
  const checked = new WeakSet<object>();
  Client.find = async (id: string) => {
    // The request being served (the engine keeps it in AsyncLocalStorage); its first lookup is the client's own.
    const ctx = (Provider as unknown as { ctx?: KoaContextWithOIDC }).ctx;
    const isTokenRequest = ctx?.oidc?.route === 'token' && !checked.has(ctx);
    if (!ctx || !isTokenRequest) return find(id);
    checked.add(ctx);
    for (const check of checks) await check.beforeClientLookup?.(ctx);
    const client = await find(id);
    for (const check of checks) await check.afterClientLookup?.(ctx, client);
    return client;
  };
}
