// The servers under measurement as child processes: started with this Node, waited for until they answer, stopped
// (the whole tree: cluster workers too), and watched for memory (VmRSS of the process and its descendants).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, closeSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cleanup } from './cleanup.ts';

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export { findFreePort as freePort } from '../../test/helpers/redis.ts';

export interface ServerProcess {
  pid: number;
  origin: string;
  /** SIGTERM, then SIGKILL for the process and every descendant still there after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServerStart {
  /** For messages: "Gatehouse", "baseline"... */
  name: string;
  /** The script, relative to the project root (the processes' working folder), or absolute. */
  script: string;
  /** Node.js's own options, before the script (`--max-semi-space-size=16`). */
  nodeOptions?: readonly string[];
  port: number;
  environment: NodeJS.ProcessEnv;
  /** Answers 200 once the server can take the load. */
  readyPath: string;
  /** Where its standard error goes (shown when it fails to start); its standard output goes nowhere. */
  errorLog: string;
}

/** Starts `node [nodeOptions] <script>` and waits (up to 2 minutes) until readyPath answers 200. */
export async function startServer(start: ServerStart, cleanup: Cleanup): Promise<ServerProcess> {
  const errorFile = openSync(start.errorLog, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...start.nodeOptions ?? [], start.script], { cwd: PROJECT_ROOT, env: start.environment, stdio: ['ignore', 'ignore', errorFile] });
  } finally {
    closeSync(errorFile);
  }
  let spawnError: Error | undefined;
  child.on('error', (error) => (spawnError = error));
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${start.name} did not start`);
  const exited = once(child, 'exit');
  let stopped: Promise<void> | undefined;
  const server: ServerProcess = {
    pid,
    origin: `http://127.0.0.1:${start.port}`,
    stop(graceMs = 15_000) {
      stopped ??= stopTree(child, exited, graceMs);
      return stopped;
    },
  };
  cleanup.add(`stop ${start.name} (pid ${pid})`, () => server.stop());
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (spawnError) throw new Error(`${start.name} could not be started: ${spawnError.message}`);
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${start.name} ended while starting (${child.exitCode ?? child.signalCode}):\n${tail(start.errorLog)}`);
    }
    const status = await fetch(`${server.origin}${start.readyPath}`).then((response) => response.status, () => 0);
    if (status === 200) return server;
    if (Date.now() > deadline) throw new Error(`${start.name} did not answer ${start.readyPath} with 200 within 2 minutes:\n${tail(start.errorLog)}`);
    await sleep(200);
  }
}

async function stopTree(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  // Known before the parent goes: cluster workers it leaves behind are killed by their own ids.
  const tree = processTree(child.pid);
  child.kill('SIGTERM');
  const timedOut = Symbol('timed out');
  const ended = await Promise.race([exited, sleep(graceMs, timedOut)]);
  if (ended === timedOut) child.kill('SIGKILL');
  for (const pid of tree.slice(1)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone, as it should be.
    }
  }
  if (ended === timedOut) await exited;
}

/** The process and its descendants, parent first (Linux: /proc/<pid>/task/<tid>/children). */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let index = 0; index < tree.length; index += 1) {
    const taskDirectory = `/proc/${tree[index]}/task`;
    let tasks: string[];
    try {
      tasks = readdirSync(taskDirectory);
    } catch {
      continue;
    }
    for (const task of tasks) {
      try {
        for (const child of readFileSync(`${taskDirectory}/${task}/children`, 'utf8').split(' ')) if (child.trim()) tree.push(Number(child));
      } catch {
        // The thread ended meanwhile.
      }
    }
  }
  return tree;
}

/** Resident memory of the process and its descendants, in bytes (0 for a process gone meanwhile). */
export function treeRssBytes(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    try {
      const kibibytes = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${member}/status`, 'utf8'))?.[1];
      total += Number(kibibytes ?? 0) * 1024;
    } catch {
      // Gone meanwhile.
    }
  }
  return total;
}

/** Linux counts CPU time in these (USER_HZ, 100 on every architecture Node runs on). */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user and system) spent so far by the process and its descendants, in seconds. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const member of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${member}/stat`, 'utf8');
      // The fields after the command name, which may hold spaces: utime and stime are the 12th and 13th of them.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone meanwhile.
    }
  }
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/** The whole machine's CPU time so far, busy and in total (every CPU), in seconds. */
export function machineCpuSeconds(): { busy: number; total: number } {
  const times = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are the machine waiting.
  const total = times.slice(0, 8).reduce((sum, value) => sum + value, 0);
  const waiting = (times[3] ?? 0) + (times[4] ?? 0);
  return { busy: (total - waiting) / CLOCK_TICKS_PER_SECOND, total: total / CLOCK_TICKS_PER_SECOND };
}

/**
 * While it runs: the CPU a process tree used, as a percentage of one CPU (above 100: several threads or
 * processes at once), and how busy the machine was, as a percentage of all its CPUs.
 */
export class CpuMeter {
  readonly #pid: number;
  readonly #startedAt = performance.now();
  readonly #tree: number;
  readonly #machine = machineCpuSeconds();

  constructor(pid: number) {
    this.#pid = pid;
    this.#tree = treeCpuSeconds(pid);
  }

  read(): { serverCpuPercent: number; machineBusyPercent: number } {
    const seconds = (performance.now() - this.#startedAt) / 1000;
    const machine = machineCpuSeconds();
    const machineTotal = machine.total - this.#machine.total;
    return {
      serverCpuPercent: seconds > 0 ? (100 * (treeCpuSeconds(this.#pid) - this.#tree)) / seconds : 0,
      machineBusyPercent: machineTotal > 0 ? (100 * (machine.busy - this.#machine.busy)) / machineTotal : 0,
    };
  }
}

/** Samples a process tree's resident memory every `intervalMs` until stopped. */
export class RssSampler {
  readonly samples: Array<{ atMs: number; bytes: number }> = [];
  readonly #pid: number;
  readonly #startedAt = Date.now();
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number, intervalMs: number) {
    this.#pid = pid;
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), intervalMs);
  }

  #sample(): void {
    this.samples.push({ atMs: Date.now() - this.#startedAt, bytes: treeRssBytes(this.#pid) });
  }

  /** Takes a last sample and stops; the peak in bytes. */
  stop(): number {
    clearInterval(this.#timer);
    this.#sample();
    return Math.max(...this.samples.map((sample) => sample.bytes));
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no output)';
  }
}
