// Gives a test its own database: a fresh, uniquely named database on DATABASE_URL's server when that
// is set (CI), else a fresh directory for the embedded one. drop() leaves nothing behind either way.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface TestDatabase {
  /** Set when the tests run against a PostgreSQL server; undefined means embedded under dataDir. */
  databaseUrl?: string;
  /** Always a fresh directory (the embedded database lives here; the server also keeps other data here). */
  dataDir: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  // Short on purpose: the embedded database's Unix socket path must stay under ~107 bytes.
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gh-db-'));
  const removeDataDir = () => rm(dataDir, { recursive: true, force: true });
  const serverUrl = process.env.DATABASE_URL;
  if (!serverUrl) return { dataDir, drop: removeDataDir };

  const name = `gatehouse_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE "${name}"`));
  const databaseUrl = new URL(serverUrl);
  databaseUrl.pathname = `/${name}`;
  return {
    databaseUrl: databaseUrl.toString(),
    dataDir,
    async drop() {
      // FORCE ends the connections a test left open (its pool, a crashed server) in the same step.
      await onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
      await removeDataDir();
    },
  };
}

/** Runs one statement on the database DATABASE_URL names (CREATE/DROP DATABASE cannot run inside the target). */
export async function onServer(serverUrl: string, work: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 10_000 });
  await client.connect();
  try {
    await work(client);
  } finally {
    await client.end();
  }
}
