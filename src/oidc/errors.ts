// Maps Gatehouse's domain errors into oidc-provider's error type, so the engine answers them in the
// protocol's own format (JSON, a page, or a redirect back to the client) instead of a bare 500; and tells
// the rest of Gatehouse what an engine error is, so that only this folder depends on the engine's classes.
import { errors } from 'oidc-provider';
import { DependencyUnavailable } from '../errors.ts';

/** RFC 6749's temporarily_unavailable with HTTP 503: a dependency is down, try again later. */
export class TemporarilyUnavailable extends errors.OIDCProviderError {
  error_description: string;

  constructor(cause: DependencyUnavailable) {
    super(503, 'temporarily_unavailable', { cause });
    // The engine hides the message of any status >= 500; this one is safe and useful to show.
    this.expose = true;
    this.error_description = cause.message;
  }
}

/** RFC 6749 has no "too many requests" code: invalid_request with HTTP 429 and Retry-After is the least misleading. */
export class TooManyRequests extends errors.OIDCProviderError {
  error_description: string;

  constructor(retryAfterSeconds: number) {
    super(429, 'invalid_request');
    this.expose = true;
    this.error_description = `too many requests, try again in ${retryAfterSeconds} seconds`;
  }
}

/** The engine could not find the sign-in a request belongs to (its cookie expired, or another browser's). */
export function isSessionNotFound(error: unknown): boolean {
  return error instanceof errors.SessionNotFound;
}

/** An engine error written to be shown (the engine hides the others): its status, code and description. */
export function shownProtocolError(error: unknown): { status: number; error: string; description: string } | undefined {
  if (!(error instanceof errors.OIDCProviderError) || !error.expose) return undefined;
  return { status: error.status, error: error.error, description: error.error_description ?? error.error };
}

/** Runs an engine callback, turning a dependency outage into a 503 the engine knows how to answer. */
export async function asProviderError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DependencyUnavailable) throw new TemporarilyUnavailable(error);
    throw error;
  }
}

/** The engine's refusal of client metadata (invalid_client_metadata, invalid_redirect_uri), as its description; undefined for anything else. */
export function clientMetadataRefusal(error: unknown): string | undefined {
  if (!(error instanceof errors.InvalidClientMetadata) && !(error instanceof errors.InvalidRedirectUri)) return undefined;
  return (error as { error_description?: string }).error_description ?? error.message;
}
