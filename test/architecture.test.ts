// The design's rules (shared/DESIGN.md), checked on the source text in milliseconds: only src/oidc/ uses the
// engine's values, domain folders never import Koa, each table is queried by the folder that owns it,
// process.env is read in src/config/ alone, only the composition root imports the web side, and no import
// cycle joins two folders.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { PROJECT_ROOT } from './helpers/process.ts';

const SOURCE_ROOT = path.join(PROJECT_ROOT, 'src');
/** The files that put the whole together (they may import every folder, and nothing imports them for values). */
const COMPOSITION = new Set(['app.ts', 'runtime.ts', 'main.ts', 'serve.ts', 'workers.ts', 'cli.ts']);
/** Folders of domain code: no HTTP in them. */
const DOMAIN_FOLDERS = ['accounts', 'apis', 'keys', 'clients', 'mail', 'store', 'db', 'audit', 'limits', 'config'];
/** Each table's Prisma delegate, and the folder that owns the table. */
const TABLE_OWNERS: Record<string, string> = { user: 'accounts', recoveryCode: 'accounts', accountToken: 'accounts', consent: 'accounts', client: 'clients', api: 'apis', role: 'apis', rolePermission: 'apis', signingKey: 'keys', auditEvent: 'audit' };
interface SourceFile {
  /** Relative to src/, with forward slashes. */
  name: string;
  folder: string;
  text: string;
  /** Relative imports (resolved to src/-relative names) and package imports, each with whether it is type-only. */
  imports: Array<{ target: string; typeOnly: boolean }>;
}

/**
 * A file's folder: the first level under src/; under src/web/, its area (web/interaction, web/kit, ...), and
 * each file of its own (web/paths, the route table, which every area and the kit use).
 */
function folderOf(name: string): string {
  const [first, ...rest] = name.split('/');
  if (first === 'web') return `web/${rest[0]!.replace(/\.ts$/, '')}`;
  if (rest.length) return first!;
  return COMPOSITION.has(first!) ? '(composition)' : '(shared)';
}

const isWeb = (folder: string) => folder.startsWith('web/');

function readSources(directory = SOURCE_ROOT): SourceFile[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(directory, entry.name);
    // Prisma's generated client is not ours to shape.
    if (entry.isDirectory()) return entry.name === 'generated' ? [] : readSources(full);
    if (!entry.name.endsWith('.ts')) return [];
    const name = path.relative(SOURCE_ROOT, full).split(path.sep).join('/');
    const text = readFileSync(full, 'utf8');
    const imports = [...text.matchAll(/^(import|export)\s+(type\s+)?[^;]*?from\s+'([^']+)'/gms)].map((match) => {
      const specifier = match[3]!;
      const target = specifier.startsWith('.') ? path.posix.normalize(path.posix.join(path.posix.dirname(name), specifier)) : specifier;
      // `import { type A, type B }` is type-only too.
      const braces = /\{([^}]*)\}/.exec(match[0])?.[1];
      const allTypes = braces !== undefined && !/^import\s+\w/.test(match[0]) && braces.split(',').map((part) => part.trim()).filter(Boolean).every((part) => part.startsWith('type '));
      return { target, typeOnly: Boolean(match[2]) || allTypes };
    });
    return [{ name, folder: folderOf(name), text, imports }];
  });
}

const sources = readSources();

test('the sources were read (the rules below would pass vacuously on nothing)', (t) => {
  t.true(sources.length > 50);
  t.true(sources.some((file) => file.imports.some((entry) => entry.target === 'oidc-provider' && !entry.typeOnly)));
});

test('only src/oidc/ imports values from oidc-provider (elsewhere, types only)', (t) => {
  const offenders = sources.filter((file) => file.folder !== 'oidc'
    && file.imports.some((entry) => entry.target.startsWith('oidc-provider') && !entry.typeOnly));
  t.deepEqual(offenders.map((file) => file.name), []);
});

test('the web side is imported by the composition root alone (the engine and the domain know nothing of pages)', (t) => {
  const offenders = sources.filter((file) => !isWeb(file.folder) && file.folder !== '(composition)'
    && file.imports.some((entry) => isWeb(folderOf(entry.target))));
  t.deepEqual(offenders.map((file) => file.name), []);
});

test('domain folders never import Koa', (t) => {
  const offenders = sources.filter((file) => DOMAIN_FOLDERS.includes(file.folder)
    && file.imports.some((entry) => entry.target === 'koa' || entry.target.startsWith('@koa/')));
  t.deepEqual(offenders.map((file) => file.name), []);
});

test('each table is queried only by the folder that owns it', (t) => {
  const delegates = Object.keys(TABLE_OWNERS).join('|');
  const query = new RegExp(`\\.(${delegates})\\.(find\\w*|create\\w*|update\\w*|delete\\w*|upsert|count|aggregate|groupBy)\\(`, 'g');
  const offenders = sources.flatMap((file) => [...file.text.matchAll(query)]
    .filter((match) => TABLE_OWNERS[match[1]!] !== file.folder)
    .map((match) => `${file.name}: ${match[0]}`));
  t.deepEqual(offenders, []);
});

test('process.env is read in src/config/ alone', (t) => {
  const offenders = sources.filter((file) => file.folder !== 'config' && /\bprocess\.env\b/.test(file.text));
  t.deepEqual(offenders.map((file) => file.name), []);
});

test('no import cycle between folders (web areas count apart)', (t) => {
  const edges = new Map<string, Set<string>>();
  for (const file of sources) {
    for (const { target } of file.imports) {
      if (!target.includes('/') && !target.endsWith('.ts')) continue; // a package
      if (!target.endsWith('.ts')) continue;
      const folder = folderOf(target);
      if (folder === file.folder) continue;
      if (!edges.has(file.folder)) edges.set(file.folder, new Set());
      edges.get(file.folder)!.add(folder);
    }
  }
  t.true(edges.has('web/interaction') && edges.has('web/kit'), 'the web areas are told apart');
  t.deepEqual(stronglyConnected(edges), []);
});

/** The groups of folders that reach one another (Tarjan): each is a cycle, or several. */
function stronglyConnected(edges: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const groups: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    for (const next of edges.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (stack.includes(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const group: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      group.push(member);
    } while (member !== node);
    if (group.length > 1) groups.push(group);
  };
  for (const node of edges.keys()) if (!index.has(node)) visit(node);
  return groups;
}
