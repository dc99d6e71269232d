// Brute-force protection for password login: rate limits per IP and per account+IP, and a lockout
// per account after repeated failures (growing delay). Accounts are counted by normalized email
// whether or not the account exists, so a lockout never tells anyone which emails are registered.
import { createHash } from 'node:crypto';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../config/index.ts';
import { normalizeEmail } from '../accounts/users.ts';
import type { CounterBackend } from './backend.ts';
import { ALLOWED, wholeSeconds, type LimitDecision, type RateLimits } from './rate-limits.ts';

/** Failures and past lockouts are remembered this long (from the first one) before counting starts over. */
const MEMORY_SECONDS = 24 * 3600;

export interface LoginAttempt {
  email: string;
  ip: string;
}

export class LoginGuard {
  readonly #backend: CounterBackend;
  readonly #rates: RateLimits;
  readonly #lockout: Config['limits']['lockout'];
  readonly #failures: RateLimiterAbstract;
  readonly #lockouts: RateLimiterAbstract;
  readonly #locks: RateLimiterAbstract;

  constructor(backend: CounterBackend, rates: RateLimits, lockout: Config['limits']['lockout']) {
    this.#backend = backend;
    this.#rates = rates;
    this.#lockout = lockout;
    this.#failures = backend.counter({ name: 'login-failures', points: lockout.threshold, seconds: MEMORY_SECONDS });
    this.#lockouts = backend.counter({ name: 'login-lockouts', points: 1_000_000, seconds: MEMORY_SECONDS });
    // Only ever set with block(): a key present with more than one point means "locked until it expires".
    this.#locks = backend.counter({ name: 'login-lock', points: 1, seconds: 1 });
  }

  /** Before checking a password: counts the attempt and refuses it when over a limit or while the account is locked. */
  async beforeAttempt(attempt: LoginAttempt): Promise<LimitDecision> {
    const account = accountKey(attempt.email);
    const rated = await this.#rates.consumeAll([
      ['login-ip', attempt.ip],
      ...(account ? [['login-account-ip', `${account}:${attempt.ip}`] as const] : []),
    ]);
    if (!rated.allowed || !account) return rated;
    const lock = await this.#backend.run(() => this.#locks.get(account));
    if (lock && lock.consumedPoints > 1 && lock.msBeforeNext > 0) {
      return { allowed: false, reason: 'locked', retryAfterSeconds: wholeSeconds(lock.msBeforeNext), lockedNow: false };
    }
    return ALLOWED;
  }

  /**
   * After a wrong password (or an unknown email): counts the failure, and locks the account once
   * the threshold is reached. `lockedNow: true` is the moment to record "account locked".
   */
  async afterFailure(attempt: LoginAttempt): Promise<LimitDecision> {
    const account = accountKey(attempt.email);
    if (!account) return ALLOWED;
    const failures = await this.#backend.run(() => this.#failures.penalty(account));
    if (failures.consumedPoints < this.#lockout.threshold) return ALLOWED;
    // Concurrent failures may both get here; the worst case is one extra doubling.
    await this.#backend.run(() => this.#failures.delete(account));
    const lockouts = await this.#backend.run(() => this.#lockouts.penalty(account));
    const seconds = lockSeconds(lockouts.consumedPoints, this.#lockout);
    await this.#backend.run(() => this.#locks.block(account, seconds));
    return { allowed: false, reason: 'locked', retryAfterSeconds: seconds, lockedNow: true };
  }

  /** After a successful login: the account's failures, lockout history and account+IP attempts are forgiven. */
  async afterSuccess(attempt: LoginAttempt): Promise<void> {
    const account = accountKey(attempt.email);
    if (!account) return;
    await this.#backend.run(() => Promise.all([this.#failures.delete(account), this.#lockouts.delete(account)]));
    await this.#rates.reset('login-account-ip', `${account}:${attempt.ip}`);
  }
}

/** The nth lockout lasts base × 2^(n−1) seconds, capped. */
export function lockSeconds(lockoutNumber: number, { baseSeconds, maxSeconds }: Config['limits']['lockout']): number {
  return Math.min(baseSeconds * 2 ** Math.min(Math.max(lockoutNumber - 1, 0), 30), maxSeconds);
}

/** Counters are keyed by a hash of the normalized email: the store never holds addresses. */
function accountKey(email: string): string | undefined {
  const normalized = normalizeEmail(email);
  return normalized ? createHash('sha256').update(normalized).digest('hex').slice(0, 32) : undefined;
}
