// A resource's version is the time of its last change, sent as its ETag; a change names the version it was
// read at in If-Match, and is refused once the resource moved on (412), or without one (428).
import type { Context } from 'koa';
import { Problem } from './problems.ts';

export function etag(changedAt: Date): string {
  return `"${changedAt.getTime().toString(36)}"`;
}

/** The version If-Match names; 428 without one, 412 for one that no version of ours can be. */
export function ifMatch(ctx: Context): Date {
  const header = ctx.get('if-match');
  if (!header) throw new Problem('precondition-required', 'Send If-Match with the ETag the resource was read with');
  const match = /^(?:W\/)?"([0-9a-z]{1,12})"$/.exec(header.trim());
  const changedAt = match ? new Date(Number.parseInt(match[1]!, 36)) : undefined;
  if (!changedAt || Number.isNaN(changedAt.getTime())) throw new Problem('precondition-failed', 'If-Match names no version of this resource');
  return changedAt;
}
