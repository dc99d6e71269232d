// Opens Gatehouse's database: Prisma over `pg` (@prisma/adapter-pg), against DATABASE_URL or the
// embedded PGlite. Connection failures surface as DependencyUnavailable('database') so callers answer 503.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { DependencyUnavailable, LoginRefused } from '../errors.ts';
import { timed, type CallObserver } from '../dependency-calls.ts';
import { isConnectionFailure, isLoginRefusal, withDriverReason } from './connection-errors.ts';
import { openEmbeddedPostgres } from './embedded.ts';
import { PrismaClient } from './generated/client.ts';

export interface OpenDatabaseOptions {
  /** A postgresql:// URL; undefined means the embedded database under dataDir. */
  databaseUrl?: string | undefined;
  dataDir: string;
  /** Most connections this process opens (default 10). */
  poolSize?: number;
  /** How long opening a connection may take before the query fails as unavailable (default 5 s). */
  connectionTimeoutMs?: number;
  /**
   * How long a query may wait for the server's answer before it fails as unavailable (default 10 s; 30 s for
   * the embedded database).
   * Bounds a server that accepts connections but stops answering; its connection is then discarded.
   */
  queryTimeoutMs?: number;
  /** Each query's time and outcome (for metrics). */
  observe?: CallObserver | undefined;
}

export interface Database {
  prisma: ReturnType<typeof extendClient>;
  /** What `pg` (or the migration runner) connects to; for the embedded database, its Unix socket. */
  connectionString: string;
  embedded: boolean;
  /** Runs `select 1`; throws DependencyUnavailable when the database cannot answer. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The Prisma client every module receives: the generated client with connection errors mapped. */
export type Prisma = Database['prisma'];

/** Whether a Prisma error is a unique constraint refusing a row (P2002). */
export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && error.code === 'P2002';
}

/**
 * Text for Prisma's `contains`, which is SQL's LIKE: its wildcards (% and _) and its escape character (a backslash)
 * match themselves.
 */
export function literally(text: string): string {
  return text.replace(/[\\%_]/g, (character) => `\\${character}`);
}

/**
 * How long a query or a transaction may wait for the embedded database. It is one session that runs one statement
 * or transaction at a time for every connection (pglite-server.ts), on this process's own thread: what waits is
 * queued behind the others, not facing a hung server. With a real server's limits, a burst of sign-ins on a busy
 * machine (the whole test suite at once) waited past them and was answered 503 while the database was well.
 */
const EMBEDDED_WAIT_MS = 30_000;

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const embedded = options.databaseUrl ? undefined : await openEmbeddedPostgres(options.dataDir);
  const connectionString = options.databaseUrl ?? embedded!.connectionString;
  const adapter = new PrismaPg(
    {
      connectionString,
      max: options.poolSize ?? 10,
      // Without it a connection attempt to an unreachable host waits for the OS (minutes): fail fast,
      // answer 503, and let the next request try again. (pg-pool also waits this long for a free connection:
      // on the embedded database, whose statements run one at a time, that is waiting in its queue.)
      connectionTimeoutMillis: options.connectionTimeoutMs ?? (embedded ? EMBEDDED_WAIT_MS : 5_000),
      idleTimeoutMillis: 30_000,
      // pg's client-side read timeout: the query fails with "Query read timeout" when no answer
      // comes (a server-side statement_timeout cannot help when the server or the network hangs).
      query_timeout: options.queryTimeoutMs ?? (embedded ? EMBEDDED_WAIT_MS : 10_000),
      Client: TimeBoundClient,
    },
    {
      // An idle pooled connection that the server drops (restart, failover) is discarded by the pool
      // and replaced on the next query; without a listener the error would crash the process.
      onPoolError: () => {},
    },
  );
  const client = new PrismaClient({
    adapter,
    // How long an interactive transaction may wait to begin and then take: Prisma's 2 s and 5 s, but on the
    // embedded database, where it waits its turn (see EMBEDDED_WAIT_MS).
    ...(embedded ? { transactionOptions: { maxWait: EMBEDDED_WAIT_MS, timeout: EMBEDDED_WAIT_MS } } : {}),
  });
  const prisma = extendClient(client, options.observe);
  return {
    prisma,
    connectionString,
    embedded: embedded !== undefined,
    async ping() {
      try {
        await prisma.$queryRaw`select 1`;
      } catch (error) {
        // Whatever stops `select 1` from answering makes the database unusable for this process.
        throw error instanceof DependencyUnavailable ? error : databaseUnavailable(error);
      }
    },
    async close() {
      try {
        await client.$disconnect();
      } finally {
        await embedded?.close();
      }
    },
  };
}

