// `npm run bench:soak`: one Gatehouse process under a steady mix — client_credentials (opaque), refresh-token chains,
// introspection — for BENCH_SOAK_MINUTES (default 10), its memory sampled every 10 s: does it stay flat (a slope
// under 1 MB a minute over the second half)? Prints a summary and writes it under bench/results/soak-*.
import { createBackingServices } from './lib/backing-services.ts';
import { runWithCleanup } from './lib/cleanup.ts';
import { OPAQUE_API } from './lib/fixtures.ts';
import { gatehouseEnvironment, setUpGatehouse, startGatehouse } from './lib/gatehouse.ts';
import { startLoad, type LoadSpec, type Measurement } from './lib/load.ts';
import { freePort, RssSampler } from './lib/processes.ts';
import {
  describeErrors, describeMachine, formatNumber, machine, markdownTable, megabytes, timestampForFiles, writeResults,
} from './lib/report.ts';
import { clientCredentials, fetchAccessToken, introspection, refreshChains, type TokenPool } from './lib/scenarios.ts';
import { positiveSetting } from './lib/settings.ts';

const minutes = positiveSetting('BENCH_SOAK_MINUTES', 10);
const connections = Math.round(positiveSetting('BENCH_CONNECTIONS', 32));
const REFRESH_CHAINS = 8;
const SPARE_CHAINS = 32;
const SAMPLE_SECONDS = 10;
/** "Flat": memory grows by less than this over the second half, in MB a minute. */
const FLAT_SLOPE_MB_PER_MINUTE = 1;
/**
 * The opaque API's tokens last a minute (the least an API allows), so the store holds a steady minute of them; the
 * token being introspected is replaced well before it ends.
 */
const ACCESS_TOKEN_TTL_SECONDS = 60;
const INTROSPECTED_TOKEN_RENEWAL_MS = 20_000;

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

/** Least-squares slope of y over x. */
function slope(points: ReadonlyArray<{ x: number; y: number }>): number {
  const n = points.length;
  if (n < 2) return Number.NaN;
  const meanX = points.reduce((sum, point) => sum + point.x, 0) / n;
  const meanY = points.reduce((sum, point) => sum + point.y, 0) / n;
  const covariance = points.reduce((sum, point) => sum + (point.x - meanX) * (point.y - meanY), 0);
  const variance = points.reduce((sum, point) => sum + (point.x - meanX) ** 2, 0);
  return variance === 0 ? Number.NaN : covariance / variance;
}

await runWithCleanup(async (cleanup) => {
  const startedAt = new Date();
  const host = machine();
  const durationSeconds = Math.round(minutes * 60);
  progress(`soak: ${minutes} min on ${describeMachine(host)}`);
  const backing = await createBackingServices(cleanup);
  const environment = gatehouseEnvironment(backing, await freePort(), { ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL_SECONDS) });
  const setup = await setUpGatehouse(environment, cleanup, { opaque: ACCESS_TOKEN_TTL_SECONDS });
  const server = await startGatehouse('Gatehouse', environment, backing, cleanup);
  const target = setup.target(server);

  let introspected = await fetchAccessToken(target, OPAQUE_API);
  const renewal = setInterval(() => {
    fetchAccessToken(target, OPAQUE_API).then((token) => (introspected = token), (error: unknown) => progress(`could not renew the introspected token: ${String(error)}`));
  }, INTROSPECTED_TOKEN_RENEWAL_MS);
  cleanup.add('stop renewing the introspected token', async () => clearInterval(renewal));

  const pool: TokenPool = { tokens: await target.mintRefreshTokens(REFRESH_CHAINS + SPARE_CHAINS), missed: 0 };
  const mix: Array<{ name: string; connections: number; spec: LoadSpec }> = [
    { name: 'client_credentials, opaque token', connections: Math.max(1, Math.round(connections / 2)), spec: clientCredentials(target, OPAQUE_API) },
    { name: `refresh_token, ${REFRESH_CHAINS} rotating chains`, connections: REFRESH_CHAINS, spec: refreshChains(target, pool) },
    { name: 'introspection, opaque token', connections: Math.max(1, Math.round(connections / 4)), spec: introspection(target, () => introspected) },
  ];
  progress(`soak: ${mix.map((load) => `${load.name} (${load.connections} connections)`).join(', ')}`);

  const sampler = new RssSampler(server.pid, SAMPLE_SECONDS * 1000);
  const loads = mix.map((load) => startLoad({ origin: target.origin, pid: server.pid, connections: load.connections, durationSeconds, spec: load.spec }, { sampleRss: false }));
  cleanup.add('stop the load', async () => loads.forEach((load) => load.stop()));
  const ticker = setInterval(() => {
    const last = sampler.samples.at(-1);
    if (last) progress(`soak: ${Math.round(last.atMs / 60_000 * 10) / 10} min, RSS ${formatNumber(megabytes(last.bytes))} MB`);
  }, 60_000);
  const measured: Measurement[] = await Promise.all(loads.map((load) => load.result));
  clearInterval(ticker);
  sampler.stop();
  await server.stop();

  const samples = sampler.samples.map((sample) => ({ minutes: sample.atMs / 60_000, rssMb: megabytes(sample.bytes) }));
  const secondHalf = samples.filter((sample) => sample.minutes >= minutes / 2);
  const slopeMbPerMinute = slope(secondHalf.map((sample) => ({ x: sample.minutes, y: sample.rssMb })));
  const rows = mix.map((load, index) => ({ name: load.name, connections: load.connections, ...measured[index]! }));
  const results = {
    startedAt: startedAt.toISOString(),
    machine: host,
    minutes,
    gatehouse: 'Gatehouse on PostgreSQL + Redis, one process (node src/main.ts, NODE_ENV=development, LOG_LEVEL=info to /dev/null, rate limits on but out of reach)',
    rss: {
      startMb: samples[0]!.rssMb,
      peakMb: Math.max(...samples.map((sample) => sample.rssMb)),
      endMb: samples.at(-1)!.rssMb,
      secondHalfSlopeMbPerMinute: slopeMbPerMinute,
      flat: slopeMbPerMinute < FLAT_SLOPE_MB_PER_MINUTE,
      samples,
    },
    requestsPerSecond: rows.reduce((sum, row) => sum + row.requestsPerSecond, 0),
    errors: rows.reduce((sum, row) => sum + row.errors, 0),
    loads: rows,
    refreshChainsInReserveLeft: pool.tokens.length,
  };
  const markdown = soakMarkdown(results);
  process.stdout.write(`\n${markdown}\n`);
  const written = await writeResults(`soak-${timestampForFiles(startedAt)}`, 'soak-latest', results, markdown);
  progress(`written: ${written.join(', ')}`);
});

