// Runs Gatehouse's real entry points (src/main.ts, bin/gatehouse.js) as child processes, with an
// environment built from scratch so nothing leaks in from the test run's own (DATABASE_URL, ...).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** PATH and HOME only, plus what the test sets: no DATABASE_URL, REDIS_URL or NODE_ENV by accident. */
export function cleanEnvironment(variables: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  for (const [name, value] of Object.entries(variables)) if (value !== undefined) environment[name] = value;
  return environment;
}

/** Starts `node <args>` with this test run's Node (24) in the project root. */
export function startNode(args: string[], environment: NodeJS.ProcessEnv, input?: string): { child: ChildProcess; finished: Promise<Finished> } {
  const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: environment, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (input !== undefined) child.stdin!.end(input);
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const finished = once(child, 'close').then(([code, signal]) => ({
    code: code as number | null, signal: signal as NodeJS.Signals | null, stdout, stderr,
  }));
  return { child, finished };
}

/** Runs `node <args>` to completion; kills it (and fails) if it takes longer than timeoutMs. */
export async function runNode(args: string[], environment: NodeJS.ProcessEnv, timeoutMs = 120_000, input?: string): Promise<Finished> {
  const { child, finished } = startNode(args, environment, input);
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const result = await finished;
    if (result.signal === 'SIGKILL') throw new Error(`node ${args.join(' ')} did not finish within ${timeoutMs} ms: ${result.stderr}`);
    return result;
  } finally {
    clearTimeout(timer);
  }
}
