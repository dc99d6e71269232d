// An administrator's acts on an account (the CLI and the admin API): disabling (it signs in nowhere, and every
// session, grant and token it holds stops working at once), enabling, lifting its lockouts, and deleting it.
import type { AuditAction, AuditActor, AuditTrail } from '../../audit/audit.ts';
import { ADMIN_ROLE } from '../../apis/roles.ts';
import { UnknownRoles, type AccountRecord, type User, type UserService } from '../users.ts';
import type { AccountTokenPurpose, AccountTokens } from '../account-tokens.ts';
import type { SessionEnder } from './dependencies.ts';

export interface AccountAdministrationDependencies {
  users: Pick<UserService, 'create' | 'findByEmail' | 'setDisabled' | 'delete' | 'updateProfile'>;
  /** Whether a role exists: a person is given only roles that do. */
  roleExists(name: string): Promise<boolean>;
  accountSessions: SessionEnder;
  accountTokens: Pick<AccountTokens, 'revoke'>;
  /** The password attempts counted against accounts (their lockouts). */
  passwordAttempts: { forgive(email: string): Promise<void> };
  /** The second-factor codes counted against accounts (their lockouts, src/limits/second-factor-guard.ts). */
  secondFactorAttempts: { forgive(accountId: string): Promise<void> };
  auditTrail: Pick<AuditTrail, 'record'>;
}

/**
 * Refused: the account is the last enabled one with the admin role, and Gatehouse would be left with nobody who
 * can administer it (the admin API takes only their tokens; the CLI needs shell access to the server).
 */
/** The emailed links a disabled account's disabling ends (restore_email, the owner's way back, is kept). */
const LINKS_ENDED_BY_DISABLING: readonly AccountTokenPurpose[] = ['change_email', 'reset_password', 'verify_email'];

export type LastAdministrator = { ok: false; reason: 'last_administrator' };

export type AccountStatusChange =
  | { ok: true; user: User; changed: boolean; sessionsEnded: number; grantsRevoked: number }
  | { ok: false; reason: 'unknown_account' }
  | LastAdministrator;

/** An account an administrator makes: its password is checked as anyone's (AccountError otherwise). */
export interface NewAccount {
  email: string;
  password: string;
  name?: string | undefined;
  emailVerified?: boolean | undefined;
  roles?: readonly string[] | undefined;
}

export interface AccountAdministrationFlow {
  /** Makes an account; `unknown_role` names the roles that do not exist (nothing is made then). */
  create(account: NewAccount, actor: AuditActor): Promise<{ ok: true; user: User } | { ok: false; reason: 'unknown_role'; roles: string[] }>;
  /**
   * Disables the account with this address. Its sessions end and its grants (with every token issued under
   * them) are revoked even when it was disabled already: a disabling cut short before that is finished now.
   * Introspection and userinfo refuse a disabled account's tokens whatever the store still holds. The last
   * enabled person with the admin role stays enabled (`last_administrator`).
   */
  disable(email: string, actor: AuditActor): Promise<AccountStatusChange>;
  /** Lets the account with this address sign in again; nothing it had before is given back. */
  enable(email: string, actor: AuditActor): Promise<AccountStatusChange>;
  /**
   * Changes the name, or whether the address counts as verified (by the account's id), unless it changed since
   * `unchangedSince`: 'stale' then; null when there is no such account.
   */
  update(userId: string, changes: { name?: string | null | undefined; emailVerified?: boolean | undefined }, actor: AuditActor, unchangedSince?: Date): Promise<AccountRecord | 'stale' | null>;
  /** Lifts the account's lockouts, of the password and of the second factor, and forgets its failed attempts (the person called the help desk). */
  unlock(email: string, actor: AuditActor): Promise<{ ok: true; user: User } | { ok: false; reason: 'unknown_account' }>;
  /**
   * Deletes the account: its sessions end and its grants are revoked first (applications are told), then the
   * account goes with its links, second factor and consents. The audit trail keeps its events. The last enabled
   * person with the admin role stays (`last_administrator`).
   */
  delete(email: string, actor: AuditActor): Promise<{ ok: true; user: User; sessionsEnded: number; grantsRevoked: number } | { ok: false; reason: 'unknown_account' } | LastAdministrator>;
}