function soakMarkdown(results: {
  startedAt: string; machine: ReturnType<typeof machine>; minutes: number; gatehouse: string;
  rss: { startMb: number; peakMb: number; endMb: number; secondHalfSlopeMbPerMinute: number; flat: boolean; samples: Array<{ minutes: number; rssMb: number }> };
  requestsPerSecond: number; errors: number; loads: Array<{ name: string; connections: number } & Measurement>;
}): string {
  const { rss } = results;
  const loads = markdownTable(
    ['load', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'errors'],
    results.loads.map((load) => [load.name, String(load.connections), formatNumber(load.requestsPerSecond), formatNumber(load.p50Ms), formatNumber(load.p99Ms), String(load.errors)]),
    new Set([1, 2, 3, 4, 5]),
  );
  // Every sample of a short soak; of a long one, the first of each minute and the last.
  const shown = rss.samples.length <= 31 ? rss.samples : rss.samples.filter((sample, index) => index === rss.samples.length - 1
    || Math.floor(sample.minutes) !== Math.floor(rss.samples[index - 1]?.minutes ?? -1));
  const errorLines = results.loads.filter((load) => load.errors).map((load) => `- ${load.name}: ${describeErrors(load.errorKinds)}`);
  return [
    `# Gatehouse soak, ${results.startedAt}`,
    '',
    `- Machine: ${describeMachine(results.machine)}; Gatehouse, PostgreSQL, Redis and the load generator (autocannon, in the bench's process) share it.`,
    `- ${results.gatehouse}, under the three loads below at once for ${results.minutes} min.`,
    `- RSS of its process, sampled every ${SAMPLE_SECONDS} s: start ${formatNumber(rss.startMb)} MB, peak ${formatNumber(rss.peakMb)} MB, end ${formatNumber(rss.endMb)} MB.`,
    `- Slope over the second half (least squares): ${formatNumber(rss.secondHalfSlopeMbPerMinute)} MB/min: **${rss.flat ? 'flat' : 'not flat'}** (flat: under ${FLAT_SLOPE_MB_PER_MINUTE} MB/min).`,
    `- ${formatNumber(results.requestsPerSecond)} req/s in all, ${results.errors} errors.`,
    '',
    loads,
    '',
    ...(errorLines.length ? ['## Errors', '', ...errorLines, ''] : []),
    '## RSS over time',
    '',
    markdownTable(['minute', 'RSS MB'], shown.map((sample) => [sample.minutes.toFixed(1), formatNumber(sample.rssMb)]), new Set([0, 1])),
    '',
  ].join('\n');
}
