// The database layer: the migration runner and its Prisma-compatible history, the schema against the
// generated client, the embedded PostgreSQL shared between processes, and "database down" as a 503 cause.
// Serial: each embedded test starts a PGlite (CPU-bound WebAssembly); side by side they only slow down.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { DependencyUnavailable } from '../src/errors.ts';
import { openDatabase, type Database } from '../src/db/index.ts';
import { openEmbeddedPostgres } from '../src/db/embedded.ts';
import { DEFAULT_MIGRATIONS_DIR, MigrationError, migrate } from '../src/db/migrate.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { CuttableProxy } from './helpers/tcp-proxy.ts';
import { until } from './helpers/wait.ts';

const serverUrl = process.env.DATABASE_URL;
const embeddedModule = new URL('../src/db/embedded.ts', import.meta.url).href;
const databaseModule = new URL('../src/db/index.ts', import.meta.url).href;

async function migrationNames(): Promise<string[]> {
  const entries = await readdir(DEFAULT_MIGRATIONS_DIR, { withFileTypes: true });
  return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
}

/** A fresh database for this test (embedded or on DATABASE_URL's server), dropped when it ends. */
async function freshDatabase(t: ExecutionContext): Promise<{ testDatabase: TestDatabase; database: Database }> {
  const testDatabase = await createTestDatabase();
  const database = await openDatabase({ databaseUrl: testDatabase.databaseUrl, dataDir: testDatabase.dataDir });
  t.teardown(async () => {
    await database.close();
    await testDatabase.drop();
  });
  return { testDatabase, database };
}

async function tempDir(t: ExecutionContext, prefix = 'gh-t-'): Promise<string> {
  // Short: the embedded socket path lives inside and must stay under the Unix socket limit.
  const directory = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

async function copyOfMigrations(t: ExecutionContext): Promise<string> {
  const directory = path.join(await tempDir(t), 'migrations');
  await cp(DEFAULT_MIGRATIONS_DIR, directory, { recursive: true });
  return directory;
}

async function query<Row extends pg.QueryResultRow>(connectionString: string, sql: string, values: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<Row>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

interface RunningChild {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the first stdout line that matches. */
  line: (pattern: RegExp) => Promise<string>;
  exited: Promise<number | null>;
}

/** Runs a small ES module in a real second Node process (the same binary), given dataDir as argv[1]. */
function runChild(t: ExecutionContext, source: string, dataDir: string): RunningChild {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, dataDir], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const scan = () => {
    for (const line of output.split('\n')) {
      for (const waiter of [...waiters]) {
        if (waiter.pattern.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  };
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    scan();
  });
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    output: () => output,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve });
        scan();
        void exited.then((code) => reject(new Error(`child exited (${code}) before printing ${pattern}:\n${output}`)));
      }),
    exited,
  };
}

// ---------------------------------------------------------------------------------------------
// Migrations and schema

