// Changing the password of a signed-in person (who has just given the current one): every other session and
// grant ends, and so does every emailed link that could still set the password or move the account.
import type { AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { AccountTokens } from '../account-tokens.ts';
import type { User, UserService } from '../users.ts';
import type { AccountLinks, Notice, RequestOrigin, SessionEnder } from './dependencies.ts';

export interface PasswordChangeDependencies {
  users: Pick<UserService, 'setPassword'>;
  accountTokens: Pick<AccountTokens, 'revoke'>;
  accountSessions: SessionEnder;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** The notice waits in the queue while the mail server is down. */
  mail: Pick<MailQueue, 'deliver'>;
  links: Pick<AccountLinks, 'forgotPassword'>;
  clock: Clock;
}

export interface PasswordChange {
  account: Pick<User, 'id' | 'email'>;
  /** Already checked by the door against the policy (and against the current password it asked for). */
  newPassword: string;
  /** The session making the change: it stays signed in, with its grants. */
  keepSession: string;
}

export type PasswordChangeResult =
  /** `notice`: the "password changed" mail, for the door to send after its answer. */
  | { ok: true; user: User; sessionsEnded: number; grantsRevoked: number; notice: Notice }
  | { ok: false; reason: 'unknown_account' };

export interface PasswordChangeFlow {
  change(change: PasswordChange, request: RequestOrigin): Promise<PasswordChangeResult>;
}

export function createPasswordChangeFlow(dependencies: PasswordChangeDependencies): PasswordChangeFlow {
  const { users, accountTokens, accountSessions, auditTrail, mail, links, clock } = dependencies;
  return {
    async change({ account, newPassword, keepSession }, request) {
      const updated = await users.setPassword(account.id, newPassword);
      if (!updated) return { ok: false, reason: 'unknown_account' };
      const changedAt = clock.now();
      // A link mailed before the change (perhaps asked for by whoever knew the old password) must not undo it.
      await accountTokens.revoke(account.id, 'change_email');
      await accountTokens.revoke(account.id, 'reset_password');
      // The person stays signed in here; everywhere else, whoever knew the old password is signed out.
      const ended = await accountSessions.endAll(account.id, { keep: keepSession, reason: 'password_changed', request });
      await auditTrail.record({
        action: 'password.changed', outcome: 'success', subjectUserId: account.id, subjectEmail: account.email, ...request,
        detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      return {
        ok: true, user: updated, sessionsEnded: ended.sessions, grantsRevoked: ended.grants,
        notice: () => mail.deliver({ to: updated.email, template: 'password-changed', data: { changedAt, link: links.forgotPassword } }),
      };
    },
  };
}