function extendClient(client: PrismaClient, observe?: CallObserver) {
  const extended = client.$extends({
    query: {
      $allOperations({ args, query }) {
        return timed(observe, (error) => error instanceof DependencyUnavailable, async () => {
          try {
            return await query(args);
          } catch (error) {
            throw asDependencyError(error);
          }
        });
      },
    },
  });
  // Starting (or committing) an interactive transaction uses a connection outside any operation, so
  // its failure never passes through $allOperations: map it here too. What the caller's callback
  // throws is the caller's own (its operations were mapped already) and passes through untouched.
  return new Proxy(extended, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property);
      if (property !== '$transaction' || typeof value !== 'function') return value;
      return async (first: unknown, ...rest: unknown[]) => {
        const thrownByCallback = new WeakSet<object>();
        const argument =
          typeof first === 'function'
            ? async (...callbackArguments: unknown[]) => {
                try {
                  return await Reflect.apply(first, undefined, callbackArguments);
                } catch (error) {
                  if (typeof error === 'object' && error !== null) thrownByCallback.add(error);
                  throw error;
                }
              }
            : first;
        try {
          return await Reflect.apply(value, target, [argument, ...rest]);
        } catch (error) {
          if (typeof error === 'object' && error !== null && thrownByCallback.has(error)) throw error;
          throw asDependencyError(error);
        }
      };
    },
  });
}

/**
 * A pg client that ends itself when one of its queries times out. pg only stops waiting for the
 * answer: the query stays active on the connection, so anything sent after it would queue behind it.
 * pg-pool discards such a client when the error reaches `release(error)` (plain queries), but an
 * interactive transaction's connection is released without the error after its rollback and would
 * go back to the pool still wedged. Ending it here covers both: the pool drops a client that is
 * ending, what is sent on it afterwards (the rollback, a commit) fails at once as a connection
 * failure instead of waiting out its own timeout, and the next query gets a fresh connection.
 */
class TimeBoundClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const query = this.query.bind(this) as (...args: unknown[]) => unknown;
    const discardOnTimeout = (error: unknown) => {
      if (error instanceof Error && error.message === QUERY_READ_TIMEOUT) this.#discard();
    };
    // Assigned rather than overridden: pg.Client#query has many typed overloads, all forwarded as is.
    Object.defineProperty(this, 'query', {
      configurable: true,
      writable: true,
      value: (...args: unknown[]) => {
        // The callback forms (pg-pool's pool.query passes one): see the error before the caller does.
        const last = args.length - 1;
        const callback = args[last];
        if (last > 0 && typeof callback === 'function') {
          args[last] = (error: unknown, ...rest: unknown[]) => {
            discardOnTimeout(error);
            return Reflect.apply(callback, undefined, [error, ...rest]);
          };
        } else {
          const submittable = args[0] as { submit?: unknown; callback?: unknown } | null | undefined;
          if (typeof submittable?.submit === 'function' && typeof submittable.callback === 'function') {
            const own = submittable.callback;
            submittable.callback = (error: unknown, ...rest: unknown[]) => {
              discardOnTimeout(error);
              return Reflect.apply(own, submittable, [error, ...rest]);
            };
          }
        }
        const result = query(...args);
        // The promise form (the Prisma adapter's): a side branch, the caller still gets the rejection.
        if (result instanceof Promise) result.catch(discardOnTimeout);
        return result;
      },
    });
  }

  #discard(): void {
    // end() marks the client as ending (so the pool drops it and no 'error' event follows the close)
    // and destroys the socket when a query is still active; destroy() also covers the case where the
    // timed-out query was only queued, where end() would wait for a goodbye the server never sends.
    this.end().catch(() => {});
    this.connection.stream.destroy();
  }
}

/** pg's error for a query that got no answer within query_timeout. */
const QUERY_READ_TIMEOUT = 'Query read timeout';

/** Connection failures become DependencyUnavailable; everything else passes through unchanged. */
function asDependencyError(error: unknown): unknown {
  if (error instanceof DependencyUnavailable || !isConnectionFailure(error)) return error;
  return databaseUnavailable(error);
}

/** The database cannot be used: down, or refusing Gatehouse's login; said in the driver's own words. */
function databaseUnavailable(error: unknown): DependencyUnavailable {
  const cause = withDriverReason(error);
  return isLoginRefusal(error) ? new LoginRefused('database', { cause }) : new DependencyUnavailable('database', { cause });
}

