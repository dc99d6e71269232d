// The audit trail: who did what to whom, when, from where, and whether it worked. Each event is a
// structured log line (always) and a row in audit_events (best effort); never a credential of any kind.
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Prisma } from '../db/index.ts';
import type { Prisma as PrismaTypes } from '../db/generated/client.ts';
import { currentRequestId } from '../request-context.ts';

/** Every action Gatehouse audits. A name outside this list is a type error, so the trail stays searchable. */
export const AUDIT_ACTIONS = [
  'account.created', 'account.disabled', 'account.enabled', 'account.unlocked', 'account.deleted', 'account.updated',
  'login.succeeded', 'login.failed', 'login.locked_out', 'reauthentication.failed',
  'second_factor.enrolled', 'second_factor.used', 'second_factor.failed', 'second_factor.locked_out', 'second_factor.removed',
  'recovery_code.used', 'recovery_codes.regenerated',
  'password_reset.requested', 'password_reset.completed', 'password.changed',
  'email.verified', 'email_change.requested', 'email.changed', 'email.restored',
  'refresh_token.reused', 'authorization_code.reused', 'grant.revoked', 'consent.withdrawn',
  'session.ended', 'sessions.ended_all', 'logout.delivered', 'logout.failed',
  'client.created', 'client.updated', 'client.deleted', 'client.secret_rotated', 'initial_access_token.issued', 'initial_access_token.revoked',
  'api.created', 'api.updated', 'api.deleted',
  'role.created', 'role.updated', 'role.deleted', 'role.granted', 'role.revoked', 'account.role_added', 'account.role_removed',
  'keys.rotated',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export type AuditOutcome = 'success' | 'failure';
export type AuditActorType = 'user' | 'client' | 'admin' | 'system';

export interface AuditActor {
  type: AuditActorType;
  /** A user id, a client_id, an administrator's name (cli:<login>), or nothing for Gatehouse itself. */
  id?: string | undefined;
}

/** A detail value: a few plain facts, never a nested object (that is where a secret could hide). */
export type AuditDetailValue = string | number | boolean | null | readonly string[];

export interface AuditEventInput {
  action: AuditAction;
  outcome: AuditOutcome;
  /** Who acted. Default: the subject person acting on their own account (a person at the login form). */
  actor?: AuditActor | undefined;
  subjectUserId?: string | undefined;
  /** As typed, for failed logins of unknown addresses; it is normalized, and dropped unless it is an address. */
  subjectEmail?: string | undefined;
  clientId?: string | undefined;
  ip?: string | undefined;
  userAgent?: string | undefined;
  detail?: Record<string, AuditDetailValue | undefined> | undefined;
}

export interface AuditEvent {
  id: string;
  occurredAt: Date;
  action: string;
  outcome: AuditOutcome;
  actorType: AuditActorType;
  actorId: string | null;
  subjectUserId: string | null;
  subjectEmail: string | null;
  clientId: string | null;
  ip: string | null;
  userAgent: string | null;
  detail: Record<string, unknown>;
  /** The request it was recorded in (X-Request-Id); none for the CLI and the server's own timers. */
  requestId: string | null;
}

export interface AuditQuery {
  /** Events about the person with this email: their account's events and attempts with the address. */
  userEmail?: string | undefined;
  /** An action name, or a prefix ending in `*` (`login.*`). */
  action?: string | undefined;
  since?: Date | undefined;
  /** Events before this moment only. */
  until?: Date | undefined;
  /** Events about this account (by id). */
  userId?: string | undefined;
  clientId?: string | undefined;
  outcome?: AuditOutcome | undefined;
  /** Where a page starts: the events older than this one (newest first). */
  before?: { occurredAt: Date; id: string } | undefined;
  /** Most events returned, newest first. */
  limit: number;
}

const USER_AGENT_MAX = 256;
const FIELD_MAX = 320;
const DETAIL_STRING_MAX = 200;
const DETAIL_KEYS_MAX = 12;
/** Detail keys that name a credential are dropped even if a caller passes one by mistake. */
const SECRET_KEY = /pass|secret|token|code|otp|totp|cookie|authorization|credential|assertion|verifier|hash|key/i;

const uuidSchema = z.uuid();
const emailSchema = z.email().max(FIELD_MAX);

/** The id of the account registered with an address, if any. */
export type AccountLookup = (email: string) => Promise<string | undefined>;

export class AuditTrail {
  readonly #prisma: Prisma;
  readonly #logger: Logger;
  readonly #pending = new Set<Promise<void>>();
  readonly #accountIdOf: AccountLookup;
  readonly #onRecorded: ((action: AuditAction, outcome: AuditOutcome) => void) | undefined;

  /**
   * `accountIdOf`: the account an address names today (the accounts' own lookup), for queries by person;
   * `onRecorded`: told of each event (for metrics: sign-in outcomes, lockouts…).
   */
  constructor(prisma: Prisma, logger: Logger, options: { accountIdOf?: AccountLookup; onRecorded?: (action: AuditAction, outcome: AuditOutcome) => void } = {}) {
    this.#prisma = prisma;
    this.#onRecorded = options.onRecorded;
    this.#logger = logger.child({ component: 'audit' });
    this.#accountIdOf = options.accountIdOf ?? (async () => undefined);
  }

  /**
   * Records an event. Never rejects: the log line is written first and always; the row is written
   * next, and when the database refuses it the event is logged again at error level, whole, so it is
   * not lost (and the caller's response is not turned into a 500 by a record about it). Await it to
   * know the row is written (or failed); callers on a hot path may leave it running.
   */
  record(input: AuditEventInput): Promise<void> {
    const event = normalize(input);
    const failed = event.outcome === 'failure';
    this.#onRecorded?.(input.action, event.outcome);
    this.#logger[failed ? 'warn' : 'info']({ audit: event }, `audit ${event.action} ${event.outcome}`);
    const write = this.#prisma.auditEvent.create({ data: { ...event, detail: event.detail as PrismaTypes.InputJsonObject } })
      .then(() => {}, (error: unknown) => {
        this.#logger.error({ err: error, audit: event }, `audit event ${event.action} could not be stored; this line is its only record`);
      });
    this.#pending.add(write);
    void write.finally(() => this.#pending.delete(write));
    return write;
  }

  /** Waits for the rows being written (before the database closes, or in a test). */
  async flush(): Promise<void> {
    while (this.#pending.size) await Promise.all(this.#pending);
  }

  /** Deletes the events that occurred before `moment`, `batchSize` rows at a time (no long lock); how many. */
  async deleteBefore(moment: Date, batchSize = 5_000): Promise<number> {
    let deleted = 0;
    for (;;) {
      const batch = await this.#prisma.auditEvent.findMany({ where: { occurredAt: { lt: moment } }, select: { id: true }, take: batchSize });
      if (!batch.length) return deleted;
      deleted += (await this.#prisma.auditEvent.deleteMany({ where: { id: { in: batch.map((row) => row.id) } } })).count;
      if (batch.length < batchSize) return deleted;
    }
  }

  async list(query: AuditQuery): Promise<AuditEvent[]> {
    const where: PrismaTypes.AuditEventWhereInput[] = [];
    if (query.since) where.push({ occurredAt: { gte: query.since } });
    if (query.until) where.push({ occurredAt: { lt: query.until } });
    // An id that is no account's matches nothing (the column holds ids only).
    if (query.userId !== undefined) where.push(uuidSchema.safeParse(query.userId).success ? { subjectUserId: query.userId } : { id: { in: [] } });
    if (query.clientId !== undefined) where.push({ clientId: query.clientId });
    if (query.outcome) where.push({ outcome: query.outcome });
    if (query.before) where.push({ OR: [{ occurredAt: { lt: query.before.occurredAt } }, { occurredAt: query.before.occurredAt, id: { lt: query.before.id } }] });
    if (query.action) {
      where.push(query.action.endsWith('*') ? { action: { startsWith: query.action.slice(0, -1) } } : { action: query.action });
    }
    if (query.userEmail !== undefined) {
      const email = query.userEmail.trim().toLowerCase();
      // The account as it is named today, so its events before an email change are found too.
      const accountId = await this.#accountIdOf(email);
      where.push({ OR: [{ subjectEmail: email }, ...(accountId ? [{ subjectUserId: accountId }] : [])] });
    }
    const rows = await this.#prisma.auditEvent.findMany({
      where: { AND: where },
      orderBy: [{ occurredAt: 'desc' }, { id: 'desc' }],
      take: query.limit,
    });
    return rows.map((row) => ({ ...row, detail: (row.detail ?? {}) as Record<string, unknown> }));
  }
}

type NormalizedEvent = Omit<AuditEvent, 'id' | 'occurredAt'>;

function normalize(input: AuditEventInput): NormalizedEvent {
  const subjectUserId = input.subjectUserId && uuidSchema.safeParse(input.subjectUserId).success ? input.subjectUserId : null;
  const detail = sanitizeDetail(input.detail);
  let subjectEmail: string | null = null;
  if (input.subjectEmail !== undefined) {
    const email = input.subjectEmail.trim().toLowerCase();
    // What is not an address may be a password typed into the wrong field: it is not kept.
    if (emailSchema.safeParse(email).success) subjectEmail = email;
    else detail.subjectEmailMalformed = true;
  }
  const actor = input.actor ?? { type: 'user' as const, id: subjectUserId ?? undefined };
  return {
    action: input.action,
    outcome: input.outcome,
    actorType: actor.type,
    actorId: clip(actor.id, FIELD_MAX),
    subjectUserId,
    subjectEmail,
    clientId: clip(input.clientId, FIELD_MAX),
    ip: clip(input.ip, 64),
    userAgent: clip(input.userAgent, USER_AGENT_MAX),
    detail,
    requestId: currentRequestId() ?? null,
  };
}

function sanitizeDetail(detail: AuditEventInput['detail']): Record<string, unknown> {
  const clean: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(detail ?? {}).slice(0, DETAIL_KEYS_MAX)) {
    if (value === undefined || SECRET_KEY.test(key)) continue;
    if (typeof value === 'string') clean[key] = value.slice(0, DETAIL_STRING_MAX);
    else if (Array.isArray(value)) clean[key] = value.slice(0, DETAIL_KEYS_MAX).map((item) => String(item).slice(0, DETAIL_STRING_MAX));
    else if (value === null || typeof value === 'number' || typeof value === 'boolean') clean[key] = value;
  }
  return clean;
}

function clip(value: string | undefined, max: number): string | null {
  if (value === undefined || value === '') return null;
  // Control characters (a NUL would even make PostgreSQL refuse the row) have no place in an audit field.
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, max) || null;
}
