// A run's own PostgreSQL database and Redis key prefix, on the servers DATABASE_URL and REDIS_URL name (or the
// machine's own), and its own temporary folder for keys and data: made fresh, removed at the end.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Cleanup } from './cleanup.ts';
import { onServer } from '../../test/helpers/database.ts';
import { deleteKeysWithPrefix } from '../../test/helpers/redis.ts';

const MACHINE_DATABASE_SERVER = 'postgresql://postgres@127.0.0.1:5432/postgres';
const MACHINE_REDIS = 'redis://127.0.0.1:6379';

export interface BackingServices {
  /** The run's own database. */
  databaseUrl: string;
  redisUrl: string;
  /** Every key of the run begins with it (STORE_PREFIX). */
  storePrefix: string;
  /** A fresh folder for keys, data and anything else a server writes. */
  folder: string;
}

export async function createBackingServices(cleanup: Cleanup): Promise<BackingServices> {
  const serverUrl = process.env.DATABASE_URL || MACHINE_DATABASE_SERVER;
  const redisUrl = process.env.REDIS_URL || MACHINE_REDIS;
  const run = randomBytes(5).toString('hex');

  const folder = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-'));
  cleanup.add(`remove ${folder}`, () => rm(folder, { recursive: true, force: true }));

  const name = `gatehouse_bench_${run}`;
  await onServer(serverUrl, (client) => client.query(`CREATE DATABASE "${name}"`));
  // FORCE ends the connections a server left open (one that crashed, say) in the same step.
  cleanup.add(`drop the database ${name}`, () => onServer(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  const databaseUrl = new URL(serverUrl);
  databaseUrl.pathname = `/${name}`;

  const storePrefix = `gatehouse-bench-${run}:`;
  await ping(redisUrl);
  cleanup.add(`delete the Redis keys under ${storePrefix}`, () => deleteKeysWithPrefix(redisUrl, storePrefix));
  return { databaseUrl: databaseUrl.toString(), redisUrl, storePrefix, folder };
}

async function ping(url: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  try {
    await client.connect();
    await client.ping();
  } finally {
    client.disconnect();
  }
}
