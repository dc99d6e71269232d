// The audit trail's database rows are kept AUDIT_RETENTION_DAYS (a year by default): each instance deletes older ones
// at start and then once an hour. Instances sharing the database may do it at the same time: a row deleted by one is
// simply not there for the other.
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import type { AuditTrail } from './audit.ts';

const DAY_MS = 24 * 3600 * 1000;
const HOUR_MS = 3600 * 1000;

export interface AuditRetentionOptions {
  /** 0: events are kept for ever (nothing is started). */
  retentionDays: number;
  clock: Clock;
  logger: Logger;
  /** Between passes. Default an hour. */
  intervalMs?: number;
}

export class AuditRetention {
  readonly #trail: Pick<AuditTrail, 'deleteBefore'>;
  readonly #options: AuditRetentionOptions;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<number> = Promise.resolve(0);

  constructor(trail: Pick<AuditTrail, 'deleteBefore'>, options: AuditRetentionOptions) {
    this.#trail = trail;
    this.#options = options;
    this.#logger = options.logger.child({ component: 'audit' });
  }

  /** A pass now, then one each interval. */
  start(): void {
    if (!this.#options.retentionDays) return;
    this.#pass = this.#deleteExpired();
    this.#timer = setInterval(() => {
      this.#pass = this.#pass.then(() => this.#deleteExpired());
    }, this.#options.intervalMs ?? HOUR_MS);
    this.#timer.unref();
  }

  /** The pass under way or last made: how many events it deleted (tests await it). */
  get lastPass(): Promise<number> {
    return this.#pass;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#pass;
  }

  /** Never rejects: a database that is down now is tried again at the next pass. */
  async #deleteExpired(): Promise<number> {
    const before = new Date(this.#options.clock.now().getTime() - this.#options.retentionDays * DAY_MS);
    try {
      const deleted = await this.#trail.deleteBefore(before);
      if (deleted) this.#logger.info({ deleted, before: before.toISOString() }, 'audit events past their retention deleted');
      return deleted;
    } catch (error) {
      this.#logger.warn({ err: error }, 'audit events past their retention could not be deleted: tried again within the hour');
      return 0;
    }
  }
}
