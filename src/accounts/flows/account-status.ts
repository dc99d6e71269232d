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

/**
 * Disables the account with this address. Its sessions end and its grants (with every token issued under
 * them) are revoked even when it was disabled already: a disabling cut short before that is finished now.
 * Introspection and userinfo refuse a disabled account's tokens whatever the store still holds.
 */
export async function disableAccount(dependencies: AccountStatusDependencies, email: string, actor: AuditActor): Promise<AccountStatusChange> {
  const { users, accountSessions, auditTrail } = dependencies;
  const found = await users.findByEmail(email);
  const result = found ? await users.setDisabled(found.id, true) : null;
  if (!result) return { ok: false, reason: 'unknown_account' };
  const ended = await accountSessions.endAll(result.user.id, { reason: 'account_disabled' });
  await auditTrail.record({
    action: 'account.disabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
    detail: { alreadyDisabled: !result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
  });
  return { ok: true, user: result.user, changed: result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants };
}

/** Lets the account with this address sign in again; nothing it had before is given back. */
export async function enableAccount(dependencies: Omit<AccountStatusDependencies, 'accountSessions'>, email: string, actor: AuditActor): Promise<AccountStatusChange> {
  const { users, auditTrail } = dependencies;
  const found = await users.findByEmail(email);
  const result = found ? await users.setDisabled(found.id, false) : null;
  if (!result) return { ok: false, reason: 'unknown_account' };
  await auditTrail.record({
    action: 'account.enabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
    detail: { alreadyEnabled: !result.changed },
  });
  return { ok: true, user: result.user, changed: result.changed, sessionsEnded: 0, grantsRevoked: 0 };
}
