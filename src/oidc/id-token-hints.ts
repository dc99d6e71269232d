// An id_token_hint signed by one of Gatehouse's own keys that has left the JWKS since. A rotation retires a key once
// the tokens it signed have expired, but an application keeps the ID token of its sign-in, and sends it back as a hint
// (a silent sign-in with prompt=none, a sign-out) for as long as the session lasts: the engine checks hints with its
// current keys only, and refused these. Such a hint is checked here with the key it names, kept for a session's
// length after it expired, and handed to the engine signed anew: the same subject and application, now its keys'.
import { compactVerify, decodeJwt, decodeProtectedHeader, importJWK } from 'jose';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { SigningKeyRing } from '../keys/key-ring.ts';
import { idTokenHintSignedNow, routeKey } from './engine-internals.ts';
import { asProviderError } from './errors.ts';

export function idTokenHintsOfExpiredKeys(provider: Provider, keys: Pick<SigningKeyRing, 'jwks' | 'formerPublicKey'>) {
  const endpoints = new Set([routeKey(provider.pathFor('authorization')), routeKey(provider.pathFor('end_session'))]);
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    const hint = (ctx.method === 'GET' || ctx.method === 'HEAD') && endpoints.has(routeKey(ctx.path)) ? ctx.query.id_token_hint : undefined;
    const signedNow = typeof hint === 'string' ? await asProviderError(() => hintSignedNow(provider, keys, hint)) : undefined;
    if (signedNow !== undefined) ctx.query = { ...ctx.query, id_token_hint: signedNow };
    await next();
  };
}

/** The hint signed with a current key, if an expired key of Gatehouse's signed it; undefined for anything else. */
async function hintSignedNow(provider: Provider, keys: Pick<SigningKeyRing, 'jwks' | 'formerPublicKey'>, hint: string): Promise<string | undefined> {
  let header: { kid?: unknown; typ?: unknown };
  let unverified: { iss?: unknown };
  try {
    header = decodeProtectedHeader(hint);
    unverified = decodeJwt(hint);
  } catch {
    return undefined;
  }
  const { kid, typ } = header;
  if (typeof kid !== 'string' || keys.jwks.keys.some((key) => key.kid === kid)) return undefined;
  // Only what could be one of its ID tokens is looked for (a logout token, typ logout+jwt, is not one).
  if ((typ !== undefined && typ !== 'JWT') || unverified.iss !== provider.issuer) return undefined;
  const former = await keys.formerPublicKey(kid);
  if (!former?.alg) return undefined;
  let claims: { iss?: unknown; sub?: unknown; aud?: unknown };
  try {
    // Its signature only: a hint's expiry does not count, as the engine ignores it too.
    const { payload } = await compactVerify(hint, await importJWK(former, former.alg), { algorithms: [former.alg] });
    claims = JSON.parse(new TextDecoder().decode(payload)) as typeof claims;
  } catch {
    return undefined;
  }
  const audience = Array.isArray(claims.aud) && claims.aud.length === 1 ? claims.aud[0] : claims.aud;
  if (claims.iss !== provider.issuer || typeof claims.sub !== 'string' || typeof audience !== 'string') return undefined;
  const client = await provider.Client.find(audience);
  return client ? idTokenHintSignedNow(provider, client, claims.sub) : undefined;
}
