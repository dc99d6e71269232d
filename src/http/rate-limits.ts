// Maps limit decisions to HTTP: the words for when to try again (the 429 page is errors.ts's TooManyAttempts)
// and, at the token endpoint, an RFC 6749 JSON error with Retry-After. The counting itself is in src/limits/.
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenRequestCheck } from '../oidc/engine-internals.ts';
import type { RateLimits, LimitDecision } from '../limits/index.ts';
import { DependencyUnavailable } from '../errors.ts';
import { TemporarilyUnavailable, TooManyRequests } from '../oidc/errors.ts';

/** "in 45 seconds", "in 2 minutes", "in 1 hour": rounded up, so the person never comes back too early. */
export function inWords(seconds: number): string {
  const plural = (count: number, unit: string) => `${count} ${unit}${count === 1 ? '' : 's'}`;
  if (seconds < 60) return `in ${plural(Math.max(1, Math.ceil(seconds)), 'second')}`;
  if (seconds < 3600) return `in ${plural(Math.ceil(seconds / 60), 'minute')}`;
  if (seconds < 2 * 86_400) return `in ${plural(Math.ceil(seconds / 3600), 'hour')}`;
  return `in ${plural(Math.ceil(seconds / 86_400), 'day')}`;
}

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
