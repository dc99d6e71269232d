// The embedded PostgreSQL for development: PGlite on disk under <dataDir>/postgres, shared by every
// Gatehouse process on the machine (server and CLI alike) through a Unix socket that `pg` dials.
import { mkdir, open, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { servePGlite, type PGliteServer } from './pglite-server.ts';

/*
 * PGlite admits one process per data directory. The first process to take <dataDir>/postgres.lock
 * (created with O_EXCL, holding its pid) HOSTS the database: it opens PGlite and serves it on
 * <dataDir>/.s.PGSQL.5432. Every process, the host included, then talks to it with ordinary `pg`
 * through that socket, so the code path is the same as with a real PostgreSQL server.
 *
 * A lock is stale when its pid is dead, or when a live pid (reused after a crash or reboot, perhaps
 * our own in a container) has long had the lock yet keeps refusing connections. Stale locks are removed under a second O_EXCL guard
 * file and only if still the very file found stale, so two newcomers cannot both remove a lock and
 * both host. A process that joined as a client keeps watching the lock and takes over hosting when
 * the host goes away (say the CLI hosted and exits while the server still runs); the socket path,
 * and so the connection string, stay the same, and the `pg` pool simply reconnects.
 */

export interface EmbeddedPostgres {
  /** postgresql://postgres@localhost/postgres?host=<dataDir>: the same whoever hosts. */
  readonly connectionString: string;
  /** Whether this process currently hosts the database (it may start to, see above). */
  readonly hosting: boolean;
  /** Stops hosting if this process hosts (other processes may take over); otherwise only stops watching. */
  close(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** How long to wait for another process that holds the lock to start serving. */
  startupTimeoutMs?: number;
  /** How often a client checks that the host is still there. */
  watchIntervalMs?: number;
}

/** Where pg looks for a server whose "host" is a directory and whose port is 5432. */
const SOCKET_FILE_NAME = '.s.PGSQL.5432';
/** A live host may take this long from taking the lock to accepting connections (initdb is slow). */
const STARTUP_GRACE_MS = 60_000;
/** After the grace, a live pid must refuse connections this long before its lock is stale. */
const REFUSAL_CONFIRMATION_MS = 3_000;
/** A lock without a pid is being written; it is garbage once this old. */
const UNWRITTEN_LOCK_GRACE_MS = 5_000;
/** The takeover guard is held for milliseconds; one this old belongs to a process that died holding it. */
const TAKEOVER_GUARD_STALE_MS = 10_000;
const POLL_INTERVAL_MS = 100;

interface Paths {
  dataDir: string;
  postgresDir: string;
  lock: string;
  socket: string;
}

interface LockFile {
  /** Undefined while the creator has not written it yet (or if it holds garbage). */
  pid: number | undefined;
  inode: number;
  modifiedMs: number;
}

interface Host {
  database: PGlite;
  server: PGliteServer;
  lock: LockFile;
}

/**
 * Databases this module instance hosts (or is starting to host), by socket path: a second open in
 * this process then waits for the first instead of judging the lock by a socket not yet listening.
 */
const hostedByThisProcess = new Map<string, Host | 'starting'>();

export async function openEmbeddedPostgres(
  dataDir: string,
  options: EmbeddedPostgresOptions = {},
): Promise<EmbeddedPostgres> {
  const paths = resolvePaths(dataDir);
  assertSocketPathFits(paths.socket);
  await mkdir(paths.dataDir, { recursive: true });
  const startupTimeoutMs = options.startupTimeoutMs ?? 120_000;
  const host = await hostOrJoin(paths, Date.now() + startupTimeoutMs);
  return new EmbeddedPostgresHandle(paths, host, startupTimeoutMs, options.watchIntervalMs ?? 1_000);
}

class EmbeddedPostgresHandle implements EmbeddedPostgres {
  readonly connectionString: string;
  #host: Host | undefined;
  #watcher: NodeJS.Timeout | undefined;
  #check: Promise<void> | undefined;
  #closed = false;
  #lastWarning: string | undefined;
  readonly #paths: Paths;
  readonly #startupTimeoutMs: number;

  constructor(paths: Paths, host: Host | undefined, startupTimeoutMs: number, watchIntervalMs: number) {
    this.#paths = paths;
    this.#host = host;
    this.#startupTimeoutMs = startupTimeoutMs;
    this.connectionString = `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(paths.dataDir)}`;
    if (!host) {
      this.#watcher = setInterval(() => {
        this.#check ??= this.#takeOverIfHostIsGone().finally(() => (this.#check = undefined));
      }, watchIntervalMs);
      // Watching must never keep a finished CLI command alive.
      this.#watcher.unref();
    }
  }

  get hosting(): boolean {
    return this.#host !== undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#watcher);
    await this.#check;
    if (this.#host) await stopHosting(this.#paths, this.#host);
    this.#host = undefined;
  }

  async #takeOverIfHostIsGone(): Promise<void> {
    if (this.#closed || this.#host) return;
    try {
      const lock = await readLock(this.#paths.lock);
      if (lock && (lock.pid === undefined || isProcessRunning(lock.pid))) return;
      const host = await hostOrJoin(this.#paths, Date.now() + this.#startupTimeoutMs);
      if (!host) return;
      if (this.#closed) {
        await stopHosting(this.#paths, host);
        return;
      }
      this.#host = host;
      clearInterval(this.#watcher);
    } catch (error) {
      // The next tick tries again; queries meanwhile fail as "database unavailable". Said once per
      // distinct reason, not every tick.
      const warning = `embedded database: could not take over hosting: ${errorMessage(error)}`;
      if (warning !== this.#lastWarning) process.emitWarning(warning);
      this.#lastWarning = warning;
    }
  }
}

function resolvePaths(dataDir: string): Paths {
  const absolute = path.resolve(dataDir);
  return {
    dataDir: absolute,
    postgresDir: path.join(absolute, 'postgres'),
    lock: path.join(absolute, 'postgres.lock'),
    socket: path.join(absolute, SOCKET_FILE_NAME),
  };
}

/** Unix socket paths are limited by sockaddr_un (108 bytes on Linux, 104 on macOS, NUL included). */
function assertSocketPathFits(socketPath: string): void {
  const limit = process.platform === 'linux' ? 107 : 103;
  const length = Buffer.byteLength(socketPath);
  if (length > limit) {
    throw new Error(
      `the embedded database socket path ${socketPath} is ${length} bytes, over the ${limit}-byte limit ` +
        `of Unix sockets: choose a shorter DATA_DIR`,
    );
  }
}

/** Becomes the host, or returns undefined once another process serves the database. */
async function hostOrJoin(paths: Paths, deadline: number): Promise<Host | undefined> {
  let refusing: { inode: number; since: number } | undefined;
  for (;;) {
    const created = await tryCreateLock(paths.lock);
    if (created) return await startHosting(paths, created);

    const lock = await readLock(paths.lock);
    if (!lock) continue; // removed meanwhile: try to take it
    const age = Date.now() - lock.modifiedMs;
    let stale: boolean;
    if (lock.pid === undefined) {
      stale = age > UNWRITTEN_LOCK_GRACE_MS;
    } else if (!isProcessRunning(lock.pid)) {
      stale = true;
    } else if (lock.pid === process.pid && hostedByThisProcess.get(paths.socket) === 'starting') {
      stale = false;
    } else if (await acceptsConnections(paths.socket)) {
      return undefined;
    } else if (age < STARTUP_GRACE_MS) {
      stale = false;
    } else {
      if (refusing?.inode !== lock.inode) refusing = { inode: lock.inode, since: Date.now() };
      stale = Date.now() - refusing.since >= REFUSAL_CONFIRMATION_MS;
    }

    if (stale) {
      await removeStaleLock(paths.lock, lock);
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `the embedded database in ${paths.dataDir} is locked by process ${lock.pid ?? '(unknown)'}, ` +
          `which did not start serving it in time`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Our own pid counts as running: another thread of this process may host (or the pid was reused). */
function isProcessRunning(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function tryCreateLock(lockPath: string): Promise<LockFile | undefined> {
  let handle;
  try {
    handle = await open(lockPath, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  }
  try {
    await handle.writeFile(`${process.pid}\n`);
    await handle.sync();
    const stats = await handle.stat();
    return { pid: process.pid, inode: stats.ino, modifiedMs: stats.mtimeMs };
  } finally {
    await handle.close();
  }
}

async function readLock(lockPath: string): Promise<LockFile | undefined> {
  let handle;
  try {
    handle = await open(lockPath, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const stats = await handle.stat();
    const text = (await handle.readFile('utf8')).trim();
    const pid = /^\d+$/.test(text) ? Number(text) : undefined;
    return { pid, inode: stats.ino, modifiedMs: stats.mtimeMs };
  } finally {
    await handle.close();
  }
}

/** Removes the lock found stale, unless another process already replaced it or is busy doing so. */
async function removeStaleLock(lockPath: string, found: LockFile): Promise<void> {
  const guardPath = `${lockPath}.takeover`;
  let guard;
  try {
    guard = await open(guardPath, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const guardStats = await stat(guardPath).catch(() => undefined);
    if (guardStats && Date.now() - guardStats.mtimeMs > TAKEOVER_GUARD_STALE_MS) await rm(guardPath, { force: true });
    await sleep(POLL_INTERVAL_MS);
    return;
  }
  try {
    const current = await readLock(lockPath);
    if (current && isSameLock(current, found)) await rm(lockPath, { force: true });
  } finally {
    await guard.close();
    await rm(guardPath, { force: true });
  }
}

function isSameLock(a: LockFile, b: LockFile): boolean {
  return a.inode === b.inode && a.modifiedMs === b.modifiedMs && a.pid === b.pid;
}

async function startHosting(paths: Paths, lock: LockFile): Promise<Host> {
  hostedByThisProcess.set(paths.socket, 'starting');
  try {
    // Left behind by a host that died; we hold the lock, so no one else is serving on it.
    await rm(paths.socket, { force: true });
    const database = await PGlite.create({ dataDir: paths.postgresDir });
    let server: PGliteServer;
    try {
      server = await servePGlite(database, { socketPath: paths.socket });
    } catch (error) {
      await database.close();
      throw error;
    }
    const host: Host = { database, server, lock };
    hostedByThisProcess.set(paths.socket, host);
    return host;
  } catch (error) {
    hostedByThisProcess.delete(paths.socket);
    await removeOwnLock(paths.lock, lock);
    throw error;
  }
}

/** In this order: nobody may start hosting before PGlite has closed its files. */
async function stopHosting(paths: Paths, host: Host): Promise<void> {
  try {
    await host.server.close();
    await host.database.close();
    await rm(paths.socket, { force: true });
  } finally {
    hostedByThisProcess.delete(paths.socket);
    await removeOwnLock(paths.lock, host.lock);
  }
}

async function removeOwnLock(lockPath: string, lock: LockFile): Promise<void> {
  const current = await readLock(lockPath);
  if (current && current.inode === lock.inode && current.pid === process.pid) await rm(lockPath, { force: true });
}

function acceptsConnections(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const done = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
