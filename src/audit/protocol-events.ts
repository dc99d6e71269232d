// Audits what oidc-provider does on its own: a revoked grant (`grant.revoked`) and, when the revocation
// was the engine's answer to a used refresh token or authorization code presented again, the reuse.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { AuditActor, AuditTrail } from './audit.ts';

/** Why the engine revoked a grant, read from the request it was handling (see lib/helpers/revoke.js). */
type RevocationReason = 'refresh_token_reuse' | 'authorization_code_reuse' | 'token_revoked' | 'logout' | 'other';

export function auditProtocolEvents(provider: Provider, auditTrail: AuditTrail): void {
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    const reason = revocationReason(ctx);
    const { entities } = ctx.oidc;
    const token = entities.RefreshToken ?? entities.AuthorizationCode ?? entities.AccessToken;
    // At logout the request's client (if any) only asked for it: each grant belongs to its own client.
    const clientId = reason === 'logout' ? clientOfGrant(ctx, grantId) : ctx.oidc.client?.clientId;
    const subjectUserId = token?.accountId ?? ctx.oidc.session?.accountId;
    const request = { ip: ctx.ip, userAgent: ctx.get('user-agent') };
    // The handler is synchronous for the engine; record() never rejects and the runtime flushes it on close.
    if (reason === 'refresh_token_reuse' || reason === 'authorization_code_reuse') {
      void auditTrail.record({
        action: reason === 'refresh_token_reuse' ? 'refresh_token.reused' : 'authorization_code.reused',
        outcome: 'failure',
        actor: { type: 'client', id: clientId },
        subjectUserId, clientId, ...request,
        detail: { grantId },
      });
    }
    const actor: AuditActor = reason === 'logout' ? { type: 'user', id: subjectUserId }
      : reason === 'token_revoked' ? { type: 'client', id: clientId }
      : { type: 'system' };
    void auditTrail.record({
      action: 'grant.revoked', outcome: 'success', actor, subjectUserId, clientId, ...request, detail: { grantId, reason },
    });
  });
}

/**
 * The client a grant of the session was made for. The engine revokes a session's grants at logout one
 * by one from `session.authorizations` (client id → grantId), and the Grant itself is gone by then.
 */
function clientOfGrant(ctx: KoaContextWithOIDC, grantId: string): string | undefined {
  const authorizations = ctx.oidc.session?.authorizations ?? {};
  return Object.keys(authorizations).find((clientId) => authorizations[clientId]?.grantId === grantId);
}

function revocationReason(ctx: KoaContextWithOIDC): RevocationReason {
  switch (ctx.oidc.route) {
    case 'token': {
      const grantType = ctx.oidc.params?.grant_type;
      // The engine revokes a grant from the token endpoint only when a consumed token comes back.
      if (grantType === 'refresh_token') return 'refresh_token_reuse';
      if (grantType === 'authorization_code') return 'authorization_code_reuse';
      return 'other';
    }
    case 'revocation': return 'token_revoked';
    case 'end_session':
    case 'end_session_confirm': return 'logout';
    default: return 'other';
  }
}
