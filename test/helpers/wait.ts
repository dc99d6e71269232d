// Waiting for what happens after a response: mail delivered, audit rows written, messages heard.
import { setTimeout as sleep } from 'node:timers/promises';

/** Polls until the check holds; fails naming what it waited for once the time is up (generous: a loaded machine is slow, a passing check is not). */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}
