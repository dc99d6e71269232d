// Named rate limits ("N attempts per window per key"). Adding a limit for a new endpoint is one
// entry in RATE_LIMITS plus its setting in config; callers ask `rateLimits.consume(name, key)`.
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RateLimiterRes } from 'rate-limiter-flexible';
import type { Config, RateLimitSetting } from '../config/index.ts';
import type { CounterBackend } from './backend.ts';

/** Every rate limit, named by what it counts; the value picks its setting from config. */
export const RATE_LIMITS = {
  'login-ip': (limits) => limits.loginPerIp,
  'login-account-ip': (limits) => limits.loginPerAccountAndIp,
  'token-client': (limits) => limits.tokenPerClient,
  'token-ip': (limits) => limits.tokenPerIp,
  'authorization-ip': (limits) => limits.authorizationPerIp,
  'signup-ip': (limits) => limits.signupPerIp,
  'signup-account': (limits) => limits.signupPerAccount,
  'signup-account-ip': (limits) => limits.signupPerAccountAndIp,
  'reset-ip': (limits) => limits.resetPerIp,
  'reset-account-ip': (limits) => limits.resetPerAccountAndIp,
  'reset-account': (limits) => limits.resetPerAccount,
  'emailed-link-ip': (limits) => limits.emailedLinkPerIp,
  'email-change-account': (limits) => limits.emailChangePerAccount,
  'verification-resend-ip': (limits) => limits.verificationResendPerIp,
  'verification-resend-account': (limits) => limits.verificationResendPerAccount,
  'verification-resend-account-ip': (limits) => limits.verificationResendPerAccountAndIp,
  'second-factor-ip': (limits) => limits.secondFactorPerIp,
  'second-factor-account-ip': (limits) => limits.secondFactorPerAccountAndIp,
  'password-check-account': (limits) => limits.passwordCheckPerAccount,
  'admin-api-ip': (limits) => limits.adminApiPerIp,
} satisfies Record<string, (limits: Config['limits']) => RateLimitSetting>;

export type RateLimitName = keyof typeof RATE_LIMITS;

/** What a limit says about one attempt. */
export type LimitDecision =
  | { allowed: true }
  | { allowed: false; reason: 'rate_limited' | 'locked'; retryAfterSeconds: number; lockedNow: boolean };

export const ALLOWED: LimitDecision = { allowed: true };

export class RateLimits {
  readonly #backend: CounterBackend;
  readonly #limiters: Map<RateLimitName, RateLimiterAbstract>;
  readonly #onRefused: ((name: RateLimitName) => void) | undefined;

  /** `onRefused`: told of each refusal (for metrics). */
  constructor(backend: CounterBackend, limits: Config['limits'], onRefused?: (name: RateLimitName) => void) {
    this.#backend = backend;
    this.#onRefused = onRefused;
    this.#limiters = new Map(Object.entries(RATE_LIMITS).map(([name, setting]) => {
      const { points, seconds } = setting(limits);
      return [name as RateLimitName, backend.counter({ name, points, seconds })];
    }));
  }

  /** Counts one attempt against a limit; refused once the window's points are spent. */
  async consume(name: RateLimitName, key: string): Promise<LimitDecision> {
    const limiter = this.#limiters.get(name)!;
    try {
      await this.#backend.run(() => limiter.consume(key));
      return ALLOWED;
    } catch (error) {
      if (error instanceof RateLimiterRes) {
        this.#onRefused?.(name);
        return { allowed: false, reason: 'rate_limited', retryAfterSeconds: wholeSeconds(error.msBeforeNext), lockedNow: false };
      }
      throw error;
    }
  }

  /** Consumes each limit in turn and returns the first refusal (so a refused IP does not spend account points). */
  async consumeAll(checks: ReadonlyArray<readonly [RateLimitName, string]>): Promise<LimitDecision> {
    for (const [name, key] of checks) {
      const decision = await this.consume(name, key);
      if (!decision.allowed) return decision;
    }
    return ALLOWED;
  }

  /** Gives back one attempt counted a moment ago that turned out not to count (no refusal is undone). */
  async giveBack(name: RateLimitName, key: string): Promise<void> {
    const limiter = this.#limiters.get(name)!;
    await this.#backend.run(() => limiter.reward(key, 1));
  }

  /** Forgets a key's attempts (after a success that proves the attempts were legitimate). */
  async reset(name: RateLimitName, key: string): Promise<void> {
    const limiter = this.#limiters.get(name)!;
    await this.#backend.run(() => limiter.delete(key));
  }
}

/** Retry-After is whole seconds, at least 1 (0 would invite an immediate retry that is still refused). */
export function wholeSeconds(milliseconds: number): number {
  return Math.max(1, Math.ceil(milliseconds / 1000));
}
