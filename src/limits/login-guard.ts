// Brute-force protection for password login: rate limits per IP and per account+IP, and a lockout per
// account (by normalized email, existing or not, so a lock tells nothing) after repeated failures — except
// for a browser that proved it is the account holder's (a trusted device), which has a lockout of its own.
import { createHash } from 'node:crypto';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../config/index.ts';
import { normalizeEmail } from '../accounts/users.ts';
import type { CounterBackend } from './backend.ts';
import { Lockout } from './lockout.ts';
import { networkOf } from './network.ts';
import { ALLOWED, type LimitDecision, type RateLimits } from './rate-limits.ts';

export { lockSeconds } from './lockout.ts';

/**
 * The longest a device stays trusted after the proof that made it so. Long, because a lockout by someone
 * else is exactly when the owner needs it; capped, because a device cookie is a bearer credential.
 */
export const TRUSTED_DEVICE_SECONDS = 180 * 24 * 3600;

export interface LoginAttempt {
  email: string;
  ip: string;
  /**
   * The id of a trusted device of this email (a browser that signed in with the right password or reset it
   * through the emailed link), as the HTTP layer verified it. Its attempts are counted against its own
   * lockout, so wrong passwords sent from elsewhere — an attacker's — cannot lock the owner out.
   */
  device?: string | undefined;
}

/** A decision about a login attempt; `trustedDevice`: it was counted against a trusted device, not the account. */
export type LoginDecision = LimitDecision & { trustedDevice: boolean };

export class LoginGuard {
  readonly #backend: CounterBackend;
  readonly #rates: RateLimits;
  readonly #lockout: Lockout;
  readonly #deviceLockout: Lockout;
  readonly #forgottenDevices: RateLimiterAbstract;

  constructor(backend: CounterBackend, rates: RateLimits, lockout: Config['limits']['lockout']) {
    this.#backend = backend;
    this.#rates = rates;
    // Counters login-failures, login-lockouts and login-lock.
    this.#lockout = new Lockout(backend, 'login', lockout);
    // The same threshold and delays per trusted device: login-device-failures, login-device-lockouts, login-device-lock.
    this.#deviceLockout = new Lockout(backend, 'login-device', lockout);
    // A device that reaches its lock is never trusted again, for as long as its proof could last: a stolen
    // device cookie buys `threshold` guesses once, then its browser is under the account's lockout like any other.
    this.#forgottenDevices = backend.counter({ name: 'login-device-forgotten', points: 1, seconds: TRUSTED_DEVICE_SECONDS });
  }

  /**
   * Before checking a password: counts the attempt and refuses it when over a rate limit or while locked —
   * the account, or for a trusted device only the device (the account's lock does not refuse it). An
   * allowed attempt counts as a failure until afterSuccess() says otherwise.
   */
  async beforeAttempt(attempt: LoginAttempt): Promise<LoginDecision> {
    const account = accountKey(attempt.email);
    const network = networkOf(attempt.ip);
    const rated = await this.#rates.consumeAll([
      ['login-ip', network],
      ...(account ? [['login-account-ip', `${account}:${network}`] as const] : []),
    ]);
    if (!rated.allowed || !account) return { ...rated, trustedDevice: false };
    const device = await this.#trustedDevice(account, attempt.device);
    if (!device) return { ...await this.#lockout.begin(account), trustedDevice: false };
    return this.#onDevice(device, await this.#deviceLockout.begin(device));
  }

  /**
   * After a wrong password (or an unknown email): locks the account — or the trusted device, which is then
   * forgotten — once the threshold is reached. `lockedNow: true` is the moment to record "locked".
   */
  async afterFailure(attempt: LoginAttempt): Promise<LoginDecision> {
    const account = accountKey(attempt.email);
    if (!account) return { ...ALLOWED, trustedDevice: false };
    // A device forgotten by a concurrent attempt since beforeAttempt goes to the account here: failure() only
    // reads the account's count (it adds nothing), so at most it sets a lock its own attempts had earned.
    const device = await this.#trustedDevice(account, attempt.device);
    if (!device) return { ...await this.#lockout.failure(account), trustedDevice: false };
    return this.#onDevice(device, await this.#deviceLockout.failure(device));
  }

  /**
   * After the right password: the failures and lockout history of what the attempt was counted against (the
   * account, or the trusted device) and the account+IP attempts are forgiven. A trusted device's success
   * leaves the account's counters alone: they count guesses from elsewhere, which it says nothing about.
   */
  async afterSuccess(attempt: LoginAttempt): Promise<void> {
    const account = accountKey(attempt.email);
    if (!account) return;
    const device = await this.#trustedDevice(account, attempt.device);
    if (device) await this.#deviceLockout.succeeded(device);
    else await this.#lockout.succeeded(account);
    await this.#rates.reset('login-account-ip', `${account}:${networkOf(attempt.ip)}`);
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

  /** The device's counter key, if there is a device and it was not forgotten. */
  async #trustedDevice(account: string, device: string | undefined): Promise<string | undefined> {
    if (!device) return undefined;
    const key = `${account}:${device}`;
    const forgotten = await this.#backend.run(() => this.#forgottenDevices.get(key));
    return forgotten && forgotten.consumedPoints > 0 ? undefined : key;
  }

  /** A device's decision; a device lock (reached now, or by attempts sent at once) forgets the device. */
  async #onDevice(device: string, decision: LimitDecision): Promise<LoginDecision> {
    if (!decision.allowed && decision.reason === 'locked') await this.#backend.run(() => this.#forgottenDevices.penalty(device));
    return { ...decision, trustedDevice: true };
  }
}

/** Counters are keyed by a hash of the normalized email: the store never holds addresses. */
export function accountKey(email: string): string | undefined {
  const normalized = normalizeEmail(email);
  return normalized ? createHash('sha256').update(normalized).digest('hex').slice(0, 32) : undefined;
}
