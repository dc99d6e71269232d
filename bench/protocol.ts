// `npm run bench`: Gatehouse's protocol endpoints and password sign-in measured against bare oidc-provider 9, each
// server in a process of its own on this machine, loaded by autocannon from this one. Each scenario takes the two
// servers in turn, BENCH_ROUNDS times (default 3) for BENCH_DURATION seconds (default 6), the order alternating: on a
// shared machine what else runs moves a rate by a third over minutes, and a ratio of two loads run seconds apart far
// less. BENCH_CONNECTIONS (default 32). Prints a table and writes it under bench/results/, with issue 14's targets
// and, for each one missed, what the run saw of its cause (CPU profiles, memory by part).
import { mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { createBackingServices, type BackingServices } from './lib/backing-services.ts';
import { startBaseline } from './lib/baseline.ts';
import { type Cleanup, runWithCleanup } from './lib/cleanup.ts';
import { summarizeCpuProfile, type CpuProfileSummary } from './lib/cpu-profile.ts';
import { OPAQUE_API, type Target } from './lib/fixtures.ts';
import { gatehouseEnvironment, setUpGatehouse, startGatehouse, type GatehouseProcess, type GatehouseSetup } from './lib/gatehouse.ts';
import { startLoad, type Measurement } from './lib/load.ts';
import { PROTOCOL_SCENARIOS, SCENARIOS, type Scenario } from './lib/protocol-scenarios.ts';
import { freePort, treeRssBytes } from './lib/processes.ts';
import {
  describeErrors, describeMachine, formatNumber, machine, markdownTable, median, megabytes, timestampForFiles, writeResults,
} from './lib/report.ts';
import { clientCredentials } from './lib/scenarios.ts';
import { argon2VerifyMs, measureSignIns, type SignInMeasurement } from './lib/sign-in-load.ts';
import { positiveSetting } from './lib/settings.ts';

const rounds = Math.round(positiveSetting('BENCH_ROUNDS', 3));
/** Seconds of each round. */
const durationSeconds = positiveSetting('BENCH_DURATION', 6);
const connections = Math.round(positiveSetting('BENCH_CONNECTIONS', 32));
/** The code exchange mints codes for at least this many requests per second (more if a token request ran faster). */
const LEAST_EXPECTED_RATE = 200;
const WARM_UP_SECONDS = 2;

interface Side {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  errorKinds: Record<string, number>;
  peakRssMb: number;
  serverCpuPercent: number;
  machineBusyPercent: number;
  notes: string[];
}

interface Row {
  scenario: string;
  connections: number;
  /** Undefined: the baseline cannot do it (baselineNote says why). */
  baseline: Side | undefined;
  baselineNote?: string | undefined;
  gatehouse: Side;
  /** The median of the rounds' ratios. */
  ratio: number | undefined;
  /** Each round's Gatehouse requests per second over the baseline's. */
  roundRatios: number[];
}

function progress(message: string): void {
  process.stderr.write(`bench: ${message}\n`);
}

function side(measurement: Measurement): Side {
  return {
    requestsPerSecond: measurement.requestsPerSecond, p50Ms: measurement.p50Ms, p99Ms: measurement.p99Ms, errors: measurement.errors,
    errorKinds: measurement.errorKinds, peakRssMb: megabytes(measurement.peakRssBytes),
    serverCpuPercent: measurement.serverCpuPercent, machineBusyPercent: measurement.machineBusyPercent, notes: measurement.notes,
  };
}

/** Runs one scenario on one target, or says why the target cannot take it. */
async function runScenario(scenario: Scenario, target: Target, earlier: ReadonlyMap<string, Measurement>): Promise<Measurement | { unsupported: string }> {
  const prepared = await scenario.prepare(target, { durationSeconds, earlier, leastExpectedRate: LEAST_EXPECTED_RATE, progress });
  if ('unsupported' in prepared) {
    progress(`${target.name.padEnd(18)} ${scenario.name}: ${prepared.unsupported}`);
    return prepared;
  }
  const load = startLoad({
    origin: target.origin, pid: target.pid, connections: scenario.connections ?? connections, durationSeconds, spec: prepared.spec, overallRate: prepared.overallRate,
  });
  prepared.started?.(load);
  const measurement = await load.result;
  measurement.notes.push(...prepared.notes?.() ?? []);
  progress(`${target.name.padEnd(18)} ${scenario.name}: ${formatNumber(measurement.requestsPerSecond)} req/s, p99 ${measurement.p99Ms} ms, `
    + `${measurement.errors} errors, ${formatNumber(megabytes(measurement.peakRssBytes))} MB, CPU ${Math.round(measurement.serverCpuPercent)}% `
    + `(machine ${Math.round(measurement.machineBusyPercent)}% busy)`);
  return measurement;
}

/** A scenario's rounds on the two servers, each side's rounds made one measurement, and each round's ratio. */
interface Alternated {
  baseline: Measurement | { unsupported: string };
  gatehouse: Measurement;
  roundRatios: number[];
}

/**
 * One scenario on the baseline and on Gatehouse in turn, `rounds` times, the order alternating (the baseline first
 * in the first round), so that both meet the same moments of the machine. `earlier`: each side's scenarios measured
 * before (the half-rate and code-exchange scenarios read them); this one's measurement is added.
 */
async function alternate(
  scenario: Scenario, targets: { baseline: Target; gatehouse: Target }, earlier: { baseline: Map<string, Measurement>; gatehouse: Map<string, Measurement> },
): Promise<Alternated> {
  const measured = { baseline: [] as Measurement[], gatehouse: [] as Measurement[] };
  let baselineCannot: string | undefined;
  for (let round = 0; round < rounds; round += 1) {
    for (const side of round % 2 ? ['gatehouse', 'baseline'] as const : ['baseline', 'gatehouse'] as const) {
      if (side === 'baseline' && baselineCannot !== undefined) continue;
      const result = await runScenario(scenario, targets[side], earlier[side]);
      if (!('unsupported' in result)) measured[side].push(result);
      else if (side === 'baseline') baselineCannot = result.unsupported;
      else throw new Error(`${targets.gatehouse.name} cannot run "${scenario.name}": ${result.unsupported}`);
    }
  }
  const gatehouse = combineRounds(measured.gatehouse);
  earlier.gatehouse.set(scenario.name, gatehouse);
  if (baselineCannot !== undefined) return { baseline: { unsupported: baselineCannot }, gatehouse, roundRatios: [] };
  const baseline = combineRounds(measured.baseline);
  earlier.baseline.set(scenario.name, baseline);
  const roundRatios = measured.gatehouse.map((round, index) => round.requestsPerSecond / measured.baseline[index]!.requestsPerSecond);
  return { baseline, gatehouse, roundRatios };
}

/**
 * One side's rounds as one measurement: the median round's (by requests per second) rate, latencies and CPU; every
 * round's requests and errors; the highest RSS.
 */
function combineRounds(measurements: readonly Measurement[]): Measurement {
  const byRate = [...measurements].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
  const middle = byRate[Math.floor((byRate.length - 1) / 2)]!;
  const errorKinds: Record<string, number> = {};
  for (const { errorKinds: kinds } of measurements) for (const [kind, count] of Object.entries(kinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + count;
  return {
    ...middle,
    requests: measurements.reduce((sum, round) => sum + round.requests, 0),
    errors: measurements.reduce((sum, round) => sum + round.errors, 0),
    errorKinds,
    peakRssBytes: Math.max(...measurements.map((round) => round.peakRssBytes)),
    notes: [...new Set(measurements.flatMap((round) => round.notes))],
  };
}

function row(scenario: Scenario, name: string, { baseline, gatehouse, roundRatios }: Alternated): Row {
  const supported = !('unsupported' in baseline);
  return {
    scenario: name,
    connections: scenario.connections ?? connections,
    baseline: supported ? side(baseline) : undefined,
    baselineNote: supported ? undefined : baseline.unsupported,
    gatehouse: side(gatehouse),
    ratio: supported ? median(roundRatios) : undefined,
    roundRatios,
  };
}

/** A short load first, so that neither server is measured cold (its JIT, its connection pools). */
async function warmUp(target: Target): Promise<void> {
  const warm = await startLoad({ origin: target.origin, pid: target.pid, connections, durationSeconds: WARM_UP_SECONDS, spec: clientCredentials(target, OPAQUE_API) }, { sampleRss: false }).result;
  if (warm.errors) progress(`${target.name}: ${warm.errors} errors while warming up (${describeErrors(warm.errorKinds)})`);
}

await runWithCleanup(async (cleanup) => {
  const startedAt = new Date();
  const host = machine();
  progress(`${rounds} rounds of ${durationSeconds} s per scenario and server, ${connections} connections, on ${describeMachine(host)}`);
  const backing = await createBackingServices(cleanup);
  const singlePort = await freePort();
  const metricsPort = await freePort();
  const singleEnvironment = gatehouseEnvironment(backing, singlePort, { METRICS_PORT: String(metricsPort) });
  progress('setting up Gatehouse: database, clients, APIs, a person');
  const setup = await setUpGatehouse(singleEnvironment, cleanup);
  // Before any load, so that nothing else competes for the core it runs on.
  const argon2 = setup.runtime.config.argon2;
  const verifyMs = await argon2VerifyMs(argon2);
  progress(`argon2id (${argon2.memoryCost} KiB, t=${argon2.timeCost}, p=${argon2.parallelism}): ${verifyMs.toFixed(1)} ms a verification`);

  const baseline = await startBaseline(backing, cleanup);
  const single = await startGatehouse('Gatehouse', singleEnvironment, backing, cleanup);
  const gatehouse = setup.target(single);
  const rssAtStartMb = { baseline: megabytes(treeRssBytes(baseline.pid)), gatehouse: megabytes(treeRssBytes(single.pid)), cluster: 0 };
  await warmUp(baseline);
  await warmUp(gatehouse);

  const rows: Row[] = [];
  const earlier = { baseline: new Map<string, Measurement>(), gatehouse: new Map<string, Measurement>() };
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  let halfRateServerTimes: ServerTimes | undefined;
  for (const scenario of PROTOCOL_SCENARIOS) {
    // Around the half-rate loads, the server's own times: how much of the p99 measured here they account for.
    const tokenRequestsBefore = scenario.name === SCENARIOS.clientCredentialsHalfRate ? await tokenRequestTimes(metricsUrl) : undefined;
    const alternated = await alternate(scenario, { baseline, gatehouse }, earlier);
    if (tokenRequestsBefore) halfRateServerTimes = difference(await tokenRequestTimes(metricsUrl), tokenRequestsBefore);
    rows.push(row(scenario, scenario.name, alternated));
  }

  // Where the memory is, while the scenarios' load has just ended (V8 gives back little of it at once).
  const memory = await memoryBreakdown(metricsUrl);

  const signInWorkers = host.cpus * 2;
  progress(`Gatehouse password sign-in, ${signInWorkers} at once`);
  const signIn = await measureSignIns({ origin: gatehouse.origin, pid: gatehouse.pid, clientId: gatehouse.publicClientId, workers: signInWorkers, durationSeconds });
  progress(`Gatehouse password sign-in: ${formatNumber(signIn.signInsPerSecond)}/s, p99 ${formatNumber(signIn.p99Ms)} ms, ${signIn.errors} errors`);
  await single.stop();

  // WORKERS=2: the same service client and APIs, on a cluster of its own.
  const clusterPort = await freePort();
  const cluster = await startGatehouse('Gatehouse WORKERS=2', gatehouseEnvironment(backing, clusterPort, { WORKERS: '2' }), backing, cleanup);
  progress(`Gatehouse WORKERS=2: ${cluster.processCount} process${cluster.processCount === 1 ? ' (WORKERS is not supported yet: one process)' : 'es'}`);
  const clustered = { ...setup.target(cluster), name: 'gatehouse WORKERS=2' };
  rssAtStartMb.cluster = megabytes(treeRssBytes(cluster.pid));
  await warmUp(clustered);
  // The baseline (one process) takes these loads again, in turn with the cluster.
  const clusterEarlier = { baseline: new Map<string, Measurement>(), gatehouse: new Map<string, Measurement>() };
  for (const name of [SCENARIOS.clientCredentialsOpaque, SCENARIOS.introspectionOpaque]) {
    const scenario = PROTOCOL_SCENARIOS.find((candidate) => candidate.name === name)!;
    rows.push(row(scenario, `${name} (WORKERS=2)`, await alternate(scenario, { baseline, gatehouse: clustered }, clusterEarlier)));
  }
  await cluster.stop();

  const checks = targets(rows, signIn, cluster);
  const profiled = await profileMissedScenarios(checks, { backing, setup, cleanup });

  const results = {
    startedAt: startedAt.toISOString(),
    machine: host,
    rounds,
    durationSeconds,
    connections,
    gatehouse: 'Gatehouse on PostgreSQL + Redis, one process (node src/main.ts with the Node.js options of npm start, NODE_ENV=development, LOG_LEVEL=info to /dev/null, rate limits on but out of reach)',
    baseline: 'bare oidc-provider 9, in-memory adapter, one process (bench/baseline-server.ts)',
    clusterProcesses: cluster.processCount,
    rssAtStartMb,
    rows,
    signIn: { ...signIn, peakRssMb: megabytes(signIn.peakRssBytes), signInsPerSecondPerCore: signIn.signInsPerSecond / host.cpus },
    argon2: { ...argon2, verifyMs, ceilingPerCore: 1000 / verifyMs },
    targets: checks,
    memory,
    halfRateServerTimes,
    profiles: profiled,
  };
  const markdown = protocolMarkdown(results);
  process.stdout.write(`\n${markdown}\n`);
  const written = await writeResults(timestampForFiles(startedAt), 'latest', results, markdown);
  progress(`written: ${written.join(', ')}`);
});

interface ProfiledScenario {
  scenario: string;
  /** The profiled server's rate (the profiler costs a little of it). */
  requestsPerSecond: number;
  summary: CpuProfileSummary;
}

/**
 * Each single-process scenario that fell short of its target, run again on a Gatehouse of its own started with
 * V8's CPU profiler (`--cpu-prof`, written when it stops): where its main thread's time went under that load.
 */
async function profileMissedScenarios(
  checks: readonly TargetCheck[], { backing, setup, cleanup }: { backing: BackingServices; setup: GatehouseSetup; cleanup: Cleanup },
): Promise<ProfiledScenario[]> {
  const profiled: ProfiledScenario[] = [];
  for (const name of checks.flatMap((check) => check.shortScenarios ?? [])) {
    const scenario = PROTOCOL_SCENARIOS.find((candidate) => candidate.name === name)!;
    const folder = path.join(backing.folder, 'profiles', scenario.key);
    mkdirSync(folder, { recursive: true });
    const environment = gatehouseEnvironment(backing, await freePort(), { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${folder}` });
    const server = await startGatehouse(`Gatehouse profiled (${scenario.key})`, environment, backing, cleanup);
    const target = setup.target(server);
    await warmUp(target);
    const result = await runScenario(scenario, target, new Map());
    const loadEnded = performance.now();
    await server.stop();
    const stopped = performance.now();
    const file = readdirSync(folder).find((entry) => entry.endsWith('.cpuprofile'));
    if ('unsupported' in result || file === undefined) {
      progress(`${name}: no profile (${'unsupported' in result ? result.unsupported : 'the server wrote none'})`);
      continue;
    }
    // The load's stretch: the profile ends as the server stops.
    const window = { fromEndMs: stopped - loadEnded + durationSeconds * 1000, untilEndMs: stopped - loadEnded };
    profiled.push({ scenario: name, requestsPerSecond: result.requestsPerSecond, summary: summarizeCpuProfile(path.join(folder, file), window) });
  }
  return profiled;
}

interface MemoryBreakdown {
  residentMb: number;
  heapTotalMb: number;
  heapUsedMb: number;
  /** Each V8 heap space's size (new, old, code, large_object...), largest first. */
  spacesMb: Array<{ space: string; sizeMb: number }>;
  externalMb: number;
}

/** The server's memory by part, from its own process metrics (prom-client's, on METRICS_PORT). */
async function memoryBreakdown(metricsUrl: string): Promise<MemoryBreakdown> {
  const text = await (await fetch(metricsUrl)).text();
  const value = (name: string) => {
    const line = text.split('\n').find((candidate) => candidate.startsWith(`gatehouse_${name} `));
    return line === undefined ? Number.NaN : megabytes(Number(line.slice(line.lastIndexOf(' ') + 1)));
  };
  const spaces = [...text.matchAll(/^gatehouse_nodejs_heap_space_size_total_bytes\{space="(\w+)"\} (\S+)$/gm)]
    .map(([, space, bytes]) => ({ space: space!, sizeMb: megabytes(Number(bytes)) }))
    .sort((a, b) => b.sizeMb - a.sizeMb);
  return {
    residentMb: value('process_resident_memory_bytes'),
    heapTotalMb: value('nodejs_heap_size_total_bytes'),
    heapUsedMb: value('nodejs_heap_size_used_bytes'),
    spacesMb: spaces,
    externalMb: value('nodejs_external_memory_bytes'),
  };
}

/** How many token requests the server answered within each of its histogram's bounds (seconds), cumulative. */
type ServerTimes = Array<{ withinSeconds: number; count: number }>;

/** The server's own times for POST /token (gatehouse_http_request_duration_seconds: from reading a request to its answer). */
async function tokenRequestTimes(metricsUrl: string): Promise<ServerTimes> {
  const text = await (await fetch(metricsUrl)).text();
  return [...text.matchAll(/^gatehouse_http_request_duration_seconds_bucket\{le="([^"]+)",route="\/token",method="POST"\} (\d+)$/gm)]
    .map(([, bound, count]) => ({ withinSeconds: bound === '+Inf' ? Infinity : Number(bound), count: Number(count) }));
}

function difference(after: ServerTimes, before: ServerTimes): ServerTimes {
  return after.map(({ withinSeconds, count }) => ({ withinSeconds, count: count - (before.find((bucket) => bucket.withinSeconds === withinSeconds)?.count ?? 0) }));
}

interface TargetCheck {
  target: string;
  measured: string;
  met: boolean;
  /** The single-process scenarios that fell short of a throughput target: profiled after the run. */
  shortScenarios?: string[];
}

/** Issue 14's targets, each met or missed by this run. */
function targets(rows: readonly Row[], signIn: SignInMeasurement, cluster: GatehouseProcess): TargetCheck[] {
  const row = (name: string) => rows.find((candidate) => candidate.scenario === name)!;
  const ratios = (names: readonly string[], threshold: number, target: string): TargetCheck => {
    const measured = names.map((name) => ({ name, ratio: row(name).ratio ?? Number.NaN }));
    const short = measured.filter(({ ratio }) => !(ratio >= threshold)).map(({ name }) => name);
    return {
      target,
      measured: measured.map(({ name, ratio }) => `${name}: ${formatNumber(ratio)}×`).join('; '),
      met: short.length === 0,
      shortScenarios: short,
    };
  };
  const singleProcessRows = rows.filter((candidate) => !candidate.scenario.endsWith('(WORKERS=2)'));
  const errors = rows.reduce((sum, candidate) => sum + candidate.gatehouse.errors, 0) + signIn.errors;
  const peakRssMb = Math.max(...singleProcessRows.map((candidate) => candidate.gatehouse.peakRssMb), megabytes(signIn.peakRssBytes));
  const clusterRatio = row(`${SCENARIOS.clientCredentialsOpaque} (WORKERS=2)`).ratio ?? Number.NaN;
  return [
    ratios([SCENARIOS.clientCredentialsOpaque, SCENARIOS.clientCredentialsJwt], 0.6, 'client_credentials ≥ 0.6× the baseline'),
    ratios([SCENARIOS.introspectionOpaque], 0.6, 'introspection ≥ 0.6× the baseline (the baseline does not introspect JWTs)'),
    ratios([SCENARIOS.refresh], 0.5, 'refresh ≥ 0.5× the baseline'),
    {
      target: 'WORKERS=2 client_credentials ≥ 1.3× the single-process baseline',
      measured: `${formatNumber(clusterRatio)}× (${cluster.processCount === 1 ? 'WORKERS not supported yet: one process' : `${cluster.processCount} processes`})`,
      met: clusterRatio >= 1.3,
    },
    {
      target: 'p99 < 25 ms at half the maximum rate (client_credentials, opaque)',
      measured: `${formatNumber(row(SCENARIOS.clientCredentialsHalfRate).gatehouse.p99Ms)} ms at ${formatNumber(row(SCENARIOS.clientCredentialsHalfRate).gatehouse.requestsPerSecond)} req/s`,
      met: row(SCENARIOS.clientCredentialsHalfRate).gatehouse.p99Ms < 25,
    },
    { target: 'zero errors (every Gatehouse row and the sign-ins)', measured: `${errors}`, met: errors === 0 },
    { target: 'RSS < 200 MB (one Gatehouse process, its peak over every scenario)', measured: `${formatNumber(peakRssMb)} MB`, met: peakRssMb < 200 },
  ];
}

function protocolMarkdown(results: {
  startedAt: string; machine: ReturnType<typeof machine>; rounds: number; durationSeconds: number; connections: number; gatehouse: string; baseline: string;
  clusterProcesses: number; rssAtStartMb: { baseline: number; gatehouse: number; cluster: number }; rows: Row[]; signIn: SignInMeasurement & { peakRssMb: number; signInsPerSecondPerCore: number };
  argon2: { memoryCost: number; timeCost: number; parallelism: number; verifyMs: number; ceilingPerCore: number }; targets: TargetCheck[];
  memory: MemoryBreakdown; halfRateServerTimes: ServerTimes | undefined; profiles: ProfiledScenario[];
}): string {
  const cells = (measured: Side | undefined) => (measured
    ? [formatNumber(measured.requestsPerSecond), formatNumber(measured.p50Ms), formatNumber(measured.p99Ms), String(measured.errors), formatNumber(measured.peakRssMb),
      String(Math.round(measured.serverCpuPercent)), String(Math.round(measured.machineBusyPercent))]
    : ['—', '—', '—', '—', '—', '—', '—']);
  const { signIn, argon2 } = results;
  const table = markdownTable(
    [
      'scenario', 'conns', 'baseline req/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'CPU %', 'machine %',
      'Gatehouse req/s', 'p50 ms', 'p99 ms', 'errors', 'RSS MB', 'CPU %', 'machine %', 'ratio',
    ],
    [
      ...results.rows.map((row) => [row.scenario, String(row.connections), ...cells(row.baseline), ...cells(row.gatehouse), describeRatio(row)]),
      ['password sign-in (Gatehouse only)', String(signIn.workers), ...cells(undefined),
        formatNumber(signIn.signInsPerSecond), formatNumber(signIn.p50Ms), formatNumber(signIn.p99Ms), String(signIn.errors), formatNumber(signIn.peakRssMb), '—', '—', '—'],
    ],
    new Set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]),
  );
  const errorLines = [
    ...results.rows.flatMap((row) => [
      ...(row.baseline?.errors ? [`- ${row.scenario}, baseline: ${describeErrors(row.baseline.errorKinds)}`] : []),
      ...(row.gatehouse.errors ? [`- ${row.scenario}, Gatehouse: ${describeErrors(row.gatehouse.errorKinds)}`] : []),
    ]),
    ...(signIn.errors ? [`- password sign-in: ${describeErrors(signIn.errorKinds)}`] : []),
  ];
  const notes = results.rows.flatMap((row) => [
    ...(row.baselineNote ? [`- ${row.scenario}: baseline ${row.baselineNote}.`] : []),
    ...(row.baseline?.notes.length && !row.baselineNote ? [`- ${row.scenario}, baseline: ${row.baseline.notes.join('; ')}.`] : []),
    ...(row.gatehouse.notes.length ? [`- ${row.scenario}, Gatehouse: ${row.gatehouse.notes.join('; ')}.`] : []),
  ]);
  return [
    `# Gatehouse protocol benchmark, ${results.startedAt}`,
    '',
    `- Machine: ${describeMachine(results.machine)}; the servers, PostgreSQL, Redis and the load generator (autocannon, in the bench's process) share it.`,
    `- Each scenario: ${results.rounds} rounds of ${results.durationSeconds} s on each server, ${results.connections} connections unless the row says otherwise, the two servers in turn (the baseline first in the first round, then the order alternating).`,
    `- Gatehouse: ${results.gatehouse}.`,
    `- Baseline: ${results.baseline}.`,
    `- WORKERS=2 rows: the same Gatehouse with WORKERS=2, ${results.clusterProcesses === 1 ? 'which ran as one process (WORKERS not supported yet)' : `${results.clusterProcesses} processes (a primary and its workers)`}; their baseline is the single-process one, loaded again in turn with them.`,
    `- RSS after start, before any load: baseline ${formatNumber(results.rssAtStartMb.baseline)} MB, Gatehouse ${formatNumber(results.rssAtStartMb.gatehouse)} MB, Gatehouse WORKERS=2 ${formatNumber(results.rssAtStartMb.cluster)} MB.`,
    '- req/s: mean of the per-second counts; p50 and p99: latency of the 2xx answers; errors: non-2xx, connection errors, timeouts and 2xx answers that were not the one expected; RSS: peak of the server\'s process tree, sampled every 250 ms; CPU %: what the server\'s processes used, in percent of one CPU (above 100: several threads at once — the garbage collector\'s among them); machine %: how busy all the CPUs were (servers, load generator, PostgreSQL, Redis); req/s, p50, p99 and CPU are those of each server\'s median round (by req/s), errors those of every round, RSS the highest; ratio: the median of the rounds\' ratios (Gatehouse req/s ÷ baseline req/s in the same round), and in brackets the lowest and highest.',
    '',
    table,
    '',
    '## Issue 14 targets',
    '',
    ...results.targets.map((check) => `- **${check.met ? 'met' : 'missed'}**: ${check.target}: ${check.measured}`),
    '',
    ...whyMissed(results),
    '## Password sign-in',
    '',
    `${signIn.workers} sign-ins at once (2 per CPU), each: the authorization URL (PKCE), the login page, the login form; a redirect onward counts.`,
    `${formatNumber(signIn.signInsPerSecond)} sign-ins/s, ${formatNumber(signIn.signInsPerSecondPerCore)} per core (÷ ${results.machine.cpus} CPUs); `
      + `argon2id (${argon2.memoryCost} KiB, t=${argon2.timeCost}, p=${argon2.parallelism}) takes ${formatNumber(argon2.verifyMs)} ms a verification here, `
      + `a ceiling of ${formatNumber(argon2.ceilingPerCore)} sign-ins/s per core.`,
    '',
    ...(errorLines.length ? ['## Errors', '', ...errorLines, ''] : []),
    ...(notes.length ? ['## Notes', '', ...notes, ''] : []),
  ].join('\n');
}

/** The median ratio, and the rounds' range beside it. */
function describeRatio({ ratio, roundRatios }: Row): string {
  if (ratio === undefined) return '—';
  const range = roundRatios.length > 1 ? ` (${formatNumber(Math.min(...roundRatios))}–${formatNumber(Math.max(...roundRatios))})` : '';
  return `${formatNumber(ratio)}×${range}`;
}

/** Each owner of 2% or more, then the rest together. */
function describeShares(owners: CpuProfileSummary['owners']): string {
  const shown = owners.filter(({ percent: share }) => share >= 2);
  const rest = owners.filter((owner) => !shown.includes(owner)).reduce((sum, { percent: share }) => sum + share, 0);
  return [...shown.map(({ owner, percent: share }) => `${owner} ${percent(share)}`), ...(rest > 0 ? [`the rest ${percent(rest)}`] : [])].join(', ');
}

function percent(value: number): string {
  return `${Math.round(value)}%`;
}

/**
 * The server's own share of the latency: its histogram counts from reading a request to answering it, so what the
 * load generator measured beyond that was spent before the server read the request (or in the generator).
 */
function describeServerTimes(times: ServerTimes): string {
  const total = times.at(-1)?.count ?? 0;
  if (!total) return '';
  const shares = [0.01, 0.025].map((bound) => {
    const within = times.find(({ withinSeconds }) => withinSeconds === bound)?.count ?? 0;
    return `${formatNumber((100 * within) / total)}% within ${bound * 1000} ms`;
  });
  return `By the server's own times (from reading a request to its answer, ${formatNumber(total)} token requests), ${shares.join(' and ')}: `
    + 'the rest of the p99 the load generator measured was spent before the server read the request (its main thread busy with '
    + 'other requests and the garbage collector) or in the load generator.';
}

/** For each missed target, what the run measured of its cause: a CPU profile, the memory by part, how busy the machine was. */
function whyMissed({ targets: checks, rows, memory, halfRateServerTimes, profiles }: {
  targets: readonly TargetCheck[]; rows: readonly Row[]; memory: MemoryBreakdown; halfRateServerTimes: ServerTimes | undefined; profiles: readonly ProfiledScenario[];
}): string[] {
  const missed = (prefix: string) => checks.some((check) => check.target.startsWith(prefix) && !check.met);
  const lines = profiles.map(({ scenario, requestsPerSecond, summary }) => `- **${scenario}** (CPU profile of a Gatehouse of its own through this load, `
    + `${formatNumber(requestsPerSecond)} req/s with the profiler on): its main thread was busy ${percent(summary.busyPercent)} of the time. `
    + `Of that busy time: ${describeShares(summary.owners)}. `
    + `The functions that ran longest themselves: ${summary.hottest.map(({ name, where, percent: share }) => `${name} (${where}) ${share.toFixed(1)}%`).join(', ')}.`);
  const clustered = rows.find((row) => row.scenario.endsWith('(WORKERS=2)'));
  if (clustered && missed('WORKERS=2')) {
    lines.push(`- **WORKERS=2**: the machine's CPUs were ${percent(clustered.gatehouse.machineBusyPercent)} busy under that load (the workers, their primary, `
      + `PostgreSQL, Redis and the load generator share them); the workers together used ${percent(clustered.gatehouse.serverCpuPercent)} of one CPU.`);
  }
  const halfRate = rows.find((row) => row.scenario === SCENARIOS.clientCredentialsHalfRate);
  if (halfRate && missed('p99')) {
    lines.push(`- **p99 at half rate**: at ${formatNumber(halfRate.gatehouse.requestsPerSecond)} req/s Gatehouse used ${percent(halfRate.gatehouse.serverCpuPercent)} `
      + `of one CPU and the machine was ${percent(halfRate.gatehouse.machineBusyPercent)} busy`
      + `${halfRate.baseline ? `; the baseline's p99 at its own half rate was ${formatNumber(halfRate.baseline.p99Ms)} ms` : ''}.`
      + `${halfRateServerTimes ? ` ${describeServerTimes(halfRateServerTimes)}` : ''}`);
  }
  if (missed('RSS')) {
    const rest = memory.residentMb - memory.heapTotalMb - memory.externalMb;
    lines.push(`- **RSS**: just after the scenarios' load, ${formatNumber(memory.residentMb)} MB resident: V8's heap ${formatNumber(memory.heapTotalMb)} MB `
      + `(${formatNumber(memory.heapUsedMb)} MB of it in use; by space: ${memory.spacesMb.filter(({ sizeMb }) => sizeMb >= 1).map(({ space, sizeMb }) => `${space} ${formatNumber(sizeMb)} MB`).join(', ')}), `
      + `memory outside it (buffers) ${formatNumber(memory.externalMb)} MB, and the rest (pages V8 freed and keeps for reuse, the node binary's own pages, compiled code, stacks, malloc's heap, native libraries) ${formatNumber(rest)} MB.`);
  }
  return lines.length ? ['### What the run shows of the missed targets', '', ...lines, ''] : [];
}
