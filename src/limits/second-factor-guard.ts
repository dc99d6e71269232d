// Brute-force protection for second-factor codes (authenticator codes and recovery codes, at login and
// on account pages): rate limits per IP and per account+IP, and a lockout of the account's second
// factor after repeated wrong codes (growing delay, its own counters: the password still works).
import type { Config } from '../config/index.ts';
import type { CounterBackend } from './backend.ts';
import { Lockout } from './lockout.ts';
import { networkOf } from './network.ts';
import type { LimitDecision, RateLimits } from './rate-limits.ts';

export interface SecondFactorAttempt {
  /** The account's id (the person is known by now: they passed the password or are signed in). */
  accountId: string;
  ip: string;
}

export class SecondFactorGuard {
  readonly #rates: RateLimits;
  readonly #lockout: Lockout;

  constructor(backend: CounterBackend, rates: RateLimits, lockout: Config['limits']['lockout']) {
    this.#rates = rates;
    this.#lockout = new Lockout(backend, 'second-factor', lockout);
  }

  /**
   * Before checking a code: counts the attempt and refuses it when over a limit or while the second
   * factor is locked. An allowed attempt counts as a wrong code until afterSuccess() says otherwise.
   */
  async beforeAttempt(attempt: SecondFactorAttempt): Promise<LimitDecision> {
    const rated = await this.#rates.consumeAll([
      ['second-factor-ip', networkOf(attempt.ip)],
      ['second-factor-account-ip', `${attempt.accountId}:${networkOf(attempt.ip)}`],
    ]);
    if (!rated.allowed) return rated;
    return this.#lockout.begin(attempt.accountId);
  }

  /** After a wrong code: `lockedNow: true` when this failure locked the second factor. */
  afterFailure(attempt: SecondFactorAttempt): Promise<LimitDecision> {
    return this.#lockout.failure(attempt.accountId);
  }

  /** After a right code: failures, lockout history and the account+IP attempts are forgiven. */
  async afterSuccess(attempt: SecondFactorAttempt): Promise<void> {
    await this.#lockout.succeeded(attempt.accountId);
    await this.#rates.reset('second-factor-account-ip', `${attempt.accountId}:${networkOf(attempt.ip)}`);
  }

  /** Lifts the lock and forgets the wrong codes and past lockouts (an administrator unlocked the account). */
  forgive(accountId: string): Promise<void> {
    return this.#lockout.forgive(accountId);
  }
}
