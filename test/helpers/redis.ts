// Redis plumbing for tests: throwaway redis-server processes for outage tests, and removal of the
// keys a test run wrote to a shared server (every run writes under its own random prefix).

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

/** A port nobody listens on right now (the OS picks it, so parallel runs do not collide). */
export async function findFreePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('could not read the bound port');
  return address.port;
}

/**
 * A redis-server child process listening on 127.0.0.1:port, without persistence unless `settings` ask for it
 * (e.g. ['--appendonly', 'yes', '--dir', folder]: started again with the same folder, it has its data back).
 */
export class ThrowawayRedisServer {
  readonly port: number;
  readonly #settings: string[];
  #process: ChildProcess | undefined;

  constructor(port: number, settings: string[] = []) {
    this.port = port;
    this.#settings = settings;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server and waits until it answers PING. */
  async start(): Promise<void> {
    if (this.#process !== undefined) throw new Error('redis-server is already running');
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.#settings],
      { stdio: 'ignore' },
    );
    this.#process = child;
    const spawnFailure = once(child, 'error').then(([error]: unknown[]) => {
      throw new Error(`could not start redis-server (is it on PATH?)`, { cause: error });
    });
    await Promise.race([spawnFailure, this.#waitUntilAnswering()]);
  }

  /** Stops the server abruptly, as a crash or a lost host would. */
  async kill(): Promise<void> {
    await this.#signalAndWait('SIGKILL');
  }

  /** Freezes the server: connections stay open but nothing is answered (a hung Redis). */
  freeze(): void {
    this.#process?.kill('SIGSTOP');
  }

  thaw(): void {
    this.#process?.kill('SIGCONT');
  }

  /** Safe to call in any state; used by after.always hooks. */
  async stop(): Promise<void> {
    this.thaw();
    await this.#signalAndWait('SIGKILL');
  }

  async #signalAndWait(signal: NodeJS.Signals): Promise<void> {
    const child = this.#process;
    this.#process = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    await exited;
  }

  async #waitUntilAnswering(): Promise<void> {
    const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    try {
      await eventually(async () => {
        if (probe.status !== 'ready') await probe.connect();
        await probe.ping();
      }, 10_000);
    } finally {
      probe.disconnect();
    }
  }
}

/** Retries an async check until it passes or the time is up; rethrows the last failure. */
export async function eventually<Result>(check: () => Promise<Result>, timeoutMs: number): Promise<Result> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await sleep(100);
    }
  }
}

/** Every key on the server under the given prefix (SCAN MATCH treats * ? [ specially, so avoid them in prefixes). */
export async function keysWithPrefix(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [nextCursor, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    keys.push(...batch);
    cursor = nextCursor;
  } while (cursor !== '0');
  return keys;
}

export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<void> {
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    // Scanned and unlinked as it goes: a benchmark's soak leaves a great many keys.
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await client.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    await client.quit();
  }
}
