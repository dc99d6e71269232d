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
    // The cause's first line that says something (Prisma's messages begin with a line break).
    const reason = this.cause instanceof Error ? this.cause.message.split('\n').map((line) => line.trim()).find(Boolean) : undefined;
    return reason ? `${this.message} (${reason})` : this.message;
  }
}

/** How long a client should wait before retrying while a dependency is down (Retry-After of every 503). */
export const RETRY_AFTER_OUTAGE_SECONDS = 5;