test.serial('migrations apply, are recorded as Prisma records them, and a second run applies nothing', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const names = await migrationNames();
  t.true(names.length > 0);

  t.deepEqual(await migrate(database.connectionString), names);
  t.deepEqual(await migrate(database.connectionString), []);

  const rows = await query<{
    id: string; checksum: string; migration_name: string; finished_at: Date | null;
    rolled_back_at: Date | null; applied_steps_count: number; logs: string | null;
  }>(database.connectionString, 'SELECT * FROM _prisma_migrations ORDER BY migration_name');
  t.deepEqual(rows.map((row) => row.migration_name), names);
  for (const row of rows) {
    const file = await readFile(path.join(DEFAULT_MIGRATIONS_DIR, row.migration_name, 'migration.sql'));
    t.is(row.checksum, createHash('sha256').update(file).digest('hex'));
    t.regex(row.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    t.true(row.finished_at instanceof Date);
    t.is(row.rolled_back_at, null);
    t.is(row.applied_steps_count, 1);
  }

  // The column layout prisma migrate deploy expects when it takes over.
  const columns = await query<{ column_name: string; data_type: string; character_maximum_length: number | null; is_nullable: string }>(
    database.connectionString,
    `SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns
      WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position`,
  );
  t.deepEqual(columns, [
    { column_name: 'id', data_type: 'character varying', character_maximum_length: 36, is_nullable: 'NO' },
    { column_name: 'checksum', data_type: 'character varying', character_maximum_length: 64, is_nullable: 'NO' },
    { column_name: 'finished_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'YES' },
    { column_name: 'migration_name', data_type: 'character varying', character_maximum_length: 255, is_nullable: 'NO' },
    { column_name: 'logs', data_type: 'text', character_maximum_length: null, is_nullable: 'YES' },
    { column_name: 'rolled_back_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'YES' },
    { column_name: 'started_at', data_type: 'timestamp with time zone', character_maximum_length: null, is_nullable: 'NO' },
    { column_name: 'applied_steps_count', data_type: 'integer', character_maximum_length: null, is_nullable: 'NO' },
  ]);
});

test.serial('the migrated schema is what the generated client expects: users and clients round-trip', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  await migrate(database.connectionString);
  const { prisma } = database;

  const user = await prisma.user.create({ data: { email: 'ada@example.com', passwordHash: 'hash' } });
  t.regex(user.id, /^[0-9a-f-]{36}$/);
  t.false(user.emailVerified);
  t.false(user.disabled);
  t.is(user.name, null);
  const updated = await prisma.user.update({ where: { id: user.id }, data: { name: 'Ada', emailVerified: true } });
  t.is(updated.name, 'Ada');
  t.true(updated.updatedAt.getTime() >= user.updatedAt.getTime());
  t.deepEqual(await prisma.user.findUnique({ where: { email: 'ada@example.com' } }), updated);

  // The unique index on email; a constraint error is not a connection failure and passes through.
  const duplicate = await t.throwsAsync(prisma.user.create({ data: { email: 'ada@example.com', passwordHash: 'other' } }));
  t.false(duplicate instanceof DependencyUnavailable);
  t.is((duplicate as Error & { code?: string }).code, 'P2002');

  const metadata = { client_id: 'app', redirect_uris: ['https://app.example/cb'], client_secret: 's3cret', nested: { a: [1, 2] } };
  const client = await prisma.client.create({ data: { id: 'app', metadata } });
  t.deepEqual(client.metadata, metadata);
  const changed = await prisma.client.update({ where: { id: 'app' }, data: { metadata: { client_id: 'app' } } });
  t.deepEqual(changed.metadata, { client_id: 'app' });
  t.is(await prisma.client.count(), 1);

  const counted = await prisma.$transaction(async (transaction) => {
    await transaction.user.create({ data: { email: 'grace@example.com', passwordHash: 'hash' } });
    return transaction.user.count();
  });
  t.is(counted, 2);

  // An error of the caller's own inside a transaction rolls it back and comes out unchanged, even
  // one that looks like a socket error.
  const own = Object.assign(new Error('no such file'), { code: 'ENOENT' });
  const thrown = await t.throwsAsync(
    prisma.$transaction(async (transaction) => {
      await transaction.user.create({ data: { email: 'rolled-back@example.com', passwordHash: 'hash' } });
      throw own;
    }),
  );
  t.is(thrown, own);
  t.is(await prisma.user.count(), 2);
});

test.serial('a migration changed after it was applied is refused; other line endings are not a change', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const migrationsDir = await copyOfMigrations(t);
  const [first] = await migrationNames();
  await migrate(database.connectionString, migrationsDir);

  const file = path.join(migrationsDir, first!, 'migration.sql');
  const original = await readFile(file, 'utf8');
  await writeFile(file, original.replaceAll('\n', '\r\n'));
  t.deepEqual(await migrate(database.connectionString, migrationsDir), []);

  await writeFile(file, `${original}\n-- an edit\n`);
  const error = await t.throwsAsync(migrate(database.connectionString, migrationsDir), { instanceOf: MigrationError });
  t.regex(error!.message, new RegExp(`${first} was changed after it was applied`));
});

