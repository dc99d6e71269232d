// Lists come a page at a time: `limit` items (50 by default, 100 at most) and, when more follow, a `next_cursor`
// to send back as `cursor`. A cursor is opaque to callers: where the page ended, as the list orders it.
import { z } from 'zod';
import { isStorableMoment } from '../../clock.ts';
import { Problem } from './problems.ts';

export const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50).describe('Items per page (1–100)'),
  cursor: z.string().min(1).optional().describe('The next_cursor of the page before'),
});

/** A page of items of this schema. */
export function pageOf<Item extends z.ZodType>(item: Item) {
  return z.object({ items: z.array(item), next_cursor: z.string().nullable().describe('Send it as cursor for the next page; null on the last') });
}

export function encodeCursor(position: Record<string, string>): string {
  return Buffer.from(JSON.stringify(position)).toString('base64url');
}

/** A cursor's parts: each as the database can take it, so that a cursor made by hand gets a 422, never a 500. */
export const cursorPart = {
  moment: z.coerce.date().refine(isStorableMoment),
  uuid: z.uuid(),
  text: z.string().refine((value) => !value.includes('\u0000')),
};

/** The position a cursor names; a cursor that is not one of ours is a 422 naming it. */
export function decodeCursor<Position>(cursor: string | undefined, position: z.ZodType<Position>): Position | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed = position.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    if (parsed.success) return parsed.data;
  } catch {
    // not JSON: said below
  }
  throw new Problem('validation-failed', 'cursor is not one this API gave', { invalidParameters: [{ in: 'query', pointer: '/cursor', detail: 'not a cursor this API gave' }] });
}

/**
 * A page of a list read whole (one short by nature: a person's sessions, the signing keys), in the order of
 * `keyOf`: the items after the cursor's, and a cursor for the rest.
 */
export function pageOfList<Item>(items: readonly Item[], keyOf: (item: Item) => string, query: { limit: number; cursor?: string | undefined }): { items: Item[]; next_cursor: string | null } {
  const after = decodeCursor(query.cursor, z.object({ key: z.string() }))?.key;
  const sorted = [...items].sort((a, b) => compare(keyOf(a), keyOf(b)));
  const rest = after === undefined ? sorted : sorted.filter((item) => compare(keyOf(item), after) > 0);
  const page = rest.slice(0, query.limit);
  return { items: page, next_cursor: rest.length > query.limit ? encodeCursor({ key: keyOf(page.at(-1)!) }) : null };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
