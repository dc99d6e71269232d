// An administrator turns off a person's second factor (a lost phone and lost recovery codes): the authenticator
// and codes are forgotten, every session and grant ends, and the person is told. The CLI's door now, the admin API's next.
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import { DependencyUnavailable } from '../../errors.ts';
import type { Mailer } from '../../mail/mailer.ts';
import type { SecondFactorService } from '../second-factor.ts';
import type { User, UserService } from '../users.ts';
import type { AccountLinks, Notice, SessionEnder } from './dependencies.ts';

export interface SecondFactorResetDependencies {
  users: Pick<UserService, 'findByEmail'>;
  secondFactor: Pick<SecondFactorService, 'status' | 'removeForAccountRecovery' | 'loginRequirement'>;
  accountSessions: SessionEnder;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** The notice goes out at once, so the administrator learns whether it did (and tells the person otherwise). */
  mailer: Pick<Mailer, 'send'>;
  links: Pick<AccountLinks, 'forgotPassword'>;
  clock: Clock;
}

export interface SecondFactorResetRequest {
  email: string;
  actor: AuditActor;
  /**
   * False where the sessions are out of reach: a command on an in-process store (no REDIS_URL) sees none of a
   * running server's. They are left as they are, and the result says so.
   */
  endSessions: boolean;
}

export type SessionsEnding =
  | { ended: true; sessions: number; grants: number }
  | { ended: false; reason: 'out_of_reach' }
  /** The factor is off, but the store failed: the person stays signed in until the sessions expire. */
  | { ended: false; reason: 'store_unavailable'; error: DependencyUnavailable };

export type SecondFactorReset =
  | { ok: false; reason: 'unknown_account' }
  /** There was no second factor: nothing changed. */
  | { ok: true; user: User; removed: 'nothing' }
  /** One was being set up and never confirmed: the setup was forgotten, and nothing else changes. */
  | { ok: true; user: User; removed: 'unfinished_setup' }
  /**
   * `requiredByRole`: the next sign-in asks to set one up again. `notice`: the mail to the person, which the door
   * sends and reports on (the reset stands without it).
   */
  | { ok: true; user: User; removed: 'second_factor'; unusedRecoveryCodesRemoved: number; requiredByRole: boolean; sessions: SessionsEnding; notice: Notice };

export interface SecondFactorResetFlow {
  reset(request: SecondFactorResetRequest): Promise<SecondFactorReset>;
}

export function createSecondFactorResetFlow(dependencies: SecondFactorResetDependencies): SecondFactorResetFlow {
  const { users, secondFactor, accountSessions, auditTrail, mailer, links, clock } = dependencies;

  async function endSessions(user: User, reachable: boolean, actor: AuditActor): Promise<SessionsEnding> {
    if (!reachable) return { ended: false, reason: 'out_of_reach' };
    try {
      // The administrator's act, not the person's "sign out everywhere".
      const ended = await accountSessions.endAll(user.id, { reason: 'ended_by_administrator', actor });
      return { ended: true, ...ended };
    } catch (error) {
      if (!(error instanceof DependencyUnavailable)) throw error;
      return { ended: false, reason: 'store_unavailable', error };
    }
  }

  return {
    async reset({ email, actor, endSessions: sessionsReachable }) {
      const user = await users.findByEmail(email);
      if (!user) return { ok: false, reason: 'unknown_account' };
      const { enabled, recoveryCodesLeft } = await secondFactor.status(user.id);
      // Also forgets a setup that was started and never confirmed.
      const removed = await secondFactor.removeForAccountRecovery(user.id);
      if (!removed) return { ok: true, user, removed: 'nothing' };
      const changedAt = clock.now();
      await auditTrail.record({
        action: 'second_factor.removed', outcome: 'success', actor,
        subjectUserId: user.id, subjectEmail: user.email, detail: { method: 'totp', reason: 'admin_reset', wasEnabled: enabled },
      });
      if (!enabled) return { ok: true, user, removed: 'unfinished_setup' };
      const { requiredByRole } = await secondFactor.loginRequirement(user.id);
      // A session signed in with the factor keeps loa:2 (and single sign-on to clients that require it)
      // without it: every session ends and every grant goes, as "sign out everywhere" does.
      const sessions = await endSessions(user, sessionsReachable, actor);
      return {
        ok: true, user, removed: 'second_factor', unusedRecoveryCodesRemoved: recoveryCodesLeft, requiredByRole, sessions,
        notice: () => mailer.send({
          to: user.email, template: 'second-factor-changed',
          data: { change: 'disabled', byAdministrator: true, changedAt, link: links.forgotPassword },
        }),
      };
    },
  };
}