test.serial('a failing migration is rolled back, recorded as rolled back, and applies once fixed', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const migrationsDir = await copyOfMigrations(t);
  const broken = path.join(migrationsDir, '99990101000000_broken');
  await cp(path.join(migrationsDir, (await migrationNames())[0]!), broken, { recursive: true });
  await writeFile(path.join(broken, 'migration.sql'), 'CREATE TABLE "half_done" ("id" INTEGER);\nSELECT 1/0;\n');

  const error = await t.throwsAsync(migrate(database.connectionString, migrationsDir), { instanceOf: MigrationError });
  t.regex(error!.message, /99990101000000_broken failed and was rolled back: division by zero/);
  const tables = await query<{ exists: boolean }>(database.connectionString, `SELECT to_regclass('half_done') IS NOT NULL AS exists`);
  t.false(tables[0]!.exists, 'the failed migration left nothing behind');
  const attempts = await query<{ finished_at: Date | null; rolled_back_at: Date | null; logs: string }>(
    database.connectionString,
    `SELECT finished_at, rolled_back_at, logs FROM _prisma_migrations WHERE migration_name = '99990101000000_broken'`,
  );
  t.is(attempts.length, 1);
  t.is(attempts[0]!.finished_at, null);
  t.true(attempts[0]!.rolled_back_at instanceof Date);
  t.regex(attempts[0]!.logs, /division by zero/);

  await writeFile(path.join(broken, 'migration.sql'), 'CREATE TABLE "half_done" ("id" INTEGER);\n');
  t.deepEqual(await migrate(database.connectionString, migrationsDir), ['99990101000000_broken']);
});

test.serial('an earlier attempt that failed without being rolled back blocks migrating, as in Prisma', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const migrationsDir = await copyOfMigrations(t);
  await migrate(database.connectionString, migrationsDir);
  await query(
    database.connectionString,
    `INSERT INTO _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count)
     VALUES ('00000000-0000-4000-8000-000000000000', $1, '99990101000000_interrupted', now(), 0)`,
    ['0'.repeat(64)],
  );
  await cp(path.join(migrationsDir, (await migrationNames())[0]!), path.join(migrationsDir, '99990101000000_interrupted'), {
    recursive: true,
  });
  await writeFile(path.join(migrationsDir, '99990101000000_interrupted', 'migration.sql'), 'CREATE TABLE "later" ("id" INTEGER);\n');

  const error = await t.throwsAsync(migrate(database.connectionString, migrationsDir), { instanceOf: MigrationError });
  t.regex(error!.message, /99990101000000_interrupted failed in an earlier attempt and was not rolled back/);
  const tables = await query<{ exists: boolean }>(database.connectionString, `SELECT to_regclass('later') IS NOT NULL AS exists`);
  t.false(tables[0]!.exists, 'nothing was applied');
});

test.serial('the names of roles deleted before deleting one took it from people are taken from their accounts, in order, the others untouched', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const migrationsDir = await copyOfMigrations(t);
  const cleanup = '20261205160000_deleted_role_names';
  const withoutCleanup = path.join(await tempDir(t), 'migrations');
  await cp(migrationsDir, withoutCleanup, { recursive: true });
  await rm(path.join(withoutCleanup, cleanup), { recursive: true });
  await migrate(database.connectionString, withoutCleanup);
  await query(database.connectionString, `INSERT INTO roles (name) VALUES ('kept'), ('also-kept')`);
  const person = async (email: string, roles: string[]) => (await query<{ id: string }>(
    database.connectionString,
    `INSERT INTO users (id, email, password_hash, roles, updated_at) VALUES (gen_random_uuid(), $1, 'x', $2, '2026-01-01T00:00:00Z') RETURNING id`,
    [email, roles],
  ))[0]!.id;
  const leftBehind = await person('left-behind@example.com', ['also-kept', 'deleted-long-ago', 'kept']);
  const untouched = await person('untouched@example.com', ['kept']);
  const nobody = await person('nobody@example.com', []);

  t.deepEqual(await migrate(database.connectionString, migrationsDir), [cleanup]);
  const rows = await query<{ id: string; roles: string[]; updated_at: Date }>(database.connectionString, 'SELECT id, roles, updated_at FROM users');
  const byId = new Map(rows.map((row) => [row.id, row]));
  t.deepEqual(byId.get(leftBehind)!.roles, ['also-kept', 'kept']);
  t.true(byId.get(leftBehind)!.updated_at > new Date('2026-01-01T00:00:00Z'), 'a new version of the account');
  for (const id of [untouched, nobody]) t.deepEqual(byId.get(id)!.updated_at, new Date('2026-01-01T00:00:00Z'));
  t.deepEqual(byId.get(untouched)!.roles, ['kept']);
});

