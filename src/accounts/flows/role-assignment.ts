// Giving a person a role, taking it away, and deleting a role (which takes it from everyone): an administrator's
// acts (the CLI and the admin API). What a role permits at APIs applies from their next token; the tokens they hold
// keep the scopes they were granted until they expire or are refreshed.
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import { ADMIN_ROLE, type RoleService } from '../../apis/roles.ts';
import type { User, UserService } from '../users.ts';
import type { LastAdministrator } from './account-administration.ts';

export interface RoleAssignmentDependencies {
  users: Pick<UserService, 'findByEmail' | 'setRole' | 'withoutRole' | 'manyChanged'>;
  roles: Pick<RoleService, 'exists' | 'delete'>;
  auditTrail: Pick<AuditTrail, 'record'>;
}

export type RoleAssignment =
  | { ok: true; user: User; changed: boolean }
  | { ok: false; reason: 'unknown_account' | 'unknown_role' }
  | LastAdministrator;

export interface RoleAssignmentFlow {
  add(email: string, role: string, actor: AuditActor): Promise<RoleAssignment>;
  /** Takes the role away; the admin role stays with the last enabled person who has it (`last_administrator`). */
  remove(email: string, role: string, actor: AuditActor): Promise<RoleAssignment>;
  /**
   * Deletes the role and, in the same transaction, takes it from everyone who has it: no list, claim or role made
   * again with the name gives it back. One event, with how many people lost it. The admin role is never deleted
   * (RoleError).
   */
  deleteRole(role: string, actor: AuditActor): Promise<{ ok: true; peopleWhoHadIt: number } | { ok: false; reason: 'unknown_role' }>;
}

export function createRoleAssignmentFlow({ users, roles, auditTrail }: RoleAssignmentDependencies): RoleAssignmentFlow {
  async function assign(email: string, role: string, held: boolean, actor: AuditActor): Promise<RoleAssignment> {
    // A role taken away may have been deleted meanwhile; one given must exist.
    if (held && !await roles.exists(role)) return { ok: false, reason: 'unknown_role' };
    const found = await users.findByEmail(email);
    const result = found && await users.setRole(found.id, role, held, { keepHolderOf: ADMIN_ROLE });
    if (!result) return { ok: false, reason: 'unknown_account' };
    const action = held ? 'account.role_added' : 'account.role_removed';
    if (result === 'last_holder') {
      await auditTrail.record({ action, outcome: 'failure', actor, subjectUserId: found.id, subjectEmail: found.email, detail: { role, reason: 'last_administrator' } });
      return { ok: false, reason: 'last_administrator' };
    }
    // The role was deleted after the check above: not given.
    if (held && !result.user.roles.includes(role)) return { ok: false, reason: 'unknown_role' };
    if (result.changed) {
      await auditTrail.record({ action, outcome: 'success', actor, subjectUserId: result.user.id, subjectEmail: result.user.email, detail: { role } });
    }
    return { ok: true, user: result.user, changed: result.changed };
  }

  return {
    add: (email, role, actor) => assign(email, role, true, actor),
    remove: (email, role, actor) => assign(email, role, false, actor),
    async deleteRole(role, actor) {
      const deleted = await roles.delete(role, (transaction) => users.withoutRole(role, transaction), actor);
      if (deleted?.people) await users.manyChanged();
      return deleted ? { ok: true, peopleWhoHadIt: deleted.people } : { ok: false, reason: 'unknown_role' };
    },
  };
}
