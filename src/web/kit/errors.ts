// The errors pages throw, written for the person who sees them; middleware/error-pages.ts maps each to its
// status and page (or JSON), in one place.
import type { LimitDecision } from '../../limits/index.ts';
import { inWords } from './in-words.ts';

/** An error whose message is written for the person who sees it. */
export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * A rate limit or a lockout refused the request: 429 with Retry-After and a page saying when to try again,
 * the same words for both (and for an existing account and an unknown email). The page has no form, so it
 * needs no CSRF token and no form-action beyond the default CSP. src/limits/ decides; handlers throw this.
 */
export class TooManyAttempts extends Error {
  override name = 'TooManyAttempts';
  readonly retryAfterSeconds: number;
  /** What is paused, as a gerund: "signing in" (the default), "sending password reset links", ... */
  readonly action: string;

  constructor(refusal: Extract<LimitDecision, { allowed: false }>, options: { action?: string | undefined } = {}) {
    const action = options.action ?? 'signing in';
    super(`For your security, ${action} is paused. Please try again ${inWords(refusal.retryAfterSeconds)}.`);
    this.retryAfterSeconds = refusal.retryAfterSeconds;
    this.action = action;
  }
}

/**
 * A sign-in page the engine refuses because this browser signed out, or in as someone else, in another tab since
 * the sign-in began: it can only start again, from the application's own request (`restartUrl`).
 */
export class SignInInterrupted extends Error {
  override name = 'SignInInterrupted';
  readonly restartUrl: string;

  constructor(restartUrl: string) {
    super('You signed out, or signed in as someone else, in another tab or window after this sign-in began. Start it again.');
    this.restartUrl = restartUrl;
  }
}
