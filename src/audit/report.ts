// Reading the audit trail at a terminal: `--since` values (ISO dates or 24h/7d) and the table
// and JSON-lines forms `gatehouse audit` prints.
import type { AuditEvent } from './audit.ts';

const UNIT_MILLISECONDS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** `30m`, `24h`, `7d`, `2w` before `now`, or an ISO 8601 date or date-time; undefined when it is neither. */
export function parseSince(value: string, now: Date = new Date()): Date | undefined {
  const relative = /^(\d{1,6})([mhdw])$/.exec(value.trim());
  if (relative) {
    return new Date(now.getTime() - Number(relative[1]) * UNIT_MILLISECONDS[relative[2] as keyof typeof UNIT_MILLISECONDS]);
  }
  // Date.parse accepts much that is not ISO ("March 7"): insist on the ISO shape first.
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(value.trim())) return undefined;
  const time = Date.parse(value.trim());
  return Number.isNaN(time) ? undefined : new Date(time);
}

/** One JSON object a line, oldest first. */
export function formatJsonLines(events: AuditEvent[]): string {
  return events.map((event) => `${JSON.stringify(event)}\n`).join('');
}

const COLUMNS: Array<[heading: string, value: (event: AuditEvent) => string]> = [
  ['TIME', (event) => event.occurredAt.toISOString()],
  ['ACTION', (event) => event.action],
  ['OUTCOME', (event) => event.outcome],
  ['ACTOR', (event) => (event.actorId ? `${event.actorType}:${event.actorId}` : event.actorType)],
  ['SUBJECT', (event) => event.subjectEmail ?? event.subjectUserId ?? '-'],
  ['CLIENT', (event) => event.clientId ?? '-'],
  ['IP', (event) => event.ip ?? '-'],
  ['DETAIL', (event) => (Object.keys(event.detail).length ? JSON.stringify(event.detail) : '')],
];

/** A plain-text table, oldest first, for a person to read. */
export function formatTable(events: AuditEvent[]): string {
  if (!events.length) return 'no audit events match\n';
  const rows = [COLUMNS.map(([heading]) => heading), ...events.map((event) => COLUMNS.map(([, value]) => printable(value(event))))];
  const widths = COLUMNS.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ').trimEnd()).join('\n') + '\n';
}

/** Whatever was typed at a login form reaches a terminal here: no escape sequences. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}
