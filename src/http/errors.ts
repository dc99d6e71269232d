// Error mapping for Gatehouse's own routes: a page for people, JSON for programs, the right status,
// and never a stack trace. Dependency outages become 503s that say which dependency is down.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { DependencyUnavailable, RETRY_AFTER_OUTAGE_SECONDS } from '../errors.ts';
import { SignInExpired } from '../accounts/flows/sign-in.ts';
import type { LimitDecision } from '../limits/index.ts';
import { isSessionNotFound, shownProtocolError } from '../oidc/errors.ts';
import { inWords } from './rate-limits.ts';
import { upperFirst, type Views } from './views.ts';

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

interface Answer {
  status: number;
  error: string;
  title: string;
  message: string;
  /** The page that shows it ('error' unless said). */
  template?: string;
  retryAfterSeconds?: number;
}

function answerFor(error: unknown): Answer {
  if (error instanceof TooManyAttempts) {
    return { status: 429, error: 'invalid_request', title: 'Too many attempts', message: error.message, template: 'too-many-attempts', retryAfterSeconds: error.retryAfterSeconds };
  }
  if (error instanceof HttpError) {
    return { status: error.status, error: error.status === 403 ? 'forbidden' : 'invalid_request', title: 'Something is not right', message: error.message };
  }
  if (error instanceof DependencyUnavailable) {
    return { status: 503, error: 'temporarily_unavailable', title: 'Gatehouse is temporarily unavailable', message: `${upperFirst(error.message)}. Please try again in a moment.` };
  }
  if (isSessionNotFound(error) || error instanceof SignInExpired) {
    return { status: 400, error: 'session_not_found', title: 'This sign-in has expired', message: 'Go back to the application and sign in again.' };
  }
  const shown = shownProtocolError(error);
  if (shown) {
    const title = shown.status === 503 ? 'Gatehouse is temporarily unavailable' : 'Something is not right';
    return { status: shown.status, error: shown.error, title, message: shown.description };
  }
  if (isHttpClientError(error)) {
    return { status: error.status, error: 'invalid_request', title: 'Something is not right', message: 'The request could not be read.' };
  }
  return { status: 500, error: 'server_error', title: 'Something went wrong', message: 'Something went wrong on our side. Please try again.' };
}

export function errorPages(views: Views, logger: Logger) {
  return async function mapErrors(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
    } catch (error) {
      const answer = answerFor(error);
      if (answer.status >= 500) logger.error({ err: error, path: ctx.path, method: ctx.method }, 'request failed');
      ctx.status = answer.status;
      ctx.set('Cache-Control', 'no-store');
      if (answer.retryAfterSeconds !== undefined) ctx.set('Retry-After', String(answer.retryAfterSeconds));
      else if (answer.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_OUTAGE_SECONDS));
      if (ctx.accepts('json', 'html') === 'html') {
        ctx.type = 'html';
        ctx.body = views.render(answer.template ?? 'error', { title: answer.title, message: answer.message, code: answer.error, ...wayBack(ctx.path) });
      } else {
        ctx.body = { error: answer.error, error_description: answer.message };
      }
    }
  };
}

/** Where a page about a refusal leads back to: the sign-in it interrupted, or the account console. */
function wayBack(path: string): { uid?: string; account?: true } {
  const uid = /^\/interaction\/([\w-]+)/.exec(path)?.[1];
  if (uid) return { uid };
  return path === '/account' || path.startsWith('/account/') ? { account: true } : {};
}

function isHttpClientError(error: unknown): error is { status: number } {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}
