// Redis plumbing for tests: throwaway redis-server processes for outage tests (and throwaway clusters and
// Sentinel setups), and removal of the keys a test run wrote to a shared server (every run writes under its
// own random prefix).

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import type { RedisConnection } from '../../src/store/index.ts';

/** Redis Cluster's bus port is the node's port + 10,000, so a node's port may be 55535 at most. */
const CLUSTER_BUS_OFFSET = 10_000;

/** A port for a cluster node: free, with its bus port free too and, like it, below the ephemeral range (findFreePort). */
async function findFreeClusterPort(): Promise<number> {
  for (;;) {
    const port = await findFreePort();
    if (port + CLUSTER_BUS_OFFSET <= HIGHEST_CHOSEN_PORT && await isFree(port + CLUSTER_BUS_OFFSET)) return port;
  }
}

/** Whether a server could listen on the port on 127.0.0.1 now (it is closed again at once). */
async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  const free = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (free) {
    server.close();
    await once(server, 'close');
  }
  return free;
}

/**
 * A port nobody listens on right now, chosen below the kernel's ephemeral range (32768 and up on Linux) rather than
 * by binding port 0: the ports of outgoing connections (to Redis, PostgreSQL, the servers under test) come from that
 * range, and one of them could take a port chosen there before the process it was chosen for listens on it. Never
 * the same port twice in one test process.
 */
export async function findFreePort(): Promise<number> {
  for (;;) {
    const port = LOWEST_CHOSEN_PORT + Math.floor(Math.random() * (HIGHEST_CHOSEN_PORT - LOWEST_CHOSEN_PORT + 1));
    if (!chosen.has(port) && await isFree(port)) {
      chosen.add(port);
      return port;
    }
  }
}

const LOWEST_CHOSEN_PORT = 10_000;
const HIGHEST_CHOSEN_PORT = 32_767;
const chosen = new Set<number>();

/**
 * A redis-server child process listening on 127.0.0.1:port, without persistence unless `settings` ask for it
 * (e.g. ['--appendonly', 'yes', '--dir', folder]: started again with the same folder, it has its data back).
 */
export class ThrowawayRedisServer {
  readonly port: number;
  readonly #settings: string[];
  readonly #configFile: string[];
  #process: ChildProcess | undefined;

