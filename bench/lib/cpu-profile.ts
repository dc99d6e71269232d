// What a V8 CPU profile (`node --cpu-prof`) of a server under load says, in a few lines for the report: how busy
// its main thread was, the share of garbage collection, whose code the rest ran (Gatehouse's, each package's,
// Node.js's) and the hottest functions. Native code a function calls (a socket write, a hash) counts for the
// code that called it: the question is which part of the program to change.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from './processes.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds, on the profiler's clock; each sample's time is startTime plus the deltas up to it. */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface CpuProfileSummary {
  /** Percent of the profiled time the main thread was running (not waiting for I/O). */
  busyPercent: number;
  /** Whose code the busy time ran ('garbage collection' among them), in percent of it, largest first. */
  owners: Array<{ owner: string; percent: number }>;
  /** The functions that ran longest themselves, in percent of the busy time. */
  hottest: Array<{ name: string; owner: string; where: string; percent: number }>;
}

const IDLE = '(idle)';
const GARBAGE_COLLECTOR = '(garbage collector)';
/** V8's own work that it does not attribute to any function (compiling, its runtime). */
const PROGRAM = '(program)';
const SOURCE_FOLDER = `${path.join(PROJECT_ROOT, 'src')}/`;

/** Node.js's own modules, by what they do: the first whose pattern matches names the part. */
const NODE_PARTS: Array<[RegExp, string]> = [
  [/^node:(_http_|http$|internal\/http)/, 'Node.js HTTP'],
  [/^node:(net$|stream$|internal\/stream|internal\/streams\/|internal\/stream_base_commons)/, 'Node.js sockets and streams'],
  [/^node:(crypto$|internal\/crypto\/)/, 'Node.js crypto'],
  [/^node:internal\/(modules\/|deps\/amaro|vm)/, 'Node.js module loading'],
  [/^node:(async_hooks$|internal\/async_|internal\/process\/task_queues|internal\/timers|timers$)/, 'Node.js timers and async bookkeeping'],
];

/** Whose code a script is: 'Gatehouse', a package's name, a part of Node.js, or undefined (native, V8's own). */
function ownerOf(url: string): string | undefined {
  if (!url) return undefined;
  if (url.startsWith('node:')) return NODE_PARTS.find(([pattern]) => pattern.test(url))?.[1] ?? 'Node.js, other';
  if (url.startsWith('wasm://')) return 'WebAssembly (Prisma\'s query compiler)';
  const file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const inPackages = file.lastIndexOf('/node_modules/');
  if (inPackages !== -1) {
    const [scopeOrName, name] = file.slice(inPackages + '/node_modules/'.length).split('/');
    return scopeOrName!.startsWith('@') ? `${scopeOrName}/${name}` : scopeOrName!;
  }
  if (file.startsWith(SOURCE_FOLDER)) return 'Gatehouse';
  return 'other';
}

function shortLocation(url: string, lineNumber: number): string {
  const file = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const inPackages = file.lastIndexOf('/node_modules/');
  const shown = inPackages !== -1 ? file.slice(inPackages + '/node_modules/'.length) : path.relative(PROJECT_ROOT, file) || file;
  return `${shown}:${lineNumber + 1}`;
}

/**
 * `window`: only the samples of this stretch, counted back from the profile's end in milliseconds (a server
 * profiled from its start until it stopped: the load's stretch, without its start and warm-up).
 */
export function summarizeCpuProfile(file: string, window?: { fromEndMs: number; untilEndMs: number }, hottestCount = 8): CpuProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const sampledAt: number[] = [];
  let clock = profile.startTime;
  for (const delta of profile.timeDeltas) sampledAt.push((clock += delta));
  const included = (index: number) => window === undefined
    || (sampledAt[index]! >= profile.endTime - window.fromEndMs * 1000 && sampledAt[index]! <= profile.endTime - window.untilEndMs * 1000);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);

  // Each node's owner: its script's, or for native code its nearest caller's that has a script.
  const ownerCache = new Map<number, string>();
  const nodeOwner = (id: number): string => {
    const cached = ownerCache.get(id);
    if (cached !== undefined) return cached;
    const node = byId.get(id)!;
    const own = ownerOf(node.callFrame.url);
    const parent = parentOf.get(id);
    const owner = own ?? (parent === undefined || byId.get(parent)!.callFrame.functionName === '(root)' ? 'V8 and native code' : nodeOwner(parent));
    ownerCache.set(id, owner);
    return owner;
  };

  const selfMicroseconds = new Map<number, number>();
  profile.samples.forEach((id, index) => {
    if (included(index)) selfMicroseconds.set(id, (selfMicroseconds.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
  });
  let total = 0;
  let idle = 0;
  const owners = new Map<string, number>();
  const functions = new Map<string, { name: string; owner: string; where: string; microseconds: number }>();
  for (const [id, microseconds] of selfMicroseconds) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    total += microseconds;
    if (functionName === IDLE) {
      idle += microseconds;
      continue;
    }
    const owner = functionName === GARBAGE_COLLECTOR ? 'garbage collection' : functionName === PROGRAM ? 'V8 and native code' : nodeOwner(id);
    owners.set(owner, (owners.get(owner) ?? 0) + microseconds);
    if (url) {
      const where = shortLocation(url, lineNumber);
      const key = `${functionName} ${where}`;
      const entry = functions.get(key) ?? { name: functionName || '(anonymous)', owner, where, microseconds: 0 };
      entry.microseconds += microseconds;
      functions.set(key, entry);
    }
  }
  const busy = total - idle;
  const percentOfBusy = (microseconds: number) => (busy > 0 ? (100 * microseconds) / busy : 0);
  return {
    busyPercent: total > 0 ? (100 * busy) / total : 0,
    owners: [...owners].sort((a, b) => b[1] - a[1]).map(([owner, microseconds]) => ({ owner, percent: percentOfBusy(microseconds) })),
    hottest: [...functions.values()].sort((a, b) => b.microseconds - a.microseconds).slice(0, hottestCount)
      .map(({ microseconds, ...named }) => ({ ...named, percent: percentOfBusy(microseconds) })),
  };
}
