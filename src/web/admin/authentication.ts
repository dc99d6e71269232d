// Who may call the admin API: the bearer of an access token Gatehouse issued for it (audience: the admin API's
// identifier; a JWT checked with Gatehouse's own keys, unexpired, not revoked by itself or with its grant, nor ended
// with the browser session it was issued in) that was issued to a client that still exists, and is either a person's
// who holds the admin role now and is not disabled, or a service client's own. Its scopes say what it may do (those
// its client is still allowed): admin:read to read, admin:write to change. RFC 6750's answers: 401 with
// WWW-Authenticate without a valid token, 403 (insufficient_scope) without the scope.
import type { Context } from 'koa';
import type { AuditActor } from '../../audit/audit.ts';
import type { UserService } from '../../accounts/users.ts';
import type { ClientService } from '../../clients/clients.ts';
import { SESSION_UID_CLAIM, type JwtAccessTokens } from '../../oidc/jwt-access-tokens.ts';
import type { Engine } from '../../oidc/engine-internals.ts';
import { ADMIN_ROLE } from '../../apis/roles.ts';
import { apiScopesOf } from '../../oidc/resource-servers.ts';
import type { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE } from '../../apis/admin-api.ts';
import { Problem } from './problems.ts';

export type AdminScope = typeof ADMIN_READ_SCOPE | typeof ADMIN_WRITE_SCOPE;

/** Who is calling, as their token and Gatehouse's records say now. */
export type AdminCaller =
  | { kind: 'person'; userId: string; scopes: ReadonlySet<string> }
  | { kind: 'service'; clientId: string; scopes: ReadonlySet<string> };

export interface AdminAuthenticationDependencies {
  jwtAccessTokens: Pick<JwtAccessTokens, 'verify' | 'isRevoked'>;
  users: Pick<UserService, 'findById'>;
  clients: Pick<ClientService, 'find'>;
  engine: Pick<Engine, 'sessionByUid'>;
  /** The admin API's identifier: the audience its tokens must carry. */
  audience: string;
}

const REALM = 'Bearer realm="gatehouse-admin"';

/** The caller of this request, or a 401 problem saying why not. */
export async function authenticateAdmin(ctx: Context, { jwtAccessTokens, users, clients, engine, audience }: AdminAuthenticationDependencies): Promise<AdminCaller> {
  const match = /^Bearer +([\w.~+/-]+=*)$/i.exec(ctx.get('authorization'));
  if (!match) {
    throw new Problem('unauthorized', 'Send an access token for the admin API: Authorization: Bearer <token>', { headers: { 'WWW-Authenticate': REALM } });
  }
  const invalid = (why: string) => new Problem('unauthorized', why, {
    headers: { 'WWW-Authenticate': `${REALM}, error="invalid_token", error_description="${why}"` },
  });
  const claims = await jwtAccessTokens.verify(match[1]!);
  if (!claims) throw invalid('The access token is not one Gatehouse issued, or it has expired');
  // A token bound to a key (DPoP, RFC 9449) proves nothing without a proof of that key, which this API does not
  // take: whoever copied it must not use it as a bearer token (§7.1).
  if (claims.cnf !== undefined) throw invalid('The access token is bound to a DPoP key: the admin API takes bearer tokens only, ask for one without DPoP');
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes(audience)) throw invalid('The access token is not for the admin API');
  if (await jwtAccessTokens.isRevoked(claims)) throw invalid('The access token was revoked');
  // A person's token that ends with their browser session stops with it, as at introspection.
  const sessionUid = claims[SESSION_UID_CLAIM];
  if (sessionUid !== undefined && !await engine.sessionByUid(sessionUid)) throw invalid('The session the access token was issued in has ended');
  // A deleted client's tokens stop working everywhere: a person's through their app as much as a service's own.
  const client = claims.client_id ? await clients.find(claims.client_id) : undefined;
  if (!client) throw invalid('The client the access token was issued to no longer exists');
  // What a token may do is what its client is allowed now, as a person's role is checked now: a scope taken from
  // the client stops its tokens at once, not when they expire.
  const allowed = apiScopesOf(client);
  const scopes = new Set((claims.scope ?? '').split(' ').filter((scope) => allowed.has(scope)));
  if (claims.sub === claims.client_id) return { kind: 'service', clientId: client.client_id, scopes };
  const user = claims.sub ? await users.findById(claims.sub) : null;
  if (!user || user.disabled) throw invalid('The person the access token was issued to can no longer sign in');
  if (!user.roles.includes(ADMIN_ROLE)) throw new Problem('forbidden', `Only people with the ${ADMIN_ROLE} role may use the admin API`);
  return { kind: 'person', userId: user.id, scopes };
}

/** Refuses the call unless the token holds the scope. */
export function requireScope(caller: AdminCaller, scope: AdminScope): void {
  if (caller.scopes.has(scope)) return;
  throw new Problem('forbidden', `The access token needs the ${scope} scope`, {
    headers: { 'WWW-Authenticate': `${REALM}, error="insufficient_scope", scope="${scope}"` },
  });
}

/** The audit trail's actor for what the caller does. */
export function actorOf(caller: AdminCaller): AuditActor {
  return caller.kind === 'person' ? { type: 'admin', id: caller.userId } : { type: 'client', id: caller.clientId };
}
