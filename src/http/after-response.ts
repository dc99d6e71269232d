// Work a page's answer must not wait for, or reveal by its timing (looking an account up, sending mail),
// started once the answer is on its way; its failure is logged, never thrown at the person.
import type { Context } from 'koa';
import type { Logger } from 'pino';

/**
 * Runs `work` after the response. A failure is logged at error level with what failed and why, never the
 * address, link or token.
 */
export function afterResponse(ctx: Context, logger: Logger, what: string, work: () => Promise<unknown>): void {
  const path = ctx.path;
  // Koa writes the response in the promise callbacks that end this request; a macrotask runs after them
  // (and, unlike the response's 'finish' event, also when the client has already gone away).
  setImmediate(() => {
    work().catch((error: unknown) => {
      const name = error instanceof Error ? error.name : 'Error';
      logger.error({ error: name, path }, `${what} failed after the response (${name})`);
    });
  });
}
