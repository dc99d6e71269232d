// Disabling and enabling an account, an administrator's act (the CLI now, the admin API next): a disabled
// account signs in nowhere, and every session, grant and token it holds stops working at once.
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import type { User, UserService } from '../users.ts';
import type { SessionEnder } from './dependencies.ts';

export interface AccountStatusDependencies {
  users: Pick<UserService, 'findByEmail' | 'setDisabled'>;
  accountSessions: SessionEnder;
  auditTrail: Pick<AuditTrail, 'record'>;
}

export type AccountStatusChange =
  | { ok: true; user: User; changed: boolean; sessionsEnded: number; grantsRevoked: number }
  | { ok: false; reason: 'unknown_account' };

export interface AccountStatusFlow {
  /**
   * Disables the account with this address. Its sessions end and its grants (with every token issued under
   * them) are revoked even when it was disabled already: a disabling cut short before that is finished now.
   * Introspection and userinfo refuse a disabled account's tokens whatever the store still holds.
   */
  disable(email: string, actor: AuditActor): Promise<AccountStatusChange>;
  /** Lets the account with this address sign in again; nothing it had before is given back. */
  enable(email: string, actor: AuditActor): Promise<AccountStatusChange>;
}

export function createAccountStatusFlow({ users, accountSessions, auditTrail }: AccountStatusDependencies): AccountStatusFlow {
  async function setDisabled(email: string, disabled: boolean) {
    const found = await users.findByEmail(email);
    return found ? users.setDisabled(found.id, disabled) : null;
  }

  return {
    async disable(email, actor) {
      const result = await setDisabled(email, true);
      if (!result) return { ok: false, reason: 'unknown_account' };
      const ended = await accountSessions.endAll(result.user.id, { reason: 'account_disabled' });
      await auditTrail.record({
        action: 'account.disabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
        detail: { alreadyDisabled: !result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      return { ok: true, user: result.user, changed: result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants };
    },

    async enable(email, actor) {
      const result = await setDisabled(email, false);
      if (!result) return { ok: false, reason: 'unknown_account' };
      await auditTrail.record({
        action: 'account.enabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
        detail: { alreadyEnabled: !result.changed },
      });
      return { ok: true, user: result.user, changed: result.changed, sessionsEnded: 0, grantsRevoked: 0 };
    },
  };
}
