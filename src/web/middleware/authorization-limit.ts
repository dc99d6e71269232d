// Limits per IP the engine's endpoints that anyone may call without signing in and that keep state in the store
// until it is used or expires (an interaction, a pushed request, a logout's session): without a limit, one
// script could fill Redis, and a full Redis stops every sign-in (src/limits/ counts).
import type { Context, Next } from 'koa';
import { DependencyUnavailable } from '../../errors.ts';
import { networkOf, type RateLimits } from '../../limits/index.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { routeKey } from '../engine-paths.ts';

/** `paths`: what is paused at each limited path, as a gerund ("signing in"), by route key. */
export function authorizationLimit(rates: RateLimits, paths: ReadonlyMap<string, string>) {
  return async function limitAuthorization(ctx: Context, next: Next): Promise<void> {
    const action = ctx.method === 'OPTIONS' ? undefined : paths.get(routeKey(ctx.path));
    if (action) {
      let decision;
      try {
        decision = await rates.consume('authorization-ip', networkOf(ctx.ip));
      } catch (error) {
        // Nothing can be kept while the store is down: the engine answers the outage in its own way (back to the
        // application, for the authorization endpoint).
        if (!(error instanceof DependencyUnavailable)) throw error;
      }
      if (decision && !decision.allowed) throw new TooManyAttempts(decision, { action });
    }
    await next();
  };
}
