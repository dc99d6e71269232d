// Renders the server-side pages from views/. Eta escapes every interpolation unless a template
// asks for raw output with <%~ %>, which only the layout and the engine's own logout form use. Every page
// links through `it.pathTo(name, parameters)`: the route table's paths, never one typed into a template.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { pathTo } from '../paths.ts';

export const VIEWS_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'views');

export type Views = { render(template: string, data: Record<string, unknown>): string };

export function createViews(options: { cache: boolean }): Views {
  const eta = new Eta({ views: VIEWS_DIR, autoEscape: true, cache: options.cache });
  return { render: (template, data) => eta.render(template, { ...data, pathTo }) };
}

/** Engine and domain messages start in lower case; a page shows them as sentences. */
export function upperFirst(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
