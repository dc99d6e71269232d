// `gatehouse check` and what a production start refuses about its surroundings: every unsafe setting at
// once, and a Redis that would forget or evict grants, refresh tokens, "used" markers or revocations.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { Redis } from 'ioredis';
import { ConfigError } from '../src/config/index.ts';
import { createLogger } from '../src/logger.ts';
import { openRuntime } from '../src/runtime.ts';
import { createTestDatabase } from './helpers/database.ts';
import { cleanEnvironment, runNode } from './helpers/process.ts';
import { ThrowawayRedisServer } from './helpers/redis.ts';
import { testConfig } from './helpers/runtime.ts';

const folders: string[] = [];
const servers: ThrowawayRedisServer[] = [];

async function folder(): Promise<string> {
  const made = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-check-'));
  folders.push(made);
  return made;
}

/** A redis-server of its own with these settings, stopped after the tests. */
async function redisWith(settings: string[]): Promise<ThrowawayRedisServer> {
  const server = await ThrowawayRedisServer.start(settings);
  servers.push(server);
  return server;
}

test.after.always(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  await Promise.all(folders.map((made) => rm(made, { recursive: true, force: true })));
});

function production(overrides: Record<string, string>): Record<string, string> {
  return {
    NODE_ENV: 'production',
    ISSUER: 'https://id.example.com',
    TRUST_PROXY: 'true',
    COOKIE_SECRETS: 'c'.repeat(40),
    ENCRYPTION_KEYS: Buffer.alloc(32, 9).toString('base64url'),
    SMTP_URL: 'smtp://127.0.0.1:1',
    MAIL_FROM: 'Example <no-reply@example.com>',
    // Nothing listens there, unless the test run has a PostgreSQL.
    DATABASE_URL: process.env.DATABASE_URL ?? 'postgresql://gatehouse@127.0.0.1:1/gatehouse',
    LOG_LEVEL: 'silent',
    ...overrides,
  };
}

/** `gatehouse check`'s lines, by subject: "store" → ['REFUSED', '- problem', ...]. */
function report(stdout: string): Map<string, string[]> {
  const lines = new Map<string, string[]>();
  let subject = '';
  for (const line of stdout.trimEnd().split('\n')) {
    if (line.startsWith('  - ')) lines.get(subject)!.push(line.slice(2));
    else {
      const [name, ...verdict] = line.split(/\s+/);
      subject = name!;
      lines.set(subject, [verdict.join(' ')]);
    }
  }
  return lines;
}

test('gatehouse check lists every refused setting at once, exit status 1, without starting anything', async (t) => {
  const result = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment({ NODE_ENV: 'production', COOKIE_SECRETS: 'short' }));
  t.is(result.code, 1, result.stderr);
  const found = report(result.stdout);
  t.deepEqual([...found.keys()], ['configuration'], 'nothing is checked with settings that would not start');
  t.is(found.get('configuration')![0], 'REFUSED');
  t.deepEqual(found.get('configuration')!.slice(1).map((line) => /[A-Z][A-Z_]+/.exec(line)?.[0]), [
    'DATABASE_URL', 'REDIS_URL', 'COOKIE_SECRETS', 'ENCRYPTION_KEYS', 'ISSUER', 'TRUST_PROXY', 'SMTP_URL', 'MAIL_FROM',
  ]);
  t.regex(result.stderr, /^gatehouse: 8 problems to fix before Gatehouse can start\n$/);
});

test('gatehouse check on the embedded defaults: every part answers, exit status 0', async (t) => {
  const dataDir = await folder();
  const result = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment({ DATA_DIR: dataDir, KEYS_DIR: dataDir }));
  t.is(result.code, 0, result.stderr);
  t.deepEqual(Object.fromEntries([...report(result.stdout)].map(([subject, [verdict]]) => [subject, verdict])), {
    configuration: 'ok (development)',
    database: `ok (embedded PGlite in ${dataDir})`,
    store: 'ok (in-process (lost on restart))',
  });
});

test('in production, a Redis that does not persist or that evicts is refused, with each reason and its remedy', async (t) => {
  const forgetful = await redisWith(['--maxmemory', '64mb', '--maxmemory-policy', 'allkeys-lru']);
  const result = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(production({ REDIS_URL: forgetful.url })));
  t.is(result.code, 1);
  const found = report(result.stdout);
  t.is(found.get('configuration')![0], 'ok (production)');
  t.deepEqual(found.get('store'), [
    'REFUSED',
    '- Redis does not keep an append-only file, so a restart loses the writes since its last snapshot: set appendonly yes',
    '- Redis evicts keys when its memory is full (maxmemory-policy allkeys-lru): set maxmemory-policy noeviction',
  ]);
  t.regex(found.get('database')![0]!, process.env.DATABASE_URL ? /^ok \(PostgreSQL answers\)$/ : /^REFUSED$/);

  const durable = await redisWith(['--appendonly', 'yes', '--dir', await folder(), '--maxmemory-policy', 'noeviction']);
  const again = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(production({ REDIS_URL: durable.url })));
  t.deepEqual(report(again.stdout).get('store'), ['ok (Redis persists (append-only) and never evicts)']);
  t.is(again.code, process.env.DATABASE_URL ? 0 : 1, again.stdout);
});