test.serial('runners started at once apply each migration exactly once', async (t) => {
  t.timeout(120_000);
  const { database } = await freshDatabase(t);
  const results = await Promise.all([1, 2, 3].map(() => migrate(database.connectionString)));
  t.deepEqual(results.flat().sort(), await migrationNames());
  const rows = await query<{ migration_name: string; count: number }>(
    database.connectionString,
    'SELECT migration_name, count(*)::int AS count FROM _prisma_migrations GROUP BY migration_name',
  );
  t.true(rows.every((row) => row.count === 1));
});

// ---------------------------------------------------------------------------------------------
// The embedded database

test.serial('embedded: data survives closing and reopening', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const first = await openDatabase({ dataDir });
  t.true(first.embedded);
  await migrate(first.connectionString);
  await first.prisma.user.create({ data: { email: 'kept@example.com', passwordHash: 'hash' } });
  await first.close();
  t.false(await exists(path.join(dataDir, 'postgres.lock')), 'closing releases the lock');
  t.false(await exists(path.join(dataDir, '.s.PGSQL.5432')), 'and removes the socket');

  const second = await openDatabase({ dataDir });
  t.teardown(() => second.close());
  t.deepEqual(await migrate(second.connectionString), []);
  t.is((await second.prisma.user.findUnique({ where: { email: 'kept@example.com' } }))?.email, 'kept@example.com');
});

test.serial('embedded: a second process joins the running host and its writes are seen', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const host = await openEmbeddedPostgres(dataDir);
  t.teardown(() => host.close());
  t.true(host.hosting);
  const database = await openDatabase({ databaseUrl: host.connectionString, dataDir });
  t.teardown(() => database.close());
  await migrate(database.connectionString);

  const cli = runChild(
    t,
    `const { openDatabase } = await import(${JSON.stringify(databaseModule)});
     const database = await openDatabase({ dataDir: process.argv[1] });
     await database.prisma.user.create({ data: { email: 'from-child@example.com', passwordHash: 'hash' } });
     await database.close();
     console.log('written');`,
    dataDir,
  );
  t.is(await cli.exited, 0, cli.output());
  t.regex(cli.output(), /written/);
  t.true(host.hosting, 'the first process still hosts');
  t.is((await readFile(path.join(dataDir, 'postgres.lock'), 'utf8')).trim(), String(process.pid));
  t.truthy(await database.prisma.user.findUnique({ where: { email: 'from-child@example.com' } }));
});

