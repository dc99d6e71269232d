// Starts a whole Gatehouse on a free port with its own database and store prefix, the way main.ts
// does, and tears it all down. Uses DATABASE_URL and REDIS_URL when the environment has them.
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/logger.ts';
import { openRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime.ts';
import { createApp } from '../../src/app.ts';
import { createTestDatabase } from './database.ts';
import { testConfig } from './runtime.ts';
import { deleteServerKeys } from './redis.ts';

export interface TestServer {
  issuer: string;
  runtime: Runtime;
  server: Server;
  /**
   * Resolves once the work started after the responses so far has ended, and with it the mail it sent: a
   * message that was going to reach the mail server has reached it. Await it, never a sleep, before checking
   * that something was not mailed (or logged).
   */
  settled(): Promise<void>;
  close(): Promise<void>;
}

/** A logger as the server's (createLogger) whose every line (debug and up) is kept, for tests that check what is logged. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({ write(chunk, _encoding, done) { lines.push(String(chunk)); done(); } });
  return { logger: createLogger({ logLevel: 'debug' }, destination), lines };
}

/** `options.logger`: log there (e.g. a capturingLogger) instead of by LOG_LEVEL; `options.runtime`: e.g. short mail retry timings. */
export async function startTestServer(
  environment: Record<string, string> = {}, options: { logger?: Logger; runtime?: RuntimeOptions } = {},
): Promise<TestServer> {
  const database = await createTestDatabase();
  const keysDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-keys-'));
  const server = createServer();
  // Longer than any client's idle timeout: on a loaded machine a client reusing a kept-alive connection
  // could otherwise meet the server closing it at that moment ("fetch failed").
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;
  const config = testConfig(database, keysDir, { PORT: String(port), ISSUER: issuer, ...environment });
  let runtime: Runtime;
  try {
    // A message the mail server could not take at once (a busy test machine) is retried within moments,
    // not after the 30 s a real outage waits; the queue's own tests set their timings.
    runtime = await openRuntime(config, options.logger ?? createLogger(config), {
      ...options.runtime, mailQueue: { firstRetryDelayMs: 500, pollIntervalMs: 250, ...options.runtime?.mailQueue },
    });
  } catch (error) {
    // Nothing may stay open (a listening socket would keep the test process from ever exiting).
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await Promise.allSettled([database.drop(), rm(keysDir, { recursive: true, force: true })]);
    throw error;
  }
  server.on('request', createApp(runtime).callback());
  return {
    issuer,
    runtime,
    server,
    async settled() {
      await runtime.afterResponseWork.settled();
      await runtime.mailQueue.idle();
      await runtime.logoutNotices.deliveries.idle();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await runtime.close();
      await database.drop();
      if (config.redis) await deleteServerKeys(config.redis, config.storePrefix);
      await rm(keysDir, { recursive: true, force: true });
    },
  };
}
