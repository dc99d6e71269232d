// What the account flows need from beyond accounts/, described by its shape: the engine's side (src/oidc/)
// and the web side both import accounts/, so the flows name neither; the composition root passes the real ones.
import type { AuditActor } from '../../audit/audit.ts';

/** Where the request that started a flow came from, for the audit trail; a command at a terminal has none. */
export interface RequestOrigin {
  ip?: string | undefined;
  userAgent?: string | undefined;
}

/** Why a flow ends an account's sessions (the same names src/oidc/account-sessions.ts writes to the audit trail). */
export type SessionEndReason = 'password_reset' | 'password_changed' | 'email_restored' | 'signed_out_everywhere' | 'account_disabled' | 'account_deleted' | 'ended_by_administrator';

/**
 * The engine's side (src/oidc/account-sessions.ts): ends every session of the account and revokes every grant
 * (with the tokens issued under it), but the session in `keep`; it audits each of those itself, as the act of
 * `actor` (an administrator's act is theirs; the person's own by default).
 */
export interface SessionEnder {
  endAll(accountId: string, options: { keep?: string | undefined; reason: SessionEndReason; request?: RequestOrigin; actor?: AuditActor }): Promise<{ sessions: number; grants: number }>;
}

/** The absolute links the flows put in mail; the paths are the web side's route table (src/web/paths.ts). */
export interface AccountLinks {
  /** Where a forgotten password is asked for: the way out that every security notice offers. */
  forgotPassword: string;
  /** The account console. */
  account: string;
  /** The emailed link that confirms an address (at sign-up, or a new one asked for). */
  verifyEmail(token: string): string;
  /** The link, sent to a new address, that confirms a change of email address to it. */
  confirmEmailChange(token: string): string;
  /** The emailed link that sets a new password. */
  resetPassword(token: string): string;
  /** The link, sent to the previous address, that undoes a change of email address. */
  restoreEmail(token: string): string;
}

/** A limit's answer (src/limits/): go on, or wait; `lockedNow` marks the attempt that set a lock. */
export type AttemptDecision =
  | { allowed: true }
  | { allowed: false; reason: 'rate_limited' | 'locked'; retryAfterSeconds: number; lockedNow: boolean };

/** The second factor's lockout (src/limits/second-factor-guard.ts), counted per account and IP. */
export interface CodeAttempts {
  /** Before a code is checked: counted, or refused while over a limit or locked. */
  beforeAttempt(attempt: { accountId: string; ip: string }): Promise<AttemptDecision>;
  /** After a wrong code: locks once the threshold is reached. */
  afterFailure(attempt: { accountId: string; ip: string }): Promise<AttemptDecision>;
  afterSuccess(attempt: { accountId: string; ip: string }): Promise<void>;
}

/**
 * Mail a flow has decided to send, handed back for its door to send after its answer: a page must neither
 * wait for the mail server nor show by its timing what was sent. The door sends it, or says it could not.
 */
export type Notice = () => Promise<unknown>;
