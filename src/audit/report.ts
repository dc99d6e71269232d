// Reading the audit trail at a terminal: `--since` values (ISO dates or 24h/7d) and the table
// and JSON-lines forms `gatehouse audit` prints.
import { isStorableMoment } from '../clock.ts';
import { textTable } from '../text-table.ts';
import type { AuditEvent } from './audit.ts';

const UNIT_MILLISECONDS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** An ISO 8601 date, or date-time with an optional fraction and zone (Z, +02:00, +0200). */
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|([+-])(\d{2}):?(\d{2}))?)?$/i;

/**
 * `30m`, `24h`, `7d`, `2w` before `now`, or an ISO 8601 date or date-time; undefined when it is
 * neither, names a day or time that does not exist (2026-02-31, 24:00), or falls outside the years
 * 1 to 9999 the database holds. A date, or a date-time without a zone, is UTC: the trail is stored
 * and printed in UTC, and the answer must not depend on the zone of the machine the command happens
 * to run on.
 */
export function parseSince(value: string, now: Date = new Date()): Date | undefined {
  const moment = parseMoment(value, now);
  return moment && isStorableMoment(moment) ? moment : undefined;
}

function parseMoment(value: string, now: Date): Date | undefined {
  const relative = /^(\d{1,6})([mhdw])$/.exec(value.trim());
  if (relative) {
    return new Date(now.getTime() - Number(relative[1]) * UNIT_MILLISECONDS[relative[2] as keyof typeof UNIT_MILLISECONDS]);
  }
  // Not Date.parse: it accepts much that is not ISO ("March 7"), rolls 2026-02-31 over to March 3
  // and reads a date-time without a zone in the local zone.
  const match = ISO_DATE_TIME.exec(value.trim());
  if (!match) return undefined;
  const [, year, month, day, hour = '0', minute = '0', second = '0', fraction = '', , sign, offsetHours = '0', offsetMinutes = '0'] = match;
  const [y, mo, d, h, mi, s] = [year, month, day, hour, minute, second].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 59) return undefined;
  if (sign && (Number(offsetHours) > 23 || Number(offsetMinutes) > 59)) return undefined;
  const offsetMs = sign ? (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes)) * 60_000 : 0;
  const milliseconds = fraction ? Math.floor(Number(`0${fraction}`) * 1000) : 0;
  const utc = new Date(0);
  // setUTCFullYear, not Date.UTC: Date.UTC reads years 0-99 as 1900-1999.
  utc.setUTCFullYear(y, mo - 1, d);
  utc.setUTCHours(h, mi, s, milliseconds);
  return new Date(utc.getTime() - offsetMs);
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1]!;
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
  return textTable(COLUMNS.map(([heading]) => heading), events.map((event) => COLUMNS.map(([, value]) => value(event))));
}
