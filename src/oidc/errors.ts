// Maps Gatehouse's domain errors into oidc-provider's error type, so the engine answers them in the
// protocol's own format (JSON, a page, or a redirect back to the client) instead of a bare 500.
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

/** Runs an engine callback, turning a dependency outage into a 503 the engine knows how to answer. */
export async function asProviderError<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DependencyUnavailable) throw new TemporarilyUnavailable(error);
    throw error;
  }
}