test.serial('embedded: processes starting at once elect exactly one host and all share it', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const source = `
    const { openEmbeddedPostgres } = await import(${JSON.stringify(embeddedModule)});
    const { default: pg } = await import('pg');
    const embedded = await openEmbeddedPostgres(process.argv[1]);
    const client = new pg.Client({ connectionString: embedded.connectionString });
    await client.connect();
    await client.query('CREATE TABLE IF NOT EXISTS racers (pid integer primary key, hosting boolean)');
    await client.query('INSERT INTO racers VALUES ($1, $2)', [process.pid, embedded.hosting]);
    await client.end();
    console.log('hosting=' + embedded.hosting);
    // Stay until told, so that the host outlives the others' work.
    process.stdin.resume();
    process.stdin.on('end', async () => { await embedded.close(); process.exit(0); });`;
  const racers = [1, 2, 3].map(() => runChild(t, source, dataDir));
  const reports = await Promise.all(racers.map((racer) => racer.line(/^hosting=/)));
  t.is(reports.filter((line) => line === 'hosting=true').length, 1, racers.map((racer) => racer.output()).join('\n'));
  for (const racer of racers) racer.child.stdin!.end();
  for (const racer of racers) t.is(await racer.exited, 0, racer.output());

  const reopened = await openEmbeddedPostgres(dataDir);
  t.teardown(() => reopened.close());
  const rows = await query<{ pid: number; hosting: boolean }>(reopened.connectionString, 'SELECT * FROM racers');
  t.deepEqual(rows.map((row) => row.pid).sort(), racers.map((racer) => racer.child.pid).sort());
});

test.serial('embedded: the lock of a dead process is taken over, with its leftover socket file', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const gone = spawn(process.execPath, ['-e', '']);
  await once(gone, 'exit');
  await writeFile(path.join(dataDir, 'postgres.lock'), `${gone.pid}\n`);
  await writeFile(path.join(dataDir, '.s.PGSQL.5432'), '');

  const embedded = await openEmbeddedPostgres(dataDir);
  t.teardown(() => embedded.close());
  t.true(embedded.hosting);
  t.is((await readFile(path.join(dataDir, 'postgres.lock'), 'utf8')).trim(), String(process.pid));
  t.deepEqual(await query(embedded.connectionString, 'SELECT 1 AS one'), [{ one: 1 }]);
});

test.serial('embedded: when the host dies, a process that joined it takes over, data intact', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const host = runChild(
    t,
    `const { openEmbeddedPostgres } = await import(${JSON.stringify(embeddedModule)});
     const { default: pg } = await import('pg');
     const embedded = await openEmbeddedPostgres(process.argv[1]);
     const client = new pg.Client({ connectionString: embedded.connectionString });
     await client.connect();
     await client.query("CREATE TABLE survivors (name text); INSERT INTO survivors VALUES ('before the crash')");
     await client.end();
     console.log('hosting=' + embedded.hosting);
     setInterval(() => {}, 1000);`,
    dataDir,
  );
  t.is(await host.line(/^hosting=/), 'hosting=true');

  const joined = await openEmbeddedPostgres(dataDir, { watchIntervalMs: 100 });
  t.teardown(() => joined.close());
  t.false(joined.hosting);
  host.child.kill('SIGKILL');
  await host.exited;

  // The joined process notices by watching the lock: no event tells the test, so it polls.
  await until(() => joined.hosting, 'the joined process to take over hosting', 30_000);
  t.true(joined.hosting, 'took over hosting');
  // Same connection string, new host: data written by the crashed host is there.
  t.deepEqual(await query(joined.connectionString, 'SELECT name FROM survivors'), [{ name: 'before the crash' }]);
});

