// The token endpoint's rate limits, per IP and per client, as RFC 6749 JSON errors with Retry-After (the
// counting itself is src/limits/'s). Installed with the engine's other token-request checks in runtime.ts.
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenRequestCheck } from './engine-internals.ts';
import type { RateLimits, LimitDecision } from '../limits/index.ts';
import { DependencyUnavailable } from '../errors.ts';
import { TemporarilyUnavailable, TooManyRequests } from './errors.ts';

/**
 * Limits the token endpoint per IP and per client (Engine.checkTokenRequests says where this runs): for every
 * client authentication method, public clients included. A client id that does not exist is counted per IP only.
 */
export function tokenEndpointLimits(rates: RateLimits): TokenRequestCheck {
  return {
    beforeClientLookup: (ctx) => enforce(ctx, rates, 'token-ip', ctx.ip),
    afterClientLookup: async (ctx, client) => {
      if (client) await enforce(ctx, rates, 'token-client', client.clientId);
    },
  };
}

async function enforce(ctx: KoaContextWithOIDC, rates: RateLimits, name: 'token-ip' | 'token-client', key: string): Promise<void> {
  let decision: LimitDecision;
  try {
    decision = await rates.consume(name, key);
  } catch (error) {
    // Fail closed: without the counters, refuse rather than serve without limits.
    if (error instanceof DependencyUnavailable) throw new TemporarilyUnavailable(error);
    throw error;
  }
  if (decision.allowed) return;
  ctx.set('Retry-After', String(decision.retryAfterSeconds));
  // A browser client may only read Retry-After if CORS exposes it.
  const exposed = ctx.response.get('Access-Control-Expose-Headers');
  if (ctx.response.get('Access-Control-Allow-Origin')) ctx.set('Access-Control-Expose-Headers', exposed ? `${exposed}, Retry-After` : 'Retry-After');
  throw new TooManyRequests(decision.retryAfterSeconds);
}
