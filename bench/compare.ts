// `npm run bench:compare -- <revision> [scenario...]`: is this checkout faster or slower than another revision? Both
// run at once, each `node src/main.ts` in a process of its own on the same PostgreSQL, Redis prefix and clients, and
// are loaded in turn, BENCH_ROUNDS times (default 6) for BENCH_DURATION seconds (default 3), the order alternating:
// on a shared machine two runs minutes apart differ by a third, loads seconds apart far less. Each round gives a
// ratio (this checkout ÷ the revision); their median is the answer. The revision must have the same database schema.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createBackingServices } from './lib/backing-services.ts';
import { runWithCleanup } from './lib/cleanup.ts';
import { OPAQUE_API } from './lib/fixtures.ts';
import { gatehouseEnvironment, setUpGatehouse, startGatehouse } from './lib/gatehouse.ts';
import { startLoad } from './lib/load.ts';
import { PROJECT_ROOT, freePort } from './lib/processes.ts';
import { describeMachine, formatNumber, machine, markdownTable, median, timestampForFiles, writeResults } from './lib/report.ts';
import { PROTOCOL_SCENARIOS, REFRESH_CHAINS } from './lib/protocol-scenarios.ts';
import { clientCredentials } from './lib/scenarios.ts';
import { positiveSetting } from './lib/settings.ts';

const rounds = Math.round(positiveSetting('BENCH_ROUNDS', 6));
const durationSeconds = positiveSetting('BENCH_DURATION', 3);
const connections = Math.round(positiveSetting('BENCH_CONNECTIONS', 32));
/** The code exchange mints codes for twice this rate: more than the fastest measured here could use. */
const LEAST_EXPECTED_RATE = 1500;

/** The scenarios of `npm run bench`, by key, but the one held at half another's rate (a latency measure). */
const SCENARIOS = new Map(PROTOCOL_SCENARIOS.filter((scenario) => scenario.key !== 'cc-half-rate').map((scenario) => [scenario.key, scenario]));

function refuse(message: string): never {
  process.stderr.write(`bench:compare: ${message}\n`);
  process.exit(2);
}

const [revisionArgument, ...named] = process.argv.slice(2);
if (!revisionArgument) refuse(`name a revision to compare with, and optionally scenarios (${[...SCENARIOS.keys()].join(', ')})`);
const unknown = named.filter((name) => !SCENARIOS.has(name));
if (unknown.length) refuse(`unknown scenario ${unknown.join(', ')}: choose among ${[...SCENARIOS.keys()].join(', ')}`);
const chosen = named.length ? named : ['cc', 'refresh', 'code', 'introspection'];
const git = (...args: string[]) => execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim();
let revision: string;
try {
  revision = git('rev-parse', '--verify', `${revisionArgument}^{commit}`);
} catch {
  refuse(`${revisionArgument} is not a revision of this repository`);
}
// Both servers share one database: the revision must expect the tables this checkout migrated.
if (git('diff', '--name-only', revision, '--', 'prisma')) refuse(`${revisionArgument} has another database schema (prisma/ differs): compare revisions with the same`);

function progress(message: string): void {
  process.stderr.write(`bench:compare: ${message}\n`);
}

