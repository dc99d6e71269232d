// Brute-force protection for password login: rate limits per IP and per account+IP, and a lockout
// per account after repeated failures (growing delay). Accounts are counted by normalized email
// whether or not the account exists, so a lockout never tells anyone which emails are registered.
import { createHash } from 'node:crypto';
import type { Config } from '../config/index.ts';
import { normalizeEmail } from '../accounts/users.ts';
import type { CounterBackend } from './backend.ts';
import { Lockout } from './lockout.ts';
import { ALLOWED, type LimitDecision, type RateLimits } from './rate-limits.ts';

export { lockSeconds } from './lockout.ts';

export interface LoginAttempt {
  email: string;
  ip: string;
}

export class LoginGuard {
  readonly #rates: RateLimits;
  readonly #lockout: Lockout;

  constructor(backend: CounterBackend, rates: RateLimits, lockout: Config['limits']['lockout']) {
    this.#rates = rates;
    // Counters login-failures, login-lockouts and login-lock.
    this.#lockout = new Lockout(backend, 'login', lockout);
  }

  /**
   * Before checking a password: counts the attempt and refuses it when over a limit or while the account
   * is locked. An allowed attempt counts as a failure until afterSuccess() says otherwise.
   */
  async beforeAttempt(attempt: LoginAttempt): Promise<LimitDecision> {
    const account = accountKey(attempt.email);
    const rated = await this.#rates.consumeAll([
      ['login-ip', attempt.ip],
      ...(account ? [['login-account-ip', `${account}:${attempt.ip}`] as const] : []),
    ]);
    if (!rated.allowed || !account) return rated;
    return this.#lockout.begin(account);
  }

  /**
   * After a wrong password (or an unknown email): locks the account once the threshold is reached.
   * `lockedNow: true` is the moment to record "account locked".
   */
  async afterFailure(attempt: LoginAttempt): Promise<LimitDecision> {
    const account = accountKey(attempt.email);
    if (!account) return ALLOWED;
    return this.#lockout.failure(account);
  }

  /** After the right password: the account's failures, lockout history and account+IP attempts are forgiven. */
  async afterSuccess(attempt: LoginAttempt): Promise<void> {
    const account = accountKey(attempt.email);
    if (!account) return;
    await this.#lockout.succeeded(account);
    await this.#rates.reset('login-account-ip', `${account}:${attempt.ip}`);
  }

  /**
   * After a password reset through an emailed link (as Keycloak does): the person proved they own the
   * account, so its failures, lockout history and current lock are forgiven.
   */
  async forgive(email: string): Promise<void> {
    const account = accountKey(email);
    if (!account) return;
    await this.#lockout.forgive(account);
  }
}

/** Counters are keyed by a hash of the normalized email: the store never holds addresses. */
export function accountKey(email: string): string | undefined {
  const normalized = normalizeEmail(email);
  return normalized ? createHash('sha256').update(normalized).digest('hex').slice(0, 32) : undefined;
}
