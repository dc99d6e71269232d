// WORKERS=2: two server processes share the port (node:cluster) under one primary, which sums their metrics
// on METRICS_PORT, replaces a worker that dies, and on SIGTERM has both finish before it exits.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { ConfigError, loadConfig } from '../src/config/index.ts';
import { createTestDatabase } from './helpers/database.ts';
import { cleanEnvironment, startNode } from './helpers/process.ts';
import { ThrowawayRedisServer, eventually, findFreePort } from './helpers/redis.ts';
import { CuttableProxy } from './helpers/tcp-proxy.ts';

test('WORKERS above 1 needs REDIS_URL: each worker would have a store of its own', (t) => {
  t.throws(() => loadConfig({ WORKERS: '2' }), { instanceOf: ConfigError, message: /^WORKERS above 1 needs REDIS_URL/ });
  t.is(loadConfig({ WORKERS: '2', REDIS_URL: 'redis://127.0.0.1:6379' }).workers, 2);
  t.throws(() => loadConfig({ WORKERS: '0' }), { instanceOf: ConfigError, message: /^WORKERS: must be at least 1/ });
});

test('two workers answer on one port, their metrics are summed on METRICS_PORT (a silent or dead one’s counts kept), one that dies is replaced, and SIGTERM stops them all', async (t) => {
  t.timeout(180_000);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const redis = process.env.REDIS_URL ? undefined : await ThrowawayRedisServer.start();
  t.teardown(async () => redis?.stop());
  const keys = await mkdtemp(path.join(os.tmpdir(), 'gh-workers-'));
  t.teardown(() => rm(keys, { recursive: true, force: true }));
  const [port, metricsPort] = [await findFreePort(), await findFreePort()];
  const { child, finished } = startNode(['src/main.ts'], cleanEnvironment({
    WORKERS: '2', PORT: String(port), METRICS_PORT: String(metricsPort), HOST: '127.0.0.1', KEYS_DIR: keys, DATA_DIR: database.dataDir,
    STORE_PREFIX: `gatehouse-workers-${Date.now()}:`, REDIS_URL: redis?.url ?? process.env.REDIS_URL!, LOG_LEVEL: 'info',
    ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
  }));
  t.teardown(() => void child.kill('SIGKILL'));
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += String(chunk)));
  const lines = () => output.trimEnd().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { pid: number; component?: string; msg: string; route?: string });
  const origin = `http://127.0.0.1:${port}`;
  /** Discovery requests answered so far. */
  let sent = 0;
  const workerPids = async () => {
    // A new connection each time, so that the primary hands them out to both workers.
    const response = await fetch(`${origin}/.well-known/openid-configuration`, { headers: { connection: 'close' } }).catch(failedRequest('discovery'));
    if (response.status !== 200) throw new Error(`discovery ${response.status}`);
    sent += 1;
    await response.body?.cancel();
    return new Set(lines().filter((line) => line.component === 'http').map((line) => line.pid));
  };
  await eventually(async () => {
    if ((await workerPids()).size < 2) throw new Error('not both answering yet');
  }, 120_000);

  // Each worker counts a request once its answer is sent, so the last may be counted a moment after it arrived.
  const scrape = async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`).catch(failedRequest('/metrics'));
    const metrics = await response.text();
    const value = (prefix: string) => metrics.split('\n').filter((line) => line.startsWith(prefix)).reduce((total, line) => total + Number(line.split(' ').at(-1)), 0);
    return { status: response.status, discovery: value('gatehouse_http_requests_total{route="/.well-known/openid-configuration"'),
      running: value('gatehouse_workers_running '), restarts: value('gatehouse_worker_restarts_total ') };
  };
  const allCounted = async () => {
    const { discovery } = await scrape();
    if (discovery !== sent) throw new Error(`${discovery} of ${sent}`);
    return discovery;
  };
  t.is(await eventually(allCounted, 10_000), sent, 'both workers’ requests, summed');

  // Retried as the requests above are: none of them is what this test is about.
  const [victim] = await eventually(workerPids, 10_000);
  await eventually(allCounted, 10_000);
  // A worker that does not answer (stopped here; busy or starting elsewhere) counts with its last answer: the
  // scrape neither fails nor drops its requests.
  process.kill(victim!, 'SIGSTOP');
  t.teardown(() => { try { process.kill(victim!, 'SIGKILL'); } catch { /* gone already */ } });
  t.like(await scrape(), { status: 200, discovery: sent, running: 2 }, 'a silent worker counts with its last answer');
  process.kill(victim!, 'SIGKILL');
  await eventually(async () => {
    if (!output.includes('"msg":"a worker died: starting another"')) throw new Error('not noticed yet');
    const pids = await workerPids();
    const alive = [...pids].filter((pid) => pid !== victim);
    if (alive.length < 2) throw new Error('no replacement answering yet');
  }, 120_000);
  t.pass('a replacement answers');
  // A dead worker's requests stay in the sum, which Prometheus would otherwise read as a counter reset.
  t.is(await eventually(allCounted, 10_000), sent, 'the dead worker’s requests still counted');
  t.like(await scrape(), { running: 2, restarts: 1 });

  child.kill('SIGTERM');
  const result = await finished;
  t.is(result.code, 0, result.stderr);
  const pids = new Set(lines().filter((line) => line.component === 'http').map((line) => line.pid));
  for (const pid of pids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
});

// On PostgreSQL, behind a proxy the test cuts: the embedded database lives in a worker.
(process.env.DATABASE_URL ? test : test.skip)('a worker that dies while the database is down is replaced once it is back; the other serves meanwhile', async (t) => {
  t.timeout(180_000);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const real = new URL(database.databaseUrl!);
  const proxy = new CuttableProxy({ host: real.hostname, port: Number(real.port || 5432) });
  await proxy.start();
  t.teardown(() => proxy.close());
  const proxied = new URL(real);
  proxied.port = String(proxy.port);
  const keys = await mkdtemp(path.join(os.tmpdir(), 'gh-workers-'));
  t.teardown(() => rm(keys, { recursive: true, force: true }));
  const port = await findFreePort();
  const { child, finished } = startNode(['src/main.ts'], cleanEnvironment({
    WORKERS: '2', PORT: String(port), HOST: '127.0.0.1', KEYS_DIR: keys, DATA_DIR: database.dataDir, STARTUP_WAIT: '3',
    STORE_PREFIX: `gatehouse-workers-${Date.now()}:`, REDIS_URL: process.env.REDIS_URL!, LOG_LEVEL: 'info', DATABASE_URL: proxied.toString(),
  }));
  t.teardown(() => void child.kill('SIGKILL'));
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += String(chunk)));
  const origin = `http://127.0.0.1:${port}`;
  const answeringPids = async () => {
    const response = await fetch(`${origin}/jwks`, { headers: { connection: 'close' } }).catch(failedRequest('/jwks'));
    if (response.status !== 200) throw new Error(`/jwks ${response.status}`);
    await response.body?.cancel();
    return new Set(output.trimEnd().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { pid: number; component?: string })
      .filter((line) => line.component === 'http').map((line) => line.pid));
  };
  const [victim] = await eventually(async () => {
    const pids = await answeringPids();
    if (pids.size < 2) throw new Error('not both answering yet');
    return [...pids];
  }, 120_000);

  await proxy.cut();
  process.kill(victim!, 'SIGKILL');
  await eventually(async () => {
    if (!output.includes('"msg":"a replacement worker could not start: trying again"')) throw new Error('no failed replacement yet');
  }, 60_000);
  t.is(child.exitCode, null, 'the primary runs on');
  t.is((await fetch(`${origin}/jwks`, { headers: { connection: 'close' } }).catch(failedRequest('/jwks'))).status, 200, 'the other worker serves');

  await proxy.restore();
  await eventually(async () => {
    const alive = [...await answeringPids()].filter((pid) => pid !== victim);
    if (alive.length < 2) throw new Error('no replacement answering yet');
  }, 120_000);
  child.kill('SIGTERM');
  t.is((await finished).code, 0);
});

/** A request that got no answer, saying which and why (undici's own error says only "fetch failed"). */
function failedRequest(what: string) {
  return (error: Error): never => {
    const cause = error.cause as { code?: string; message?: string } | undefined;
    throw new Error(`${what}: no answer (${cause?.code ?? cause?.message ?? error.message})`);
  };
}
