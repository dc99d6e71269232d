// Errors shared by domain code. The HTTP layer maps them to status codes; domain code never imports Koa.

/** A service Gatehouse depends on (the database, the store or the mail server) cannot be reached right now. */
export class DependencyUnavailable extends Error {
  override name = 'DependencyUnavailable';
  readonly dependency: 'database' | 'store' | 'mail';

  constructor(dependency: 'database' | 'store' | 'mail', options?: { cause?: unknown }) {
    super(`the ${dependency === 'mail' ? 'mail server' : dependency} is unavailable`, options);
    this.dependency = dependency;
  }

  /** One line for an operator: what is down, and the first line of why. */
  describe(): string {
    return this.cause instanceof Error ? `${this.message} (${this.cause.message.split('\n')[0]})` : this.message;
  }
}

/** How long a client should wait before retrying while a dependency is down (Retry-After of every 503). */
export const RETRY_AFTER_OUTAGE_SECONDS = 5;