test.serial('embedded: concurrent connections and transactions do not bleed into each other', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  const embedded = await openEmbeddedPostgres(dataDir);
  t.teardown(() => embedded.close());
  const pool = new pg.Pool({ connectionString: embedded.connectionString, max: 6 });
  t.teardown(() => pool.end());
  await pool.query('CREATE TABLE ledger (owner integer, amount integer)');

  // Distinct statement texts with parameters: a Bind landing on another client's Parse shows up as a
  // wrong answer. The large parameters span many socket reads, where interleaving used to happen.
  const large = 'x'.repeat(1_000_000);
  const answers = await Promise.all(
    Array.from({ length: 120 }, async (_, index) => {
      if (index % 10 === 0) {
        const { rows } = await pool.query(`SELECT length($1::text) + ${index} AS n`, [large]);
        return rows[0].n === large.length + index;
      }
      const { rows } = await pool.query(`SELECT $1::int * 1000 + ${index} AS n`, [index]);
      return rows[0].n === index * 1000 + index;
    }),
  );
  t.true(answers.every(Boolean), 'every query got its own answer');

  // Interleaved transactions: each sees only its own uncommitted rows; rolled back ones vanish.
  const isolated = await Promise.all(
    Array.from({ length: 30 }, async (_, owner) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('INSERT INTO ledger VALUES ($1, 1), ($1, 2)', [owner]);
        // Staggered by turns of the event loop, so that the transactions overlap in varied orders.
        for (let turn = 0; turn < owner % 5; turn += 1) await new Promise((resolve) => setImmediate(resolve));
        const { rows } = await client.query('SELECT count(*)::int AS n FROM ledger WHERE owner = $1', [owner]);
        await client.query(owner % 2 ? 'ROLLBACK' : 'COMMIT');
        return rows[0].n === 2;
      } finally {
        client.release();
      }
    }),
  );
  t.true(isolated.every(Boolean));
  const { rows } = await pool.query('SELECT count(DISTINCT owner)::int AS owners, count(*)::int AS total FROM ledger');
  t.deepEqual(rows[0], { owners: 15, total: 30 });

  // A client that vanishes inside a transaction: its work is rolled back and nobody waits forever.
  const leaver = new pg.Client({ connectionString: embedded.connectionString });
  leaver.on('error', () => {});
  await leaver.connect();
  await leaver.query('BEGIN');
  await leaver.query('INSERT INTO ledger VALUES (999, 1)');
  const waiter = await pool.connect();
  try {
    // Written to the socket at once (the client is idle), so the host has it queued behind the leaver's
    // transaction by the time it answers the leaver's next query, sent after it: no sleep needed.
    const waiting = waiter.query('SELECT count(*)::int AS n FROM ledger WHERE owner = 999');
    let answered = false;
    void waiting.then(() => { answered = true; }, () => {});
    await leaver.query('SELECT 1');
    t.false(answered, 'the query waits behind the open transaction');
    (leaver as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    t.deepEqual((await waiting).rows, [{ n: 0 }]);
  } finally {
    waiter.release();
  }
});

test.serial('embedded: a data directory too deep for a Unix socket path is refused clearly', async (t) => {
  const error = await t.throwsAsync(openEmbeddedPostgres(path.join(os.tmpdir(), 'd'.repeat(120))));
  t.regex(error!.message, /over the 10\d-byte limit of Unix sockets: choose a shorter DATA_DIR/);
});

// ---------------------------------------------------------------------------------------------
// The database being down

test.serial('an unreachable database gives DependencyUnavailable from queries, transactions and ping(), promptly', async (t) => {
  const database = await openDatabase({ databaseUrl: 'postgresql://postgres@127.0.0.1:1/nothing', dataDir: '/nonexistent' });
  t.teardown(() => database.close());
  const fromQuery = await t.throwsAsync(database.prisma.user.findMany(), { instanceOf: DependencyUnavailable });
  t.is(fromQuery!.dependency, 'database');
  t.truthy(fromQuery!.cause, 'the original error is kept as the cause');
  const failures = [
    fromQuery,
    await t.throwsAsync(database.prisma.$queryRaw`select 1`, { instanceOf: DependencyUnavailable }),
    await t.throwsAsync(database.prisma.$transaction(async (transaction) => transaction.user.count()), {
      instanceOf: DependencyUnavailable,
    }),
    await t.throwsAsync(database.ping(), { instanceOf: DependencyUnavailable }),
    await t.throwsAsync(migrate(database.connectionString), { instanceOf: DependencyUnavailable }),
  ];
  // Promptly: each failed on the refused connection itself, none by waiting out the connection timeout.
  for (const failure of failures) t.true(refusedConnection(failure?.cause), `not the refusal: ${describeCause(failure?.cause)}`);
});

