// Errors shared by domain code. The HTTP layer maps them to status codes; domain code never imports Koa.

/** A service Gatehouse depends on (the database or the store) cannot be reached right now. */
export class DependencyUnavailable extends Error {
  override name = 'DependencyUnavailable';
  readonly dependency: 'database' | 'store';

  constructor(dependency: 'database' | 'store', options?: { cause?: unknown }) {
    super(`the ${dependency} is unavailable`, options);
    this.dependency = dependency;
  }

  /** One line for an operator: what is down, and the first line of why. */
  describe(): string {
    return this.cause instanceof Error ? `${this.message} (${this.cause.message.split('\n')[0]})` : this.message;
  }
}
