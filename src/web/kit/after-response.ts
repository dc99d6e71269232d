// Work a page's answer must not wait for, or reveal by its timing (looking an account up, sending mail),
// started once the answer is on its way; its failure is logged, never thrown at the person. The runtime keeps
// one AfterResponseWork, so that what was started can be awaited: by close(), and by tests instead of sleeping.
import type { Context } from 'koa';
import type { Logger } from 'pino';

/** The work started after responses by one runtime, and a way to wait until none is under way. */
export class AfterResponseWork {
  readonly #logger: Logger;
  readonly #running = new Set<Promise<void>>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /**
   * Runs `work` after the response. A failure is logged at error level with what failed and why, never the
   * address, link or token.
   */
  run(ctx: Pick<Context, 'path'>, what: string, work: () => Promise<unknown>): void {
    const path = ctx.path;
    // Koa writes the response in the promise callbacks that end this request; a macrotask runs after them
    // (and, unlike the response's 'finish' event, also when the client has already gone away).
    const running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(work)
      .then(() => undefined, (error: unknown) => {
        const name = error instanceof Error ? error.name : 'Error';
        this.#logger.error({ error: name, path }, `${what} failed after the response (${name})`);
      });
    // Counted from now, not from when it starts: settled() called right after the response waits for it too.
    this.#running.add(running);
    void running.finally(() => this.#running.delete(running));
  }

  /**
   * Resolves once every piece of work started so far has ended (its failure logged), work they started
   * meanwhile included: it waits until none is running, so on a server other requests keep busy it may also
   * wait for theirs. Never rejects.
   */
  async settled(): Promise<void> {
    while (this.#running.size) await Promise.all([...this.#running]);
  }
}
