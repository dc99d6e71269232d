// The token endpoint's rate limits, per IP and per client, as RFC 6749 JSON errors with Retry-After (the
// counting itself is src/limits/'s). Installed with the engine's other token-request checks in runtime.ts.
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenRequestCheck } from './engine-internals.ts';
import { networkOf, type RateLimits, type LimitDecision } from '../limits/index.ts';
import { DependencyUnavailable } from '../errors.ts';
import { TemporarilyUnavailable, TooManyRequests } from './errors.ts';

/**
 * Limits the token endpoint per IP and per client (Engine.checkTokenRequests says where this runs): for every
 * client authentication method, public clients included. Both counters are asked at once, in one round trip to
 * the store, before the client is looked up: an IP over its limit never makes Gatehouse look up the client ids
 * it sends. A client's point is given back when the IP is refused, when no such client exists (a made-up client
 * id is counted per IP only), and when the request is refused (a wrong secret, a made-up refresh token): such a
 * request may be anyone's who knows the client's id (a single-page app's is public), and would otherwise spend
 * the client's limit for its real requests. Those refusals are counted per IP. An id longer than any client's is
 * counted per IP only: each would leave a counter of its size in the store.
 */
export function tokenEndpointLimits(rates: RateLimits): TokenRequestCheck {
  const clientDecisions = new WeakMap<object, { clientId: string; decision: LimitDecision }>();
  return {
    beforeClientLookup: async (ctx, clientId) => {
      if (clientId.length > LONGEST_CLIENT_ID) {
        const byIp = await consume(rates, 'token-ip', networkOf(ctx.ip));
        if (!byIp.allowed) refuse(ctx, byIp);
        return;
      }
      const [byIp, byClient] = await Promise.all([consume(rates, 'token-ip', networkOf(ctx.ip)), consume(rates, 'token-client', clientId)]);
      if (!byIp.allowed) {
        if (byClient.allowed) await giveBack(rates, clientId);
        refuse(ctx, byIp);
      }
      clientDecisions.set(ctx, { clientId, decision: byClient });
    },
    afterClientLookup: async (ctx, client) => {
      const counted = clientDecisions.get(ctx);
      if (!counted) return;
      if (!client) {
        clientDecisions.delete(ctx);
        if (counted.decision.allowed) await giveBack(rates, counted.clientId);
        return;
      }
      if (!counted.decision.allowed) refuse(ctx, counted.decision);
    },
    afterAnswer: async (ctx) => {
      const counted = clientDecisions.get(ctx);
      if (!counted?.decision.allowed || ctx.status < 400) return;
      // The answer is given: a store failing now leaves the point counted, erring on the side of the limit.
      await rates.giveBack('token-client', counted.clientId).catch(() => {});
    },
  };
}

/** Longer than any client id Gatehouse gives (newClientId: 32 characters). */
const LONGEST_CLIENT_ID = 255;

async function consume(rates: RateLimits, name: 'token-ip' | 'token-client', key: string): Promise<LimitDecision> {
  try {
    return await rates.consume(name, key);
  } catch (error) {
    throw storeFailure(error);
  }
}

async function giveBack(rates: RateLimits, clientId: string): Promise<void> {
  try {
    await rates.giveBack('token-client', clientId);
  } catch (error) {
    throw storeFailure(error);
  }
}

/** Fail closed: without the counters, refuse rather than serve without limits. */
function storeFailure(error: unknown): unknown {
  return error instanceof DependencyUnavailable ? new TemporarilyUnavailable(error) : error;
}

function refuse(ctx: KoaContextWithOIDC, decision: Extract<LimitDecision, { allowed: false }>): never {
  ctx.set('Retry-After', String(decision.retryAfterSeconds));
  // A browser client may only read Retry-After if CORS exposes it.
  const exposed = ctx.response.get('Access-Control-Expose-Headers');
  if (ctx.response.get('Access-Control-Allow-Origin')) ctx.set('Access-Control-Expose-Headers', exposed ? `${exposed}, Retry-After` : 'Retry-After');
  throw new TooManyRequests(decision.retryAfterSeconds);
}
