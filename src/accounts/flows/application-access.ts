// The applications a person allowed, and withdrawing one's access: its remembered consent is forgotten (it
// asks again at the next sign-in) and every grant it holds is revoked with the tokens under it, in every
// session and offline, while the person stays signed in to Gatehouse and their other applications.
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import type { Consent, ConsentService } from '../consents.ts';
import type { User } from '../users.ts';
import type { RequestOrigin } from './dependencies.ts';

export interface ApplicationAccessDependencies {
  consents: Pick<ConsentService, 'list' | 'forget'>;
  /** The application's name as people know it; undefined once it was deleted. */
  applicationName(clientId: string): Promise<string | undefined>;
  /** The engine's side (src/oidc/account-sessions.ts): revokes the account's grants for one application, audited there. */
  grants: { revokeApplication(accountId: string, clientId: string, options: { reason: 'access_withdrawn'; request?: RequestOrigin; actor?: AuditActor | undefined }): Promise<number> };
  auditTrail: Pick<AuditTrail, 'record'>;
}

export interface AllowedApplication extends Consent {
  name: string;
}

export type AccessWithdrawal =
  | { ok: true; name: string; grantsRevoked: number }
  /** Not an application this person allowed (never, or withdrawn already): nothing was changed. */
  | { ok: false; reason: 'not_allowed' };

export interface ApplicationAccessFlow {
  /** The applications the person allowed, the most recently allowed first (deleted ones left out). */
  list(user: Pick<User, 'id'>): Promise<AllowedApplication[]>;
  /** `actor`: who withdrew it, for the audit trail: the person by default, an administrator when one did. */
  withdraw(user: Pick<User, 'id' | 'email'>, clientId: string, request: RequestOrigin, actor?: AuditActor): Promise<AccessWithdrawal>;
}

export function createApplicationAccessFlow(dependencies: ApplicationAccessDependencies): ApplicationAccessFlow {
  const { consents, applicationName, grants, auditTrail } = dependencies;
  return {
    async list(user) {
      const allowed = await consents.list(user.id);
      const named = await Promise.all(allowed.map(async (consent) => ({ ...consent, name: await applicationName(consent.clientId) })));
      return named.filter((application): application is AllowedApplication => application.name !== undefined);
    },

    async withdraw(user, clientId, request, actor) {
      const name = await applicationName(clientId);
      if (!name || !await consents.forget(user.id, clientId)) return { ok: false, reason: 'not_allowed' };
      const grantsRevoked = await grants.revokeApplication(user.id, clientId, { reason: 'access_withdrawn', request, actor });
      await auditTrail.record({
        action: 'consent.withdrawn', outcome: 'success', actor, subjectUserId: user.id, subjectEmail: user.email, clientId,
        ip: request.ip, userAgent: request.userAgent, detail: { grantsRevoked },
      });
      return { ok: true, name, grantsRevoked };
    },
  };
}
