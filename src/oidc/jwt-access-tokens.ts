// JWT access tokens (RFC 9068) are not stored by the engine, so it cannot introspect or revoke them: Gatehouse
// answers for them. A JWT is active while its signature is Gatehouse's, it has not expired, its client and person
// may still use tokens, and it is on neither revocation list in the store: revoked tokens (by jti, until they
// would have expired) and revoked grants (every token issued under a grant that was revoked).
import { jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { MAX_ACCESS_TOKEN_TTL_SECONDS } from '../apis/apis.ts';
import type { Store } from '../store/store.ts';

/** Private claim naming the grant a person's JWT was issued under, so that revoking the grant reaches it. */
export const GRANT_ID_CLAIM = 'grant_id';

/**
 * Private claim naming the browser session a session-bound JWT ends with (the engine's session uid, not its cookie's
 * id), so that introspection finds it inactive once that session is over, as the engine finds a stored token.
 */
export const SESSION_UID_CLAIM = 'session_uid';

/** A JWT access token's claims, as verified. */
export type AccessTokenClaims = JWTPayload & { client_id?: string; scope?: string; [GRANT_ID_CLAIM]?: string; [SESSION_UID_CLAIM]?: string };

export class JwtAccessTokens {
  readonly #issuer: string;
  readonly #store: Store;
  readonly #keys: { readonly verificationKeys: JWTVerifyGetKey };

  /** `keys`: the published signing keys of the moment (they rotate). */
  constructor(options: { issuer: string; keys: { readonly verificationKeys: JWTVerifyGetKey }; store: Store }) {
    this.#issuer = options.issuer;
    this.#store = options.store;
    this.#keys = options.keys;
  }

  /** Whether the text is shaped like a JWT at all (three base64url parts): what the engine cannot look up. */
  static looksLikeJwt(token: unknown): token is string {
    return typeof token === 'string' && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token);
  }

  /** The claims of one of Gatehouse's unexpired JWT access tokens; undefined for anything else. */
  async verify(token: string): Promise<AccessTokenClaims | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.#keys.verificationKeys, { issuer: this.#issuer, typ: 'at+jwt', requiredClaims: ['exp', 'jti', 'client_id'] });
      return payload as AccessTokenClaims;
    } catch {
      return undefined;
    }
  }

  /** Whether it was revoked, by itself or with its grant. */
  async isRevoked(claims: AccessTokenClaims): Promise<boolean> {
    const [token, grant] = await Promise.all([
      this.#store.get(revokedTokenKey(claims.jti!)),
      claims[GRANT_ID_CLAIM] ? this.#store.get(revokedGrantKey(claims[GRANT_ID_CLAIM])) : undefined,
    ]);
    // Every token of a revoked grant, whenever it was issued: a revoked grant is gone and issues no more, and a
    // token a refresh racing the revocation signed a moment after it must die with the rest.
    return token !== undefined || grant !== undefined;
  }

  /** Puts the token on the revocation list until it would have expired. */
  async revoke(claims: AccessTokenClaims): Promise<void> {
    const ttl = Math.max(1, (claims.exp ?? 0) - epochSeconds());
    await this.#store.put(revokedTokenKey(claims.jti!), '1', ttl);
  }

  /**
   * A grant was revoked: every JWT issued under it is inactive (the adapter calls this), as long as one can live
   * (and a minute more, for one a racing refresh signed just after).
   */
  async grantRevoked(grantId: string): Promise<void> {
    await this.#store.put(revokedGrantKey(grantId), JSON.stringify(epochSeconds()), MAX_ACCESS_TOKEN_TTL_SECONDS + 60);
  }
}

function revokedTokenKey(jti: string): string {
  return `revoked:jwt:${jti}`;
}

function revokedGrantKey(grantId: string): string {
  return `revoked:grant:${grantId}`;
}

function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
