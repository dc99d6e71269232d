// Rate limits and login lockout, built from config: the HTTP layer asks these for decisions and only
// maps them to responses (429 + Retry-After). Nothing here knows about Koa.
import type { Config } from '../config/index.ts';
import { createCounterBackend } from './backend.ts';
import type { CallObserver } from '../dependency-calls.ts';
import { LoginGuard } from './login-guard.ts';
import { SecondFactorGuard } from './second-factor-guard.ts';
import { RateLimits, type RateLimitName } from './rate-limits.ts';

export { RATE_LIMITS, RateLimits, type LimitDecision, type RateLimitName } from './rate-limits.ts';
export { LoginGuard, TRUSTED_DEVICE_SECONDS, lockSeconds, type LoginAttempt, type LoginDecision } from './login-guard.ts';
export { SecondFactorGuard, type SecondFactorAttempt } from './second-factor-guard.ts';
export { networkOf } from './network.ts';

export interface Limits {
  rates: RateLimits;
  login: LoginGuard;
  /** Wrong authenticator or recovery codes: rate limits and a lockout of the account's second factor. */
  secondFactor: SecondFactorGuard;
  close(): Promise<void>;
}

/** `onError`: background connection errors; `onRefused`: each attempt a rate limit refuses (for metrics). */
export function createLimits(
  config: Config, onError?: (error: Error) => void, onRefused?: (name: RateLimitName) => void, observe?: CallObserver,
): Limits {
  const backend = createCounterBackend({ redis: config.redis, prefix: config.storePrefix, onError, observe });
  const rates = new RateLimits(backend, config.limits, onRefused);
  return {
    rates,
    login: new LoginGuard(backend, rates, config.limits.lockout),
    secondFactor: new SecondFactorGuard(backend, rates, config.limits.lockout),
    close: () => backend.close(),
  };
}
