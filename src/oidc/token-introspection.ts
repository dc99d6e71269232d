// Who may introspect a token, and Gatehouse's answers for the JWT access tokens the engine does not store: at
// introspection (active while it verifies, is not revoked and the caller may see it) and at revocation.
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { TokenHolder } from '../accounts/users.ts';
import { revokeGrant } from './engine-internals.ts';
import { asProviderError } from './errors.ts';
import { GRANT_ID_CLAIM, JwtAccessTokens, SESSION_UID_CLAIM } from './jwt-access-tokens.ts';
import { RESOURCE_SERVER } from './resource-servers.ts';

const ACCESS_TOKEN_KINDS = new Set(['AccessToken', 'ClientCredentials']);

/** What introspection is told of a token, stored (the engine's) or a JWT (Gatehouse's). */
interface IntrospectedToken {
  kind: string;
  clientId: string | undefined;
  accountId: string | undefined;
  /** The API the token is for (resource-bound), if any. */
  aud: string | string[] | undefined;
}

/**
 * Who may introspect a token. Its own client may. A service client (a resource server) may introspect access
 * tokens it is handed, never refresh tokens, which only their client ever presents — and a token for an API only
 * if it is that API's resource server (audience-restricted: a token for API A is useless at API B). A token whose
 * client was deleted is inactive, and so is a token for an API deleted since, and every token of a disabled (or
 * deleted) account, whatever the store holds.
 */
export function introspectionPolicy(
  personOf: (ctx: KoaContextWithOIDC, accountId: string) => Promise<TokenHolder | null>, apiExists: (identifier: string) => Promise<boolean>,
) {
  return async (ctx: KoaContextWithOIDC, caller: NonNullable<KoaContextWithOIDC['oidc']['client']>, token: IntrospectedToken): Promise<boolean> => {
    if (token.accountId && !await accountMayUseTokens(await asProviderError(() => personOf(ctx, token.accountId!)))) return false;
    const audiences = Array.isArray(token.aud) ? token.aud : token.aud ? [token.aud] : [];
    if (!(await asProviderError(() => Promise.all(audiences.map(apiExists)))).every(Boolean)) return false;
    if (token.clientId === caller.clientId) return true;
    if (!ACCESS_TOKEN_KINDS.has(token.kind) || caller.clientAuthMethod === 'none' || !caller.grantTypeAllowed('client_credentials')) return false;
    if (await ctx.oidc.provider.Client.find(token.clientId!) === undefined) return false;
    return !audiences.length || audiences.includes(String((caller as unknown as Record<string, unknown>)[RESOURCE_SERVER]));
  };
}

/**
 * JWT access tokens, which the engine neither stores nor takes at introspection or revocation (it refuses them as
 * unsupported_token_type once the caller is authenticated): Gatehouse answers for them (jwt-access-tokens.ts).
 * Introspection: active, with the token's claims, while it verifies, is not revoked and the caller may see it;
 * else, like any token that is not good, inactive. Revocation, by the token's own client: the token and, for a
 * person's, its whole grant, as for an opaque access token; 200 whatever the token (RFC 7009).
 */
export function answerForJwtAccessTokens(jwts: JwtAccessTokens, mayIntrospect: ReturnType<typeof introspectionPolicy>) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    await next();
    const route = ctx.oidc?.route;
    const token = ctx.oidc?.params?.token;
    const caller = ctx.oidc?.client;
    const answer = ctx.body as { error?: unknown; active?: unknown; sub?: unknown; client_id?: unknown } | undefined;
    // A service's own token is about the service: sub is its client_id, as in its JWT (RFC 9068 §2.2).
    if (route === 'introspection' && ctx.status === 200 && answer?.active === true && answer.sub === undefined) answer.sub = answer.client_id;
    const refusedAsJwt = ctx.status === 400 && answer?.error === 'unsupported_token_type';
    if ((route !== 'introspection' && route !== 'revocation') || !refusedAsJwt || !caller || !JwtAccessTokens.looksLikeJwt(token)) return;
    const claims = await jwts.verify(token);
    const grantId = claims?.[GRANT_ID_CLAIM];
    ctx.status = 200;
    if (route === 'revocation') {
      ctx.body = null;
      if (claims?.client_id !== caller.clientId) return;
      await asProviderError(async () => {
        await jwts.revoke(claims);
        if (grantId) await revokeGrant(ctx.oidc.provider, grantId);
      });
      return;
    }
    ctx.body = { active: false };
    if (!claims) return;
    const sessionUid = claims[SESSION_UID_CLAIM];
    const active = await asProviderError(async () => !await jwts.isRevoked(claims)
      && (sessionUid === undefined || await ctx.oidc.provider.Session.findByUid(sessionUid) !== undefined)
      && await mayIntrospect(ctx, caller, { kind: 'AccessToken', clientId: claims.client_id, accountId: grantId ? claims.sub : undefined, aud: claims.aud }));
    if (!active) return;
    const { iss, sub, aud, exp, iat, jti, client_id: clientId, scope, roles, cnf } = claims as typeof claims & { roles?: unknown; cnf?: { jkt?: unknown } };
    // A sender-constrained token says to what key (RFC 9449 §6.2, as the engine says of opaque ones): without it, an
    // API that introspects would take a stolen DPoP-bound token as a bearer token.
    ctx.body = {
      active: true, iss, client_id: clientId, sub, aud, scope, exp, iat, jti, token_type: cnf?.jkt ? 'DPoP' : 'Bearer',
      ...(cnf === undefined ? {} : { cnf }), ...(roles === undefined ? {} : { roles }),
    };
  };
}

/** Whether the person a token was issued for may still sign in: tokens of a disabled (or deleted) account are inactive. */
function accountMayUseTokens(user: TokenHolder | null): boolean {
  return user !== null && !user.disabled;
}
