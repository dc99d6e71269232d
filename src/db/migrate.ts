// Gatehouse's migration runner: applies prisma/migrations/<name>/migration.sql in name order and
// records each in Prisma's own _prisma_migrations table, so `prisma migrate deploy` can take over
// wherever Prisma's schema engine (a binary it downloads) is available. Here it is not.
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { DependencyUnavailable, LoginRefused } from '../errors.ts';
import { isConnectionFailure, isLoginRefusal } from './connection-errors.ts';

export const DEFAULT_MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));

/** A migration failed, or the recorded history forbids going on (edited or half-applied migrations). */
export class MigrationError extends Error {
  override name = 'MigrationError';
}

/** Prisma's schema engine locks with this key too, so its runs and ours never overlap. */
const ADVISORY_LOCK_KEY = 72707369;

/** The table exactly as Prisma's schema engine creates it. */
const CREATE_MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

interface RecordedMigration {
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

/**
 * Applies the pending migrations, each in its own transaction, and returns their names.
 * Refuses, applying nothing, when an applied migration's file has changed or an earlier attempt
 * failed without being rolled back (Prisma's P3009). Connection failures throw DependencyUnavailable.
 */
export async function migrate(connectionString: string, migrationsDir: string = DEFAULT_MIGRATIONS_DIR): Promise<string[]> {
  const migrations = await readMigrations(migrationsDir);
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 10_000 });
  // A connection dropped between queries is reported by the next query; this only prevents a crash.
  client.on('error', () => {});
  try {
    await client.connect();
    // Several instances starting at once: one migrates, the others wait and then find nothing to do.
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
    try {
      await client.query(CREATE_MIGRATIONS_TABLE);
      const recorded = await readHistory(client);
      assertHistoryAllowsMigrating(migrations, recorded);
      const applied: string[] = [];
      for (const migration of migrations) {
        if (await applyUnlessApplied(client, migration)) applied.push(migration.name);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => {
        // The connection is gone, and the session lock with it.
      });
    }
  } catch (error) {
    // Refused at login: waiting would not help (a wrong password, a database or role that does not exist).
    if (isLoginRefusal(error)) throw new LoginRefused('database', { cause: error });
    throw isConnectionFailure(error) ? new DependencyUnavailable('database', { cause: error }) : error;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The checksum Prisma records: SHA-256 of the file, in hex. */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql).digest('hex');
}

/** As Prisma does, a checkout with other line endings (git on Windows) still matches. */
function matchesChecksum(sql: string, checksum: string): boolean {
  const variants = [sql, sql.replaceAll('\r\n', '\n'), sql.replaceAll(/\r?\n/g, '\r\n')];
  return variants.some((variant) => migrationChecksum(variant) === checksum);
}

async function readMigrations(migrationsDir: string): Promise<Migration[]> {
  const entries = await readdir(migrationsDir, { withFileTypes: true });
  const names = entries
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    // Code-unit order, as Prisma sorts: timestamps first, locale never matters.
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Promise.all(
    names.map(async (name) => {
      const file = path.join(migrationsDir, name, 'migration.sql');
      const sql = await readFile(file, 'utf8').catch((error: unknown) => {
        throw new MigrationError(`migration ${name} has no readable migration.sql (${file})`, { cause: error });
      });
      return { name, sql, checksum: migrationChecksum(sql) };
    }),
  );
}

async function readHistory(client: pg.Client): Promise<RecordedMigration[]> {
  const result = await client.query<RecordedMigration>(
    'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY started_at',
  );
  return result.rows;
}

function assertHistoryAllowsMigrating(migrations: Migration[], recorded: RecordedMigration[]): void {
  const failed = recorded.find((row) => row.finished_at === null && row.rolled_back_at === null);
  if (failed) {
    throw new MigrationError(
      `migration ${failed.migration_name} failed in an earlier attempt and was not rolled back: repair the ` +
        `database by hand, then mark the attempt rolled back (prisma migrate resolve --rolled-back ` +
        `${failed.migration_name}, or set rolled_back_at in _prisma_migrations)`,
    );
  }
  const files = new Map(migrations.map((migration) => [migration.name, migration]));
  for (const row of recorded) {
    if (row.finished_at === null || row.rolled_back_at !== null) continue;
    const file = files.get(row.migration_name);
    // A migration only the database knows was applied by a newer version: not ours to judge.
    if (file && !matchesChecksum(file.sql, row.checksum)) {
      throw new MigrationError(
        `migration ${row.migration_name} was changed after it was applied (checksum ${row.checksum} ` +
          `recorded, ${file.checksum} on disk): restore the file and put the change in a new migration`,
      );
    }
  }
}

async function applyUnlessApplied(client: pg.Client, migration: Migration): Promise<boolean> {
  const id = randomUUID();
  await client.query('BEGIN');
  try {
    // Checked again inside the transaction: on the embedded database every connection shares one
    // session, so the advisory lock does not keep two runners apart there; this does.
    const done = await client.query(
      `SELECT 1 FROM "_prisma_migrations"
        WHERE migration_name = $1 AND finished_at IS NOT NULL AND rolled_back_at IS NULL`,
      [migration.name],
    );
    if (done.rowCount) {
      await client.query('ROLLBACK');
      return false;
    }
    await client.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count)
       VALUES ($1, $2, $3, clock_timestamp(), 0)`,
      [id, migration.checksum, migration.name],
    );
    // No parameters: pg uses the simple query protocol, which runs a multi-statement script.
    await client.query(migration.sql);
    await client.query(
      `UPDATE "_prisma_migrations" SET finished_at = clock_timestamp(), applied_steps_count = 1 WHERE id = $1`,
      [id],
    );
    await client.query('COMMIT');
    return true;
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    await client.query('ROLLBACK');
    // Kept as a rolled-back attempt: its log stays visible, and neither this runner nor Prisma
    // treats the migration as applied or as blocking.
    await client.query(
      `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
       VALUES ($1, $2, $3, $4, clock_timestamp(), clock_timestamp(), 0)`,
      [id, migration.checksum, migration.name, errorText(error)],
    );
    throw new MigrationError(`migration ${migration.name} failed and was rolled back: ${errorText(error)}`, {
      cause: error,
    });
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
