// A signed-in person's own second factor: confirming a setup with a code, renewing the recovery codes, turning
// it off. Every code goes through the second-factor lockout, every outcome is audited, every change mailed.
// (The password asked before a setup or before turning it off is the re-authentication's, asked by the door.)
// A setup is confirmed only from the session that started it: the account's unconfirmed secret (shown again
// after a wrong code) is no use to a borrowed browser that did not give the password.
import type { AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { Store } from '../../store/store.ts';
import type { CodeFailure, CodeProof, Enrollment, SecondFactorService } from '../second-factor.ts';
import type { User } from '../users.ts';
import type { AccountLinks, AttemptDecision, CodeAttempts, Notice } from './dependencies.ts';

export interface SecondFactorSettingsDependencies {
  secondFactor: Pick<SecondFactorService, 'startEnrollment' | 'confirmEnrollment' | 'pendingEnrollment' | 'regenerateRecoveryCodes' | 'disable'>;
  /** Which session started a setup, for as long as it may be confirmed. */
  store: Pick<Store, 'get' | 'put' | 'delete'>;
  codeAttempts: CodeAttempts;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** Notices wait in the queue while the mail server is down. */
  mail: Pick<MailQueue, 'deliver'>;
  links: Pick<AccountLinks, 'forgotPassword'>;
  clock: Clock;
}

/** Where a code was typed from: the lockout counts per account and IP. */
export interface CodeRequest {
  ip: string;
  userAgent?: string | undefined;
}

/** How long after the password a setup may be confirmed from the session that started it. */
export const SETUP_WINDOW_SECONDS = 15 * 60;

/** No code may be tried now (too many, or the second factor is locked): the door says when to try again. */
export type TooManyCodes = { ok: false; reason: 'too_many_attempts'; refusal: Extract<AttemptDecision, { allowed: false }> };

export type SetupConfirmation =
  /** `recoveryCodes`: in clear this once. `notice`: the "turned on" mail, for the door to send after its answer. */
  | { ok: true; recoveryCodes: string[]; notice: Notice }
  /** The code was refused; the setup stands, shown again with its QR code. */
  | { ok: false; reason: Exclude<CodeFailure, 'not_enabled'>; enrollment: Enrollment }
  /** Nothing to confirm: already on, or never started (or not by this session, or too long ago). */
  | { ok: false; reason: 'nothing_to_confirm' }
  | TooManyCodes;

export type RecoveryCodesRenewal =
  | { ok: true; recoveryCodes: string[]; notice: Notice }
  | { ok: false; reason: CodeFailure }
  | TooManyCodes;

export type SecondFactorRemoval =
  | { ok: true; notice: Notice }
  | { ok: false; reason: CodeFailure }
  | TooManyCodes;

export interface SecondFactorSettingsFlow {
  /**
   * Starts a setup from a session (the door asked the password): the secret to show, or undefined when there
   * is nothing to start (it is on already).
   */
  startSetup(user: User, sessionUid: string): Promise<Enrollment | undefined>;
  /** Confirms the setup this session started with a code from the new authenticator. */
  confirmSetup(user: User, code: string, request: CodeRequest & { sessionUid: string }): Promise<SetupConfirmation>;
  /** New recovery codes for a code (authenticator or recovery); the old ones stop working. */
  renewRecoveryCodes(user: User, code: string, request: CodeRequest): Promise<RecoveryCodesRenewal>;
  /** Turns it off for a code; the door asked the password first (a wrong one spends no code). */
  turnOff(user: User, code: string, request: CodeRequest): Promise<SecondFactorRemoval>;
}

/**
 * The mail telling the account's address that its second factor changed. "Not you?" leads to a password
 * reset: every change needed the password or a code.
 */
export function secondFactorNotice(
  { mail, links, clock }: Pick<SecondFactorSettingsDependencies, 'mail' | 'links' | 'clock'>,
  user: Pick<User, 'email'>, change: 'enabled' | 'disabled' | 'recovery_codes_renewed',
): Notice {
  const changedAt = clock.now();
  return () => mail.deliver({ to: user.email, template: 'second-factor-changed', data: { change, changedAt, link: links.forgotPassword } });
}

export function createSecondFactorSettingsFlow(dependencies: SecondFactorSettingsDependencies): SecondFactorSettingsFlow {
  const { secondFactor, codeAttempts, auditTrail, store } = dependencies;

  const setupKey = (sessionUid: string) => `account-two-factor-setup:${sessionUid}`;

  const seen = (user: User, request: CodeRequest) => ({ subjectUserId: user.id, subjectEmail: user.email, ip: request.ip, userAgent: request.userAgent });
  const attempt = (user: User, request: CodeRequest) => ({ accountId: user.id, ip: request.ip });

  /** The moment the second factor is locked is an event of its own, as at sign-in. */
  async function auditLockout(user: User, request: CodeRequest, refusal: TooManyCodes['refusal']): Promise<TooManyCodes> {
    if (refusal.lockedNow) await auditTrail.record({ action: 'second_factor.locked_out', outcome: 'failure', ...seen(user, request), detail: { seconds: refusal.retryAfterSeconds } });
    return { ok: false, reason: 'too_many_attempts', refusal };
  }

  /** Counts a code attempt before it is checked; the refusal when no code may be tried now. */
  async function mayTryCode(user: User, request: CodeRequest): Promise<TooManyCodes | undefined> {
    const before = await codeAttempts.beforeAttempt(attempt(user, request));
    return before.allowed ? undefined : auditLockout(user, request, before);
  }

  /** A wrong code: counted toward the lockout and audited; the refusal once the second factor is locked. */
  async function wrongCode(user: User, request: CodeRequest, reason: CodeFailure, during: string): Promise<TooManyCodes | undefined> {
    const after = await codeAttempts.afterFailure(attempt(user, request));
    await auditTrail.record({
      action: 'second_factor.failed', outcome: 'failure', ...seen(user, request),
      detail: { reason, during, ...(!after.allowed && after.lockedNow ? { lockedSeconds: after.retryAfterSeconds } : {}) },
    });
    return after.allowed ? undefined : auditLockout(user, request, after);
  }

  /** A code spent on a change is audited as one spent at sign-in is. */
  function codeUsed(user: User, request: CodeRequest, proof: CodeProof, during: 'recovery_codes' | 'disable'): Promise<void> {
    return auditTrail.record(proof.method === 'recovery_code'
      ? { action: 'recovery_code.used', outcome: 'success', ...seen(user, request), detail: { remaining: proof.recoveryCodesLeft, during } }
      : { action: 'second_factor.used', outcome: 'success', ...seen(user, request), detail: { method: 'totp', during } });
  }

  return {
    async startSetup(user, sessionUid) {
      const enrollment = await secondFactor.startEnrollment(user.id);
      if (enrollment) await store.put(setupKey(sessionUid), user.id, SETUP_WINDOW_SECONDS);
      return enrollment;
    },

    async confirmSetup(user, code, request) {
      const started = await store.get(setupKey(request.sessionUid));
      if (started?.value !== user.id) return { ok: false, reason: 'nothing_to_confirm' };
      const refused = await mayTryCode(user, request);
      if (refused) return refused;
      const result = await secondFactor.confirmEnrollment(user.id, code);
      if (!result.ok) {
        if (result.reason === 'not_enabled') return { ok: false, reason: 'nothing_to_confirm' };
        const enrollment = await secondFactor.pendingEnrollment(user.id);
        if (!enrollment) return { ok: false, reason: 'nothing_to_confirm' };
        return await wrongCode(user, request, result.reason, 'enrollment') ?? { ok: false, reason: result.reason, enrollment };
      }
      await codeAttempts.afterSuccess(attempt(user, request));
      await store.delete([setupKey(request.sessionUid)]);
      await auditTrail.record({ action: 'second_factor.enrolled', outcome: 'success', ...seen(user, request), detail: { method: 'totp', during: 'account' } });
      return { ok: true, recoveryCodes: result.recoveryCodes, notice: secondFactorNotice(dependencies, user, 'enabled') };
    },

    async renewRecoveryCodes(user, code, request) {
      const refused = await mayTryCode(user, request);
      if (refused) return refused;
      const result = await secondFactor.regenerateRecoveryCodes(user.id, code);
      if (!result.ok) {
        if (result.reason === 'not_enabled') return { ok: false, reason: result.reason };
        return await wrongCode(user, request, result.reason, 'recovery_codes') ?? { ok: false, reason: result.reason };
      }
      await codeAttempts.afterSuccess(attempt(user, request));
      await codeUsed(user, request, result.proof, 'recovery_codes');
      await auditTrail.record({ action: 'recovery_codes.regenerated', outcome: 'success', ...seen(user, request) });
      return { ok: true, recoveryCodes: result.recoveryCodes, notice: secondFactorNotice(dependencies, user, 'recovery_codes_renewed') };
    },

    async turnOff(user, code, request) {
      const refused = await mayTryCode(user, request);
      if (refused) return refused;
      const result = await secondFactor.disable(user.id, code);
      if (!result.ok) {
        if (result.reason === 'not_enabled') return { ok: false, reason: result.reason };
        return await wrongCode(user, request, result.reason, 'disable') ?? { ok: false, reason: result.reason };
      }
      await codeAttempts.afterSuccess(attempt(user, request));
      await codeUsed(user, request, result.proof, 'disable');
      await auditTrail.record({ action: 'second_factor.removed', outcome: 'success', ...seen(user, request), detail: { method: 'totp' } });
      return { ok: true, notice: secondFactorNotice(dependencies, user, 'disabled') };
    },
  };
}
