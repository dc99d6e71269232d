// Giving a person a role, or taking it away, an administrator's act (the CLI now, the admin API next). What a role
// permits at APIs applies from their next token; the tokens they hold keep the scopes they were granted until they
// expire or are refreshed.
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import type { RoleService } from '../../apis/roles.ts';
import type { User, UserService } from '../users.ts';

export interface RoleAssignmentDependencies {
  users: Pick<UserService, 'findByEmail' | 'setRole'>;
  roles: Pick<RoleService, 'exists'>;
  auditTrail: Pick<AuditTrail, 'record'>;
}

export type RoleAssignment =
  | { ok: true; user: User; changed: boolean }
  | { ok: false; reason: 'unknown_account' | 'unknown_role' };

export interface RoleAssignmentFlow {
  add(email: string, role: string, actor: AuditActor): Promise<RoleAssignment>;
  remove(email: string, role: string, actor: AuditActor): Promise<RoleAssignment>;
}

export function createRoleAssignmentFlow({ users, roles, auditTrail }: RoleAssignmentDependencies): RoleAssignmentFlow {
  async function assign(email: string, role: string, held: boolean, actor: AuditActor): Promise<RoleAssignment> {
    // A role taken away may have been deleted meanwhile; one given must exist.
    if (held && !await roles.exists(role)) return { ok: false, reason: 'unknown_role' };
    const found = await users.findByEmail(email);
    const result = found ? await users.setRole(found.id, role, held) : null;
    if (!result) return { ok: false, reason: 'unknown_account' };
    if (result.changed) {
      await auditTrail.record({
        action: held ? 'account.role_added' : 'account.role_removed', outcome: 'success', actor,
        subjectUserId: result.user.id, subjectEmail: result.user.email, detail: { role },
      });
    }
    return { ok: true, user: result.user, changed: result.changed };
  }

  return {
    add: (email, role, actor) => assign(email, role, true, actor),
    remove: (email, role, actor) => assign(email, role, false, actor),
  };
}