  /** `configFile`: read first (a Sentinel needs one it can rewrite). */
  constructor(port: number, settings: string[] = [], configFile?: string) {
    this.port = port;
    this.#settings = settings;
    this.#configFile = configFile === undefined ? [] : [configFile];
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * A server on a port the OS has just said is free. Another process of the test run can take that port before
   * redis-server binds it: then it is tried again on another. `clusterBus`: a cluster node, which also listens
   * 10,000 ports higher (so its port must be 55535 at most).
   */
  static async start(settings: string[] = [], { clusterBus = false, configFile }: { clusterBus?: boolean; configFile?: string } = {}): Promise<ThrowawayRedisServer> {
    for (let attempt = 1; ; attempt += 1) {
      const server = new ThrowawayRedisServer(await (clusterBus ? findFreeClusterPort() : findFreePort()), settings, configFile);
      try {
        await server.start();
        return server;
      } catch (error) {
        await server.stop();
        if (!(error instanceof PortTakenError) || attempt === 5) throw error;
      }
    }
  }

  /** Starts the server and waits until it answers PING (a loaded test machine can take seconds). */
  async start(): Promise<void> {
    if (this.#process !== undefined) throw new Error('redis-server is already running');
    const child = spawn(
      'redis-server',
      [...this.#configFile, '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.#settings],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#process = child;
    // Its log, kept to say why it ended if it ends before answering. Neither the server nor its output keeps a
    // test process alive: one a failed setup leaves running would hang the whole test run. It ends with it.
    child.unref();
    running.add(child);
    child.once('exit', () => running.delete(child));
    let log = '';
    for (const output of [child.stdout, child.stderr]) {
      (output as Socket).unref();
      output.setEncoding('utf8').on('data', (chunk: string) => {
        log = (log + chunk).slice(-4096);
      });
    }
    const answering = new AbortController();
    const ended = new Promise<never>((_resolve, reject) => {
      child.once('error', (error) => {
        if (!answering.signal.aborted) reject(new Error('could not start redis-server (is it on PATH?)', { cause: error }));
      });
      child.once('exit', (code, signal) => {
        if (answering.signal.aborted) return;
        const cause = log.trim().split('\n').at(-1) ?? '';
        if (this.#process === child) this.#process = undefined;
        reject(/address already in use/i.test(log)
          ? new PortTakenError(`port ${this.port} was taken before redis-server could bind it`)
          : new Error(`redis-server on port ${this.port} ended (${code ?? signal}) before answering: ${cause}`));
      });
    });
    try {
      await Promise.race([ended, this.#waitUntilAnswering(child.pid!, answering.signal)]);
    } finally {
      answering.abort();
    }
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
    // Waited for, it keeps this process alive again (see start).
    child.ref();
    child.kill(signal);
    await exited;
  }

  /** Until the server answers, and it is this process that answers (not another test's server on the port). */
  async #waitUntilAnswering(pid: number, stop: AbortSignal): Promise<void> {
    // A command timeout: whatever else may listen on the port might never answer.
    const probe = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, commandTimeout: 1_000 });
    probe.on('error', () => {});
    stop.addEventListener('abort', () => probe.disconnect());
    try {
      await eventually(async () => {
        if (stop.aborted) return;
        if (probe.status !== 'ready') await probe.connect();
        const info = await probe.info('server');
        if (!info.includes(`process_id:${pid}\r\n`)) throw new Error(`another server answers on port ${this.port}`);
      }, 30_000);
    } catch (error) {
      throw new Error(`redis-server on port ${this.port} did not answer within 30 s`, { cause: error });
    } finally {
      probe.disconnect();
    }
  }
}

/** Every redis-server these helpers started and that still runs: none outlives the test process. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** redis-server could not listen: the port was free when asked, and taken when it bound it. */
class PortTakenError extends Error {}

const run = promisify(execFile);

/** Three redis-servers made one Redis Cluster (three masters, no replicas), in a folder of the caller's. */
export class ThrowawayRedisCluster {
  readonly nodes: ThrowawayRedisServer[];

  private constructor(nodes: ThrowawayRedisServer[]) {
    this.nodes = nodes;
  }

  /** Every node, as REDIS_URL names them for REDIS_CLUSTER=true. */
  get url(): string {
    return `redis://${this.nodes.map((node) => `127.0.0.1:${node.port}`).join(',')}`;
  }

  static async start(folder: string, settings: string[] = []): Promise<ThrowawayRedisCluster> {
    const nodes: ThrowawayRedisServer[] = [];
    const cluster = new ThrowawayRedisCluster(nodes);
    try {
      for (let index = 0; index < 3; index += 1) {
        nodes.push(await ThrowawayRedisServer.start([
          '--cluster-enabled', 'yes', '--cluster-config-file', path.join(folder, `nodes-${index}.conf`), '--cluster-node-timeout', '2000',
          '--dir', folder, ...settings,
        ], { clusterBus: true }));
      }
      await run('redis-cli', ['--cluster', 'create', ...nodes.map((node) => `127.0.0.1:${node.port}`), '--cluster-replicas', '0', '--cluster-yes']);
      // Every node must know every slot's owner before a client that asks any of them is served.
      await eventually(async () => {
        for (const node of nodes) {
          const { stdout } = await run('redis-cli', ['-p', String(node.port), 'cluster', 'info']);
          if (!/cluster_state:ok/.test(stdout)) throw new Error(`node ${node.port}: the cluster is not ready`);
        }
      }, 20_000);
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

/** A master, its replica and one Sentinel watching them (quorum 1), in a folder of the caller's. */
export class ThrowawaySentinelSetup {
  static readonly MASTER_NAME = 'gatehouse-test';
  readonly master: ThrowawayRedisServer;
  readonly replica: ThrowawayRedisServer;
  readonly sentinel: ThrowawayRedisServer;

  private constructor(master: ThrowawayRedisServer, replica: ThrowawayRedisServer, sentinel: ThrowawayRedisServer) {
    this.master = master;
    this.replica = replica;
    this.sentinel = sentinel;
  }

  /** The Sentinel, as REDIS_URL names it for REDIS_SENTINEL_MASTER. */
  get url(): string {
    return `redis://127.0.0.1:${this.sentinel.port}`;
  }

  static async start(folder: string): Promise<ThrowawaySentinelSetup> {
    const started: ThrowawayRedisServer[] = [];
    const starting = async (server: Promise<ThrowawayRedisServer>) => {
      started.push(await server);
      return started.at(-1)!;
    };
    try {
      // A replica's first sync writes a snapshot file into the server's folder: keep it in the caller's.
      const master = await starting(ThrowawayRedisServer.start(['--dir', folder]));
      const replica = await starting(ThrowawayRedisServer.start(['--dir', folder, '--replicaof', '127.0.0.1', String(master.port)]));
      const configFile = path.join(folder, 'sentinel.conf');
      await writeFile(configFile, [
        `sentinel monitor ${this.MASTER_NAME} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${this.MASTER_NAME} 1000`,
        `sentinel failover-timeout ${this.MASTER_NAME} 10000`,
        '',
      ].join('\n'));
      const sentinel = await starting(ThrowawayRedisServer.start(['--sentinel'], { configFile }));
      // The Sentinel learns of the replica from the master within a few seconds; a failover needs it.
      await eventually(async () => {
        const { stdout } = await run('redis-cli', ['-p', String(sentinel.port), 'sentinel', 'replicas', this.MASTER_NAME]);
        if (!stdout.includes(String(replica.port))) throw new Error('the Sentinel does not know the replica yet');
      }, 30_000);
      // And the replica has made its first copy: a master stopped before it would leave the replica empty.
      await eventually(async () => {
        const { stdout } = await run('redis-cli', ['-p', String(replica.port), 'info', 'replication']);
        if (!stdout.includes('master_link_status:up')) throw new Error('the replica has not synced with the master yet');
      }, 30_000);
      return new ThrowawaySentinelSetup(master, replica, sentinel);
    } catch (error) {
      await Promise.all(started.map((server) => server.stop()));
      throw error;
    }
  }

  /** The port of the server the Sentinel names as master right now. */
  async masterPort(): Promise<number> {
    const { stdout } = await run('redis-cli', ['-p', String(this.sentinel.port), 'sentinel', 'get-master-addr-by-name', ThrowawaySentinelSetup.MASTER_NAME]);
    return Number(stdout.trim().split('\n')[1]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.sentinel.stop(), this.replica.stop(), this.master.stop()]);
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

/** A test server's keys, where it used a shared server; a throwaway cluster or Sentinel setup is discarded whole instead. */
export async function deleteServerKeys(connection: RedisConnection, prefix: string): Promise<void> {
  if (connection.cluster || connection.sentinelMaster) return;
  await deleteKeysWithPrefix(connection.url, prefix);
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
