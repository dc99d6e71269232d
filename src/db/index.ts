// Opens Gatehouse's database: Prisma over `pg` (@prisma/adapter-pg), against DATABASE_URL or the
// embedded PGlite. Connection failures surface as DependencyUnavailable('database') so callers answer 503.
import { PrismaPg } from '@prisma/adapter-pg';
import { DependencyUnavailable } from '../errors.ts';
import { isConnectionFailure } from './connection-errors.ts';
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

export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  const embedded = options.databaseUrl ? undefined : await openEmbeddedPostgres(options.dataDir);
  const connectionString = options.databaseUrl ?? embedded!.connectionString;
  const adapter = new PrismaPg(
    {
      connectionString,
      max: options.poolSize ?? 10,
      // Without it a connection attempt to an unreachable host waits for the OS (minutes): fail fast,
      // answer 503, and let the next request try again.
      connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
      idleTimeoutMillis: 30_000,
    },
    {
      // An idle pooled connection that the server drops (restart, failover) is discarded by the pool
      // and replaced on the next query; without a listener the error would crash the process.
      onPoolError: () => {},
    },
  );
  const client = new PrismaClient({ adapter });
  const prisma = extendClient(client);
  return {
    prisma,
    connectionString,
    embedded: embedded !== undefined,
    async ping() {
      try {
        await prisma.$queryRaw`select 1`;
      } catch (error) {
        // Whatever stops `select 1` from answering makes the database unusable for this process.
        throw error instanceof DependencyUnavailable ? error : new DependencyUnavailable('database', { cause: error });
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

function extendClient(client: PrismaClient) {
  const extended = client.$extends({
    query: {
      async $allOperations({ args, query }) {
        try {
          return await query(args);
        } catch (error) {
          throw asDependencyError(error);
        }
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

/** Connection failures become DependencyUnavailable; everything else passes through unchanged. */
function asDependencyError(error: unknown): unknown {
  if (error instanceof DependencyUnavailable || !isConnectionFailure(error)) return error;
  return new DependencyUnavailable('database', { cause: error });
}

export { isConnectionFailure };