/**
 * Whether a database error is the connection being refused (reported at once), as pg or the Prisma adapter says it,
 * under the error that says it in the driver's words (withDriverReason) if there is one.
 */
function refusedConnection(cause: unknown): boolean {
  for (let layer = cause as { code?: unknown; cause?: unknown; meta?: { driverAdapterError?: { cause?: { kind?: unknown } } } } | undefined; layer; layer = layer.cause as typeof layer) {
    if (layer.code === 'ECONNREFUSED' || layer.meta?.driverAdapterError?.cause?.kind === 'DatabaseNotReachable') return true;
  }
  return false;
}

/** What a cause says, for a failed assertion's message. */
function describeCause(cause: unknown): string {
  const messages: string[] = [];
  for (let error = cause as { message?: unknown; cause?: unknown } | undefined; error; error = error.cause as typeof error) messages.push(String(error.message));
  return messages.join(' <- ');
}

test.serial('embedded: while no process hosts, queries fail as unavailable, and recover when it is back', async (t) => {
  t.timeout(120_000);
  const dataDir = await tempDir(t);
  let host = await openEmbeddedPostgres(dataDir);
  // Given the URL, openDatabase treats it as any server: this test controls the host itself.
  const database = await openDatabase({ databaseUrl: host.connectionString, dataDir });
  t.teardown(async () => {
    await database.close();
    await host.close();
  });
  await database.ping();
  await host.close();
  await t.throwsAsync(database.prisma.user.count(), { instanceOf: DependencyUnavailable });
  await t.throwsAsync(database.ping(), { instanceOf: DependencyUnavailable });
  host = await openEmbeddedPostgres(dataDir);
  await database.ping();
});

test.serial('a PostgreSQL server that goes away fails as unavailable, and the pool recovers when it returns', async (t) => {
  if (!serverUrl) return t.pass('needs DATABASE_URL');
  t.timeout(120_000);
  const testDatabase = await createTestDatabase();
  t.teardown(() => testDatabase.drop());
  const target = new URL(testDatabase.databaseUrl!);
  // A TCP relay in front of the server plays the server going down and coming back.
  const relay = await startRelay(target.hostname, Number(target.port || 5432));
  t.teardown(() => relay.stop());
  const relayed = new URL(target);
  relayed.hostname = '127.0.0.1';
  relayed.port = String(relay.port);
  const database = await openDatabase({ databaseUrl: relayed.toString(), dataDir: testDatabase.dataDir });
  t.teardown(() => database.close());
  await migrate(database.connectionString);
  t.is(await database.prisma.user.count(), 0);

  await relay.stop();
  await t.throwsAsync(database.prisma.user.count(), { instanceOf: DependencyUnavailable });
  await t.throwsAsync(database.ping(), { instanceOf: DependencyUnavailable });

  await relay.start();
  t.is(await database.prisma.user.count(), 0);
  await database.ping();
});

test.serial('a database that stops answering fails as unavailable after the query timeout, and recovers on thaw', async (t) => {
  t.timeout(120_000);
  const queryTimeoutMs = 1_000;
  const { database, proxy } = await behindProxy(t, { queryTimeoutMs, connectionTimeoutMs: 1_000 });
  t.is(await database.prisma.user.count(), 0, 'the pool holds an open connection now');

  // Connections are accepted and stay open, but nothing is answered.
  proxy.freeze();
  const fromQuery = await t.throwsAsync(database.prisma.user.count(), { instanceOf: DependencyUnavailable });
  t.is(fromQuery!.dependency, 'database');
  t.regex(String((fromQuery!.cause as Error | undefined)?.message), /Query read timeout/, 'the open connection met the query timeout');
  // The rest get new connections, which meet the connection timeout: each ends by one of the two timeouts,
  // the only things that can end a wait on a server that never answers.
  const fromTransaction = await t.throwsAsync(database.prisma.$transaction(async (transaction) => transaction.user.count()), {
    instanceOf: DependencyUnavailable,
  });
  const fromPing = await t.throwsAsync(database.ping(), { instanceOf: DependencyUnavailable });
  for (const failure of [fromTransaction, fromPing]) t.regex(describeCause(failure?.cause), /Query read timeout|connection timeout/);

  proxy.thaw();
  t.is(await database.prisma.user.count(), 0);
  await database.ping();
  t.is(await database.prisma.$transaction(async (transaction) => transaction.user.count()), 0);
});

