// How a run is told: the machine it ran on, a Markdown table (printed, and written beside a JSON copy of everything
// measured) under bench/results/, as <timestamp>.* and as latest.* (or soak-<timestamp>.* and soak-latest.*).
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from './processes.ts';

export const RESULTS_DIR = path.join(PROJECT_ROOT, 'bench', 'results');

export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
  };
}

export function describeMachine(host: Machine): string {
  return `${host.cpus} × ${host.cpuModel}, ${host.memoryGiB} GiB, Node ${host.node} (${host.platform})`;
}

/** A file-name-safe ISO time: 2026-12-05T10-11-12Z. */
export function timestampForFiles(at: Date): string {
  return at.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
}

/** Writes `<name>.json` and `<name>.md`, and the same as `<latest>.json` and `<latest>.md`; returns the paths written. */
export async function writeResults(name: string, latest: string, json: unknown, markdown: string): Promise<string[]> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const written: string[] = [];
  for (const base of [name, latest]) {
    for (const [extension, content] of [['json', text], ['md', markdown]] as const) {
      const file = path.join(RESULTS_DIR, `${base}.${extension}`);
      await writeFile(file, content);
      written.push(path.relative(PROJECT_ROOT, file));
    }
  }
  return written;
}

export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, rightAligned: ReadonlySet<number> = new Set()): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  const rule = header.map((_, column) => (rightAligned.has(column) ? '---:' : '---'));
  return [line(header), line(rule), ...rows.map(line)].join('\n');
}

export const megabytes = (bytes: number) => bytes / 2 ** 20;

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** 1234.5 → "1,235"; small numbers keep a decimal or two. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return '—';
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** { "HTTP 400": 3, timeout: 1 } → "HTTP 400 × 3, timeout × 1". */
export function describeErrors(kinds: Record<string, number>): string {
  return Object.entries(kinds).map(([kind, times]) => `${kind} × ${times}`).join(', ');
}