await runWithCleanup(async (cleanup) => {
  const startedAt = new Date();
  const short = revision.slice(0, 10);
  progress(`${short} against this checkout: ${chosen.join(', ')}; ${rounds} rounds of ${durationSeconds} s each`);

  // The revision's files beside this checkout's installed packages and generated database client (same schema).
  const checkout = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-compare-'));
  cleanup.add(`remove ${checkout}`, async () => rmSync(checkout, { recursive: true, force: true }));
  git('worktree', 'add', '--detach', checkout, revision);
  const linkedModules = path.join(checkout, 'node_modules');
  cleanup.add(`remove the worktree ${checkout}`, async () => {
    // The link first, by itself: nothing may reach through it into this checkout's packages.
    rmSync(linkedModules, { force: true });
    git('worktree', 'remove', '--force', checkout);
  });
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), linkedModules);
  const generated = path.join(PROJECT_ROOT, 'src', 'db', 'generated');
  if (existsSync(generated)) cpSync(generated, path.join(checkout, 'src', 'db', 'generated'), { recursive: true });

  const backing = await createBackingServices(cleanup);
  const environments = [gatehouseEnvironment(backing, await freePort()), gatehouseEnvironment(backing, await freePort())] as const;
  progress('setting up: database, clients, APIs, a person');
  const setup = await setUpGatehouse(environments[1], cleanup);
  const sides = [
    { name: short, target: setup.target(await startGatehouse(short, environments[0], backing, cleanup, path.join(checkout, 'src', 'main.ts'))) },
    { name: 'this checkout', target: setup.target(await startGatehouse('this checkout', environments[1], backing, cleanup)) },
  ];
  for (const side of sides) {
    await startLoad({ origin: side.target.origin, pid: side.target.pid, connections, durationSeconds: 2, spec: clientCredentials(side.target, OPAQUE_API) }, { sampleRss: false }).result;
  }

  const rows = [];
  for (const scenario of chosen) {
    const chosenScenario = SCENARIOS.get(scenario)!;
    const rates: [number[], number[]] = [[], []];
    let errors = 0;
    for (let round = 0; round < rounds; round += 1) {
      for (const index of round % 2 ? [1, 0] as const : [0, 1] as const) {
        const { target } = sides[index]!;
        const prepared = await chosenScenario.prepare(target, { durationSeconds, earlier: new Map(), leastExpectedRate: LEAST_EXPECTED_RATE, progress });
        if ('unsupported' in prepared) refuse(`${sides[index]!.name} cannot run ${scenario}: ${prepared.unsupported}`);
        const load = startLoad({ origin: target.origin, pid: target.pid, connections: chosenScenario.connections ?? connections, durationSeconds, spec: prepared.spec }, { sampleRss: false });
        prepared.started?.(load);
        const measured = await load.result;
        rates[index].push(measured.requestsPerSecond);
        errors += measured.errors;
      }
    }
    const ratios = rates[1].map((rate, round) => rate / rates[0][round]!);
    const row = { scenario, revision: median(rates[0]), checkout: median(rates[1]), ratios, medianRatio: median(ratios), errors };
    progress(`${scenario}: ${formatNumber(row.revision)} → ${formatNumber(row.checkout)} req/s, ×${formatNumber(row.medianRatio)} (rounds ${ratios.map((ratio) => formatNumber(ratio)).join(', ')})`);
    rows.push(row);
  }

  const table = markdownTable(
    ['scenario', `${short} req/s`, 'this checkout req/s', 'ratio per round', 'median ratio', 'errors'],
    rows.map((row) => [row.scenario, formatNumber(row.revision), formatNumber(row.checkout), row.ratios.map((ratio) => `${formatNumber(ratio)}×`).join(' '), `${formatNumber(row.medianRatio)}×`, String(row.errors)]),
    new Set([1, 2, 4, 5]),
  );
  const markdown = [
    `# This checkout against ${short}, ${startedAt.toISOString()}`,
    '',
    `- Machine: ${describeMachine(machine())}; both servers, PostgreSQL, Redis and the load generator share it.`,
    `- ${rounds} rounds of ${durationSeconds} s per scenario and server, ${connections} connections (refresh: ${REFRESH_CHAINS} chains), the order alternating; req/s: the median round; ratio: this checkout ÷ ${short}, per round, and their median.`,
    '',
    table,
  ].join('\n');
  process.stdout.write(`\n${markdown}\n`);
  const written = await writeResults(`compare-${timestampForFiles(startedAt)}`, 'compare-latest', { startedAt, revision, rounds, durationSeconds, connections, rows }, markdown);
  progress(`written: ${written.join(', ')}`);
});