test.serial('a connection that hangs inside an interactive transaction is dropped, not handed to the next query', async (t) => {
  // The embedded database serves one transaction at a time: while the hung connection's transaction
  // is open there (the frozen proxy hides that the client left), no other connection is served.
  if (!serverUrl) return t.pass('needs DATABASE_URL');
  t.timeout(120_000);
  const queryTimeoutMs = 1_000;
  // One connection: whatever the transaction leaves in the pool is what the next query gets.
  const { database, proxy } = await behindProxy(t, { queryTimeoutMs, poolSize: 1 });
  const outcome = await database.prisma.$transaction(async (transaction) => {
    await transaction.user.count();
    // The connection in use hangs for good (a broken network path); new connections still work.
    proxy.freeze({ onlyOpenConnections: true });
    await t.throwsAsync(transaction.user.count(), { instanceOf: DependencyUnavailable });
  }).then(() => undefined, (error: unknown) => error);
  t.true(outcome instanceof DependencyUnavailable, 'committing on the dropped connection fails as unavailable');
  // A wedged connection back in the pool would make this wait behind the hung query and fail with the query
  // timeout (nothing moves on it): answered means it was a fresh connection.
  t.is(await database.prisma.user.count(), 0, 'the hung connection was not reused');
});

/**
 * A fresh, migrated database (on DATABASE_URL's server, or embedded) that openDatabase reaches
 * through a CuttableProxy, with the given options. Everything is undone when the test ends.
 */
async function behindProxy(t: ExecutionContext, options: Omit<Parameters<typeof openDatabase>[0], 'databaseUrl' | 'dataDir'>) {
  const testDatabase = await createTestDatabase();
  t.teardown(() => testDatabase.drop());
  let proxied: URL;
  let proxy: CuttableProxy;
  if (testDatabase.databaseUrl) {
    proxied = new URL(testDatabase.databaseUrl);
    proxy = new CuttableProxy({ host: proxied.hostname, port: Number(proxied.port || 5432) });
  } else {
    const embedded = await openEmbeddedPostgres(testDatabase.dataDir);
    t.teardown(() => embedded.close());
    proxy = new CuttableProxy({ path: path.join(testDatabase.dataDir, '.s.PGSQL.5432') });
    proxied = new URL('postgresql://postgres@127.0.0.1/postgres');
  }
  await proxy.start();
  t.teardown(() => proxy.close());
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  const database = await openDatabase({ ...options, databaseUrl: proxied.toString(), dataDir: testDatabase.dataDir });
  t.teardown(async () => {
    // Closing says goodbye to the database: a frozen proxy would only slow that down.
    proxy.thaw();
    await database.close();
  });
  await migrate(database.connectionString);
  return { database, proxy };
}

async function startRelay(host: string, port: number) {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let relayPort = 0;
  const relay = {
    get port() {
      return relayPort;
    },
    async start() {
      server = net.createServer((incoming) => {
        const outgoing = net.connect(port, host);
        for (const socket of [incoming, outgoing]) {
          sockets.add(socket);
          socket.on('error', () => {});
          socket.on('close', () => sockets.delete(socket));
        }
        incoming.pipe(outgoing).pipe(incoming);
      });
      await new Promise<void>((resolve) => server!.listen(relayPort, '127.0.0.1', resolve));
      relayPort = (server.address() as net.AddressInfo).port;
    },
    async stop() {
      if (!server) return;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
      server = undefined;
    },
  };
  await relay.start();
  return relay;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
