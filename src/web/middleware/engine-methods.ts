// A protocol endpoint asked with a method it does not answer (POST to the authorization endpoint, GET to the token
// endpoint) gets 405 with Allow, in the protocol's words, rather than the engine's bare "Not Found" (RFC 9110 §15.5.6).
import type { Context, Next } from 'koa';
import { HttpError } from '../kit/errors.ts';
import { routeKey } from '../engine-paths.ts';

/** `methods`: what the engine answers at each of its paths (engineMethods). */
export function allowedMethodsOnly(methods: ReadonlyMap<string, readonly string[]>) {
  return async function refuseOtherMethods(ctx: Context, next: Next): Promise<void> {
    const allowed = methods.get(routeKey(ctx.path));
    // Preflights are the CORS middleware's and the engine's to answer.
    if (!allowed || ctx.method === 'OPTIONS' || allowed.includes(ctx.method)) return next();
    ctx.set('Allow', allowed.join(', '));
    throw new HttpError(405, `${ctx.path} answers ${allowed.filter((method) => method !== 'HEAD').join(' and ')} only`);
  };
}
