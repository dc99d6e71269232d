// Error mapping for Gatehouse's own routes: a page for people, JSON for programs, the right status,
// and never a stack trace. Dependency outages become 503s that say which dependency is down.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { DependencyUnavailable, RETRY_AFTER_OUTAGE_SECONDS } from '../../errors.ts';
import { SignInExpired } from '../../accounts/flows/sign-in.ts';
import { isSessionNotFound, shownProtocolError } from '../../oidc/errors.ts';
import { HttpError, SignInInterrupted, TooManyAttempts } from '../kit/errors.ts';
import { PATHS } from '../paths.ts';
import { upperFirst, type Views } from '../kit/views.ts';

interface Answer {
  status: number;
  error: string;
  title: string;
  message: string;
  /** The page that shows it ('error' unless said). */
  template?: string;
  retryAfterSeconds?: number;
  /** A link onwards, on the page. */
  next?: { href: string; label: string };
}

function answerFor(error: unknown): Answer {
  if (error instanceof TooManyAttempts) {
    return { status: 429, error: 'invalid_request', title: 'Too many attempts', message: error.message, template: 'too-many-attempts', retryAfterSeconds: error.retryAfterSeconds };
  }
  if (error instanceof HttpError && error.status === 404) {
    return { status: 404, error: 'not_found', title: 'Page not found', message: error.message };
  }
  if (error instanceof HttpError) {
    return { status: error.status, error: error.status === 403 ? 'forbidden' : 'invalid_request', title: 'Something is not right', message: error.message };
  }
  if (error instanceof DependencyUnavailable) {
    return { status: 503, error: 'temporarily_unavailable', title: 'Gatehouse is temporarily unavailable', message: `${upperFirst(error.message)}. Please try again in a moment.` };
  }
  if (error instanceof SignInInterrupted) {
    return { status: 400, error: 'session_not_found', title: 'This sign-in was interrupted', message: error.message, next: { href: error.restartUrl, label: 'Start signing in again' } };
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
      // Nothing answered (no route, and not the engine's either): a page saying so, not Koa's plain "Not Found".
      if (ctx.status === 404 && ctx.body == null) throw new HttpError(404, 'There is nothing at this address. Check the link, or go back to the application.');
    } catch (error) {
      const answer = answerFor(error);
      if (answer.status >= 500) logger.error({ err: error, path: ctx.path, method: ctx.method }, 'request failed');
      ctx.status = answer.status;
      ctx.set('Cache-Control', 'no-store');
      if (answer.retryAfterSeconds !== undefined) ctx.set('Retry-After', String(answer.retryAfterSeconds));
      else if (answer.status === 503) ctx.set('Retry-After', String(RETRY_AFTER_OUTAGE_SECONDS));
      if (ctx.accepts('json', 'html') === 'html') {
        ctx.type = 'html';
        // A sign-in that is gone has no page to go back to.
        const back = answer.error === 'session_not_found' ? {} : wayBack(ctx.path);
        ctx.body = views.render(answer.template ?? 'error', { title: answer.title, message: answer.message, code: answer.error, next: answer.next, ...back });
      } else {
        ctx.body = { error: answer.error, error_description: answer.message };
      }
    }
  };
}

/** A path under a sign-in's pages, and the sign-in's uid. */
const INTERACTION_PAGE = new RegExp(`^${PATHS.interaction.replace(':uid', '([\\w-]+)')}`);

/** Where a page about a refusal leads back to: the sign-in it interrupted, or the account console. */
function wayBack(path: string): { uid?: string; account?: true } {
  const uid = INTERACTION_PAGE.exec(path)?.[1];
  if (uid) return { uid };
  return path === PATHS.account || path.startsWith(`${PATHS.account}/`) ? { account: true } : {};
}

function isHttpClientError(error: unknown): error is { status: number } {
  const status = (error as { status?: unknown } | null)?.status;
  return typeof status === 'number' && status >= 400 && status < 500;
}