export function createAccountAdministrationFlow(dependencies: AccountAdministrationDependencies): AccountAdministrationFlow {
  const { users, roleExists, accountSessions, accountTokens, passwordAttempts, secondFactorAttempts, auditTrail } = dependencies;

  /** Disables the account, unless it is the last administrator (who stays enabled). */
  function disable(user: User) {
    return users.setDisabled(user.id, true, { keepHolderOf: ADMIN_ROLE });
  }

  async function refused(action: AuditAction, user: User, actor: AuditActor): Promise<LastAdministrator> {
    await auditTrail.record({ action, outcome: 'failure', actor, subjectUserId: user.id, subjectEmail: user.email, detail: { reason: 'last_administrator' } });
    return { ok: false, reason: 'last_administrator' };
  }

  return {
    async create(account, actor) {
      const roles = [...new Set(account.roles ?? [])];
      const unknown = (await Promise.all(roles.map(async (role) => (await roleExists(role) ? undefined : role)))).filter((role) => role !== undefined);
      if (unknown.length) return { ok: false, reason: 'unknown_role', roles: unknown };
      // Checked again as the account is written: a role deleted since (the password took its time to hash) is not given.
      const user = await users.create({ ...account, roles }).catch((error: unknown) => {
        if (error instanceof UnknownRoles) return error;
        throw error;
      });
      if (user instanceof UnknownRoles) return { ok: false, reason: 'unknown_role', roles: user.roles };
      await auditTrail.record({ action: 'account.created', outcome: 'success', actor, subjectUserId: user.id, subjectEmail: user.email, detail: { via: 'administrator', roles } });
      return { ok: true, user };
    },

    async disable(email, actor) {
      const found = await users.findByEmail(email);
      const result = found && await disable(found);
      if (!result) return { ok: false, reason: 'unknown_account' };
      if (result === 'last_holder') return refused('account.disabled', found, actor);
      const ended = await accountSessions.endAll(result.user.id, { reason: 'account_disabled', actor });
      // Its emailed links end too (enabling gives nothing back): an intruder's change of address or reset link
      // would otherwise work again once the account is enabled. The undo link to the address the account left
      // stays: it is the owner's way back.
      for (const purpose of LINKS_ENDED_BY_DISABLING) await accountTokens.revoke(result.user.id, purpose);
      await auditTrail.record({
        action: 'account.disabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
        detail: { alreadyDisabled: !result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      return { ok: true, user: result.user, changed: result.changed, sessionsEnded: ended.sessions, grantsRevoked: ended.grants };
    },

    async enable(email, actor) {
      const found = await users.findByEmail(email);
      const result = found && await users.setDisabled(found.id, false);
      if (!result) return { ok: false, reason: 'unknown_account' };
      await auditTrail.record({
        action: 'account.enabled', outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email,
        detail: { alreadyEnabled: !result.changed },
      });
      return { ok: true, user: result.user, changed: result.changed, sessionsEnded: 0, grantsRevoked: 0 };
    },

    async update(userId, changes, actor, unchangedSince) {
      const updated = await users.updateProfile(userId, changes, unchangedSince);
      if (updated && updated !== 'stale') {
        const changed = Object.entries({ name: changes.name, emailVerified: changes.emailVerified }).filter(([, value]) => value !== undefined).map(([key]) => key);
        await auditTrail.record({ action: 'account.updated', outcome: 'success', actor, subjectUserId: updated.id, subjectEmail: updated.email, detail: { changed } });
      }
      return updated;
    },

    async unlock(email, actor) {
      const user = await users.findByEmail(email);
      if (!user) return { ok: false, reason: 'unknown_account' };
      await passwordAttempts.forgive(user.email);
      await secondFactorAttempts.forgive(user.id);
      await auditTrail.record({ action: 'account.unlocked', outcome: 'success', actor, subjectUserId: user.id, subjectEmail: user.email });
      return { ok: true, user };
    },

    async delete(email, actor) {
      const user = await users.findByEmail(email);
      if (!user) return { ok: false, reason: 'unknown_account' };
      // Disabled first: no sign-in can begin while its sessions end.
      if (await disable(user) === 'last_holder') return refused('account.deleted', user, actor);
      const ended = await accountSessions.endAll(user.id, { reason: 'account_deleted', actor });
      await users.delete(user.id);
      await auditTrail.record({
        action: 'account.deleted', outcome: 'success', actor, subjectUserId: user.id, subjectEmail: user.email,
        detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      return { ok: true, user, sessionsEnded: ended.sessions, grantsRevoked: ended.grants };
    },
  };
}