test('a production start on a Redis that would forget refuses, naming both reasons', async (t) => {
  const forgetful = await redisWith(['--maxmemory-policy', 'volatile-ttl']);
  const database = await createTestDatabase();
  const keysDir = await folder();
  t.teardown(() => database.drop());
  const config = { ...testConfig(database, keysDir, { REDIS_URL: forgetful.url, COOKIE_SECRETS: 'c'.repeat(40), ENCRYPTION_KEYS: Buffer.alloc(32, 9).toString('base64url') }), mode: 'production' as const };
  const error = await t.throwsAsync(openRuntime(config, createLogger(config)), { instanceOf: ConfigError });
  t.deepEqual(error!.problems.map((problem) => problem.replace(/:.*/, '')), [
    'Redis does not keep an append-only file, so a restart loses the writes since its last snapshot',
    'Redis evicts keys when its memory is full (maxmemory-policy volatile-ttl)',
  ]);
});

test('secrets that cannot be used are refused by check as by a start, every one at once; an unreachable database says why', async (t) => {
  const unusable = production({
    ENCRYPTION_KEYS: 'short', JWKS_FILE: path.join(await folder(), 'missing.json'), DATABASE_URL: 'postgresql://gatehouse@127.0.0.1:1/gatehouse', REDIS_URL: 'redis://127.0.0.1:1',
  });
  const checked = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(unusable));
  t.is(checked.code, 1);
  const found = report(checked.stdout);
  t.deepEqual(found.get('configuration'), [
    'REFUSED',
    `- JWKS_FILE: cannot read ${unusable.JWKS_FILE} (ENOENT)`,
    '- ENCRYPTION_KEYS: every key must be 32 random bytes written in base64url (43 characters)',
  ]);
  t.regex(found.get('database')![1] ?? '', /^- the database is unavailable \(\S.*\)$/, 'with the reason, never an empty one');

  const started = await runNode(['src/main.ts'], cleanEnvironment(unusable));
  t.is(started.code, 1);
  t.regex(started.stderr, /^gatehouse: refusing to start: 2 settings to fix:\n {2}- JWKS_FILE: cannot read .*\n {2}- ENCRYPTION_KEYS: /m);
});

test('a refused setting hides nothing: check still lists the unusable secrets and checks the database and the store; a start names them all', async (t) => {
  // METRICS_TOKEN cannot even be read: the rest is read without it.
  const unsafe = production({
    TRUST_PROXY: 'false', ENCRYPTION_KEYS: 'short', METRICS_TOKEN: 'too-short', DATABASE_URL: 'postgresql://gatehouse@127.0.0.1:1/gatehouse', REDIS_URL: 'redis://127.0.0.1:1',
  });
  const checked = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(unsafe));
  t.is(checked.code, 1);
  const found = report(checked.stdout);
  t.deepEqual(found.get('configuration')!.map((line) => /[A-Z][A-Z_]+/.exec(line)?.[0]), ['REFUSED', 'METRICS_TOKEN', 'TRUST_PROXY', 'ENCRYPTION_KEYS']);
  t.regex(found.get('database')![1] ?? '', /^- the database is unavailable \(.*127\.0\.0\.1:1.*\)$/, 'with the reason: where nothing answers');
  t.regex(found.get('store')![1] ?? '', /unavailable/);

  const started = await runNode(['src/main.ts'], cleanEnvironment(unsafe));
  t.is(started.code, 1);
  t.regex(started.stderr, /^gatehouse: refusing to start: 3 settings to fix:\n {2}- METRICS_TOKEN: must be at least 32 characters\n {2}- production needs TRUST_PROXY=true.*\n {2}- ENCRYPTION_KEYS: /m);
});

(process.env.DATABASE_URL ? test : test.skip)('a database server that refuses the login (no such database) stops a start at once, in one line, and check says why', async (t) => {
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = `/no_such_database_${crypto.randomUUID().slice(0, 8)}`;
  const refusing = production({ DATABASE_URL: url.href, REDIS_URL: 'redis://127.0.0.1:1', STARTUP_WAIT: '30' });
  const started = Date.now();
  const result = await runNode(['src/main.ts'], cleanEnvironment(refusing));
  t.is(result.code, 1);
  t.regex(result.stderr, /^gatehouse: refusing to start: DATABASE_URL: the database refused the login \(database "no_such_database_\w+" does not exist\)\n$/);
  t.true(Date.now() - started < 20_000, 'not waited for as an outage');
  const checked = report((await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(refusing))).stdout);
  t.regex(checked.get('database')![1] ?? '', /does not exist/);
});

test('a Redis that refuses the login is said so, with its own reason, by check and by a start, which does not wait for it', async (t) => {
  const guarded = await redisWith(['--appendonly', 'yes', '--dir', await folder(), '--maxmemory-policy', 'noeviction']);
  // Set once it answers (the helper checks that it does without a password).
  const administrator = new Redis(guarded.url);
  await administrator.config('SET', 'requirepass', 'the-right-password');
  administrator.disconnect();
  const wrong = new URL(guarded.url);
  wrong.password = 'a-wrong-password';
  const environment = production({ REDIS_URL: wrong.href, STARTUP_WAIT: '30' });
  const checked = await runNode(['bin/gatehouse.js', 'check'], cleanEnvironment(environment));
  t.deepEqual(report(checked.stdout).get('store'), ['REFUSED', '- the store refused the login (WRONGPASS invalid username-password pair or user is disabled.)']);
  t.false(checked.stdout.includes('a-wrong-password'), 'the password is never printed');
  if (!process.env.DATABASE_URL) return;
  const started = Date.now();
  const result = await runNode(['src/main.ts'], cleanEnvironment(environment));
  t.is(result.code, 1);
  t.regex(result.stderr, /^gatehouse: refusing to start: REDIS_URL: the store refused the login \(WRONGPASS [^\n]*\)\n$/);
  t.true(Date.now() - started < 20_000, 'not waited for as an outage');
});
