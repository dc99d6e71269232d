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

/**
 * The dependency answered but refused Gatehouse's login (a wrong password, no such user or database): waiting will
 * not help, `setting` must change. A start refuses at once; under a running server it is an outage (503) like any.
 */
export class LoginRefused extends DependencyUnavailable {
  override name = 'LoginRefused';
  readonly setting: string;

  constructor(dependency: 'database' | 'store', options: { cause: unknown }) {
    super(dependency, options);
    this.message = `the ${dependency} refused the login`;
    this.setting = dependency === 'database' ? 'DATABASE_URL' : 'REDIS_URL';
  }
}

/** How long a client should wait before retrying while a dependency is down (Retry-After of every 503). */
export const RETRY_AFTER_OUTAGE_SECONDS = 5;
