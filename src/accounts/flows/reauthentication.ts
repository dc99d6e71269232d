// The current password asked again before a sensitive change (password, email, second factor). A borrowed,
// signed-in browser must not become a way to guess it: each check is counted per account (never forgiven), a
// wrong one counts toward the sign-in lockout like a failed login, and is audited. As at sign-in, the owner's own
// browser (a trusted device, named by the door) has a lockout of its own: others' guesses cannot stop the owner.
import type { AuditTrail } from '../../audit/audit.ts';
import type { User, UserService } from '../users.ts';
import type { AttemptDecision, RequestOrigin } from './dependencies.ts';
import type { PasswordAttempts } from './sign-in.ts';

export interface ReauthenticationDependencies {
  users: Pick<UserService, 'verifyPassword'>;
  /** The sign-in's lockout: a locked account refuses the right password here too. */
  passwordAttempts: PasswordAttempts;
  /** Checks per account, over every IP (the `password-check-account` limit). */
  checksPerAccount(accountId: string): Promise<AttemptDecision>;
  auditTrail: Pick<AuditTrail, 'record'>;
}

/** What the password is asked for, named in the audit trail. */
export type ReauthenticationPurpose = 'change_password' | 'change_email' | 'enable_second_factor' | 'disable_second_factor';

export type PasswordCheck =
  | { ok: true }
  /**
   * `refusal`: over a limit or locked out (show the 429 page); otherwise the password was wrong or missing.
   * `untrustDevice`: the trusted device reached its own lock and is trusted no more (as at sign-in).
   */
  | { ok: false; refusal?: Extract<AttemptDecision, { allowed: false }>; untrustDevice?: boolean };

export interface ReauthenticationFlow {
  /** `request.device`: this browser's trusted device of the account, as the door verified its cookie. */
  checkPassword(user: Pick<User, 'id' | 'email'>, password: string, purpose: ReauthenticationPurpose, request: RequestOrigin & { ip: string; device?: string | undefined }): Promise<PasswordCheck>;
}

export function createReauthenticationFlow(dependencies: ReauthenticationDependencies): ReauthenticationFlow {
  const { users, passwordAttempts, auditTrail } = dependencies;
  return {
    async checkPassword(user, password, purpose, request) {
      const perAccount = await dependencies.checksPerAccount(user.id);
      if (!perAccount.allowed) return { ok: false, refusal: perAccount };
      const attempt = { email: user.email, ip: request.ip, device: request.device };
      const seen = { subjectUserId: user.id, subjectEmail: user.email, ip: request.ip, userAgent: request.userAgent };
      const before = await passwordAttempts.beforeAttempt(attempt);
      if (!before.allowed) {
        if (before.lockedNow) await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seen, detail: { seconds: before.retryAfterSeconds, during: purpose } });
        return { ok: false, refusal: before, untrustDevice: before.trustedDevice };
      }
      if (password && await users.verifyPassword(user.id, password)) {
        await passwordAttempts.afterSuccess(attempt);
        return { ok: true };
      }
      const after = await passwordAttempts.afterFailure(attempt);
      await auditTrail.record({ action: 'reauthentication.failed', outcome: 'failure', ...seen, detail: { purpose } });
      if (!after.allowed && after.lockedNow) {
        await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seen, detail: { seconds: after.retryAfterSeconds, during: purpose } });
      }
      return after.allowed ? { ok: false } : { ok: false, refusal: after, untrustDevice: after.trustedDevice };
    },
  };
}
