// Limits per IP the engine's endpoints that anyone may call without signing in and that keep state in the store
// until it is used or expires (an interaction, a pushed request, a logout's session): without a limit, one
// script could fill Redis, and a full Redis stops every sign-in (src/limits/ counts).
import type { Context, Next } from 'koa';
import type { ClientService } from '../../clients/clients.ts';
import { DependencyUnavailable } from '../../errors.ts';
import { networkOf, type RateLimits } from '../../limits/index.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { routeKey } from '../engine-paths.ts';

/** What a limited path pauses, as a gerund ("signing in"); `calledByBrowserApps`: single-page apps fetch it (PAR). */
export interface LimitedPath {
  action: string;
  calledByBrowserApps?: boolean;
}

/** `paths`: the limited paths, by route key. */
export function authorizationLimit(rates: RateLimits, clients: Pick<ClientService, 'isSinglePageAppOrigin'>, paths: ReadonlyMap<string, LimitedPath>) {
  return async function limitAuthorization(ctx: Context, next: Next): Promise<void> {
    const limited = ctx.method === 'OPTIONS' ? undefined : paths.get(routeKey(ctx.path));
    if (limited) {
      let decision;
      try {
        decision = await rates.consume('authorization-ip', networkOf(ctx.ip));
      } catch (error) {
        // Nothing can be kept while the store is down: the engine answers the outage in its own way (back to the
        // application, for the authorization endpoint).
        if (!(error instanceof DependencyUnavailable)) throw error;
      }
      if (decision && !decision.allowed) {
        if (limited.calledByBrowserApps) await letBrowserAppRead(ctx, clients);
        throw new TooManyAttempts(decision, { action: limited.action });
      }
    }
    await next();
  };
}

/** A refusal a registered single-page app's fetch may read, with its Retry-After, as the engine's own answers there. */
async function letBrowserAppRead(ctx: Context, clients: Pick<ClientService, 'isSinglePageAppOrigin'>): Promise<void> {
  const origin = ctx.get('Origin');
  ctx.vary('Origin');
  if (!origin || !await clients.isSinglePageAppOrigin(origin)) return;
  ctx.set('Access-Control-Allow-Origin', origin);
  ctx.set('Access-Control-Expose-Headers', 'Retry-After');
}
