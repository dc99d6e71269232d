// A lockout with a growing delay, shared by password login and the second factor: after `threshold`
// failures for one key, the key is locked for base × 2^(n−1) seconds (capped) on its nth lockout.
// Each family keeps its counters under its own name, so a second-factor lock never locks the password.
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../config/index.ts';
import type { CounterBackend } from './backend.ts';
import { ALLOWED, wholeSeconds, type LimitDecision } from './rate-limits.ts';

/** What #lock consumes of the one-point lock counter. */
const LOCKED_POINTS = 2;

/** Failures and past lockouts are remembered this long (from the first one) before counting starts over. */
const MEMORY_SECONDS = 24 * 3600;

export type LockoutSetting = Config['limits']['lockout'];

export class Lockout {
  readonly #backend: CounterBackend;
  readonly #setting: LockoutSetting;
  readonly #failures: RateLimiterAbstract;
  readonly #lockouts: RateLimiterAbstract;
  readonly #locks: RateLimiterAbstract;

  /** `name` prefixes the counters: `<name>-failures`, `<name>-lockouts`, `<name>-lock`. */
  constructor(backend: CounterBackend, name: string, setting: LockoutSetting) {
    this.#backend = backend;
    this.#setting = setting;
    this.#failures = backend.counter({ name: `${name}-failures`, points: setting.threshold, seconds: MEMORY_SECONDS });
    this.#lockouts = backend.counter({ name: `${name}-lockouts`, points: 1_000_000, seconds: MEMORY_SECONDS });
    // Only ever set by #lock (LOCKED_POINTS or more): a key over its one point means "locked until it expires".
    this.#locks = backend.counter({ name: `${name}-lock`, points: 1, seconds: 1 });
  }

  /**
   * Before checking a credential: ALLOWED, or a refusal while the key is locked. The attempt is counted
   * as a failure now, before the check, so that attempts sent all at once cannot all pass a lock that
   * only the slowest of them would set: at most `threshold` credentials are tried per lockout.
   */
  async begin(key: string): Promise<LimitDecision> {
    const locked = await this.#currentLock(key);
    if (locked) return locked;
    const failures = await this.#backend.run(() => this.#failures.penalty(key));
    // Over the threshold with no lock yet: the attempt that reached it is still being checked (or ended
    // in an error). Locked here.
    if (failures.consumedPoints > this.#setting.threshold) return this.#lock(key);
    // Locked since the first look: #lock sets the lock before it clears the count, so an attempt counted
    // after the clearing always sees the lock here. Not a failure, then.
    const lockedMeanwhile = await this.#currentLock(key);
    if (lockedMeanwhile) {
      await this.#backend.run(() => this.#failures.reward(key, 1));
      return lockedMeanwhile;
    }
    return ALLOWED;
  }

  /**
   * After a wrong credential (already counted by begin): at the threshold the key is locked
   * (`lockedNow: true` is the moment to audit it).
   */
  async failure(key: string): Promise<LimitDecision> {
    const failures = await this.#backend.run(() => this.#failures.get(key));
    if (!failures || failures.consumedPoints < this.#setting.threshold) return ALLOWED;
    return this.#lock(key);
  }

  /** After a success: the failures and the lockout history are forgiven (a current lock stays until it ends). */
  async succeeded(key: string): Promise<void> {
    await this.#backend.run(() => Promise.all([this.#failures.delete(key), this.#lockouts.delete(key)]));
  }

  /** Forgets everything about the key, the current lock included (the person proved who they are another way). */
  async forgive(key: string): Promise<void> {
    await this.#backend.run(() => Promise.all([this.#failures.delete(key), this.#lockouts.delete(key), this.#locks.delete(key)]));
  }

  /**
   * Locks the key for its next lockout's length, then clears its failures (in that order: see begin).
   * Concurrent callers may all get here: the lock is taken with one atomic increment, and only the caller
   * that created it clears the count, counts a lockout (one burst doubles the delay once) and is told
   * `lockedNow`.
   */
  async #lock(key: string): Promise<LimitDecision> {
    const existing = await this.#currentLock(key);
    if (existing) return existing;
    const lockouts = await this.#backend.run(() => this.#lockouts.get(key));
    const seconds = lockSeconds((lockouts?.consumedPoints ?? 0) + 1, this.#setting);
    // Two points on a one-point counter: always over it (that is what "locked" reads as), and exactly one
    // caller sees the count at two, the one that created the key with this lockout's length.
    const lock = await this.#backend.run(() => this.#locks.consume(key, LOCKED_POINTS, { customDuration: seconds }).catch((refusal: unknown) => {
      if (refusal instanceof RateLimiterRes) return refusal;
      throw refusal;
    }));
    if (lock.consumedPoints !== LOCKED_POINTS) {
      return { allowed: false, reason: 'locked', retryAfterSeconds: wholeSeconds(lock.msBeforeNext), lockedNow: false };
    }
    await this.#backend.run(() => this.#failures.delete(key));
    await this.#backend.run(() => this.#lockouts.penalty(key));
    return { allowed: false, reason: 'locked', retryAfterSeconds: seconds, lockedNow: true };
  }

  async #currentLock(key: string): Promise<LimitDecision | undefined> {
    const lock = await this.#backend.run(() => this.#locks.get(key));
    if (lock && lock.consumedPoints > 1 && lock.msBeforeNext > 0) {
      return { allowed: false, reason: 'locked', retryAfterSeconds: wholeSeconds(lock.msBeforeNext), lockedNow: false };
    }
    return undefined;
  }
}

/** The nth lockout lasts base × 2^(n−1) seconds, capped. */
export function lockSeconds(lockoutNumber: number, { baseSeconds, maxSeconds }: LockoutSetting): number {
  return Math.min(baseSeconds * 2 ** Math.min(Math.max(lockoutNumber - 1, 0), 30), maxSeconds);
}
