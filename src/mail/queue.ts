// Mail that must reach the person even if the mail server is down right now (links, security notices): each
// message is kept in the Store until it is sent, retried with a growing delay, and dropped (logged) when too old.
// Instances sharing the store share the queue; each attempt is claimed by exactly one of them.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.ts';
import { DependencyUnavailable } from '../errors.ts';
import type { Store } from '../store/store.ts';
import type { MailMessage, Mailer } from './mailer.ts';
import type { TemplateName } from './templates.ts';

export interface MailQueueTimings {
  /** Wait after the first failed attempt; it doubles after each further one. */
  firstRetryDelayMs: number;
  maxRetryDelayMs: number;
  /** A message not sent this long after it was asked for is dropped (so is one whose link has expired). */
  maxAgeMs: number;
  /** How often each instance looks for messages that are due. */
  pollIntervalMs: number;
  /**
   * How long a message being sent stays hidden from the other instances. Longer than any attempt can take
   * (the mailer's timeouts): only if the sender dies mid-attempt is it tried again, after this long.
   */
  claimLeaseMs: number;
}

export const DEFAULT_MAIL_QUEUE_TIMINGS: MailQueueTimings = {
  firstRetryDelayMs: 30_000,
  maxRetryDelayMs: 15 * 60_000,
  maxAgeMs: 24 * 3600_000,
  pollIntervalMs: 10_000,
  claimLeaseMs: 10 * 60_000,
};

export interface MailQueueOptions {
  store: Store;
  mailer: Mailer;
  logger: Logger;
  timings?: Partial<MailQueueTimings>;
  /**
   * When messages are due and too old (default: the system clock). A test moves one by hand to see a message
   * age; the passes themselves still come every pollIntervalMs of real time.
   */
  clock?: Clock;
}

/** sent: the mail server took it; queued: it is down now, and the message goes out when it is back. */
export type Delivered = 'sent' | 'queued';

interface QueuedMail {
  message: MailMessage<TemplateName>;
  queuedAt: number;
  /** Attempts that failed so far. */
  attempts: number;
  nextAttemptAt: number;
  /** After this (epoch ms) the message is dropped instead of sent. */
  expiresAt: number;
  /** Why the last attempt failed (failureReason), so that a drop found by a later pass can still say why. */
  lastFailure?: string;
}

type Outcome = 'sent' | 'queued' | 'dropped' | 'refused' | 'skipped';

const INDEX_KEY = 'mail-queue:messages';
const recordKey = (id: string) => `mail-queue:message:${id}`;

export class MailQueue {
  readonly #store: Store;
  readonly #mailer: Mailer;
  readonly #logger: Logger;
  readonly #timings: MailQueueTimings;
  readonly #clock: Clock;
  /** Attempts under way (first tries and passes), which close() waits for before the store closes. */
  readonly #inFlight = new Set<Promise<unknown>>();
  #pass: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The store was unreachable on the last pass: said once, not on every pass of an outage. */
  #storeDownSaid = false;

  constructor(options: MailQueueOptions) {
    this.#store = options.store;
    this.#mailer = options.mailer;
    this.#logger = options.logger;
    this.#timings = { ...DEFAULT_MAIL_QUEUE_TIMINGS, ...options.timings };
    this.#clock = options.clock ?? systemClock;
  }

  /** Starts looking for due messages every pollIntervalMs; the timer never keeps the process alive. */
  start(): void {
    if (this.#closed || this.#timer) return;
    const tick = () => {
      this.#timer = setTimeout(() => {
        this.retryDue().finally(() => { if (!this.#closed) tick(); });
      }, this.#timings.pollIntervalMs);
      this.#timer.unref();
    };
    tick();
  }

  /**
   * Sends the message now, or, when the mail server cannot take it now, keeps it and sends it when it can.
   * Throws when the mail server refuses it for good (MailRejected, any 5xx reply): retrying cannot help. Also
   * throws the mail server's error when the store is down too, as nothing could keep the message.
   */
  deliver<Name extends TemplateName>(message: MailMessage<Name>): Promise<Delivered> {
    return this.#track(this.#deliver(message as MailMessage<TemplateName>));
  }

  async #deliver(message: MailMessage<TemplateName>): Promise<Delivered> {
    // Nothing to wait for without a mail server (production refuses to start so), nor after close.
    if (this.#mailer.delivery === 'none' || this.#closed) {
      await this.#mailer.send(message);
      return 'sent';
    }
    const now = this.#now();
    const entry: QueuedMail = { message, queuedAt: now, attempts: 0, nextAttemptAt: now, expiresAt: expiryOf(message, now, this.#timings.maxAgeMs) };
    // Kept before the attempt, so that not even a crash during it loses the message.
    let id: string | undefined;
    try {
      id = await this.#hold(entry);
    } catch (error) {
      this.#logger.warn({ template: message.template, reason: failureReason(error) }, 'mail could not be queued (the store is unavailable): sending it without a retry');
      await this.#mailer.send(message);
      return 'sent';
    }
    const outcome = await this.#attempt(id, entry);
    if (outcome.result === 'sent' || outcome.result === 'queued') return outcome.result;
    throw outcome.error;
  }

  /**
   * One pass over the queue: sends the messages that are due, oldest due first, each claimed by one instance.
   * The timer calls it; a call while a pass runs joins that pass.
   */
  retryDue(): Promise<void> {
    this.#pass ??= this.#track(this.#retryDue()).finally(() => { this.#pass = undefined; });
    return this.#pass;
  }

  async #retryDue(): Promise<void> {
    try {
      for (const { id, entry } of await this.#due()) {
        if (this.#closed) return;
        // Still failing: the server is down or throttling. The rest wait for the next pass rather than each
        // wait for a timeout now; each stays due, so an outage costs one attempt per pass and instance.
        if (await this.#retry(id, entry) === 'queued') return;
      }
      this.#storeDownSaid = false;
    } catch (error) {
      if (!(error instanceof DependencyUnavailable && error.dependency === 'store')) {
        this.#logger.error({ error: error instanceof Error ? error.name : 'Error', reason: failureReason(error) }, 'queued mail: a pass over the queue failed');
      } else if (!this.#storeDownSaid) {
        this.#storeDownSaid = true;
        this.#logger.warn('queued mail waits: the store is unavailable');
      }
    }
  }

  /** How many messages wait to be sent (those being sent right now included). */
  async queuedCount(): Promise<number> {
    const records = await Promise.all((await this.#store.indexMembers(INDEX_KEY)).map((id) => this.#store.get(recordKey(id))));
    return records.filter((record) => record && record.consumedAt === undefined).length;
  }

  /**
   * Resolves once no attempt is under way: first attempts and passes (each bounded by the mailer's timeouts),
   * those started meanwhile included. A message the mail server took has reached it by then; tests await this
   * rather than sleep before checking what arrived.
   */
  async idle(): Promise<void> {
    while (this.#inFlight.size) await Promise.allSettled([...this.#inFlight]);
  }

  /** Stops the timer and waits for attempts under way. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.idle();
  }

  async #due(): Promise<Array<{ id: string; entry: QueuedMail }>> {
    const now = this.#now();
    const ids = await this.#store.indexMembers(INDEX_KEY);
    const due: Array<{ id: string; entry: QueuedMail }> = [];
    const gone: string[] = [];
    for (const id of ids) {
      const record = await this.#store.get(recordKey(id));
      if (!record) gone.push(id);
      // Consumed: another instance (or this one) has claimed it; its successor is queued under a new key.
      else if (record.consumedAt === undefined) {
        const entry = parseEntry(record.value);
        if (!entry) {
          // Not written by this version: it would fail every pass.
          await this.#forget(id);
          this.#logger.error('queued mail dropped: its record could not be read');
        } else if (entry.nextAttemptAt <= now || entry.expiresAt <= now) due.push({ id, entry });
      }
    }
    await this.#store.removeFromIndex(INDEX_KEY, gone);
    return due.sort((a, b) => a.entry.nextAttemptAt - b.entry.nextAttemptAt);
  }

  /**
   * Claims a queued message and tries it. Its successor (the same message, hidden for the claim lease) is
   * written before the claim, so whatever happens to this instance during the attempt, the message stays.
   */
  async #retry(id: string, entry: QueuedMail): Promise<Outcome> {
    const claimedAt = Math.floor(this.#now() / 1000);
    if (entry.expiresAt <= this.#now()) {
      if (!await this.#store.consume(recordKey(id), claimedAt)) return 'skipped';
      await this.#forget(id);
      this.#dropped(entry);
      return 'dropped';
    }
    const successor = await this.#hold(entry);
    if (!await this.#store.consume(recordKey(id), claimedAt)) {
      await this.#forget(successor);
      return 'skipped';
    }
    await this.#forget(id);
    const outcome = await this.#attempt(successor, entry);
    if (outcome.result === 'sent') {
      this.#logger.info({ template: entry.message.template, attempts: entry.attempts + 1, queuedForSeconds: Math.round((this.#now() - entry.queuedAt) / 1000) }, 'queued mail sent');
    }
    return outcome.result;
  }

  /** Tries a held message once: forgets it when sent or refused for good, else schedules its next attempt. */
  async #attempt(id: string, entry: QueuedMail): Promise<{ result: Outcome; error?: unknown }> {
    const { template } = entry.message;
    try {
      await this.#mailer.send(entry.message);
    } catch (error) {
      if (!isTransient(error)) {
        await this.#forgetOrSay(id, template);
        // Never the reply's text: mail servers quote the address in it.
        this.#logger.warn({ template, reason: failureReason(error) }, 'mail refused for good: not retried');
        return { result: 'refused', error };
      }
      const attempts = entry.attempts + 1;
      const delayMs = Math.min(this.#timings.firstRetryDelayMs * 2 ** (attempts - 1), this.#timings.maxRetryDelayMs);
      const next: QueuedMail = { ...entry, attempts, nextAttemptAt: this.#now() + delayMs, lastFailure: failureReason(error) };
      if (next.nextAttemptAt >= entry.expiresAt) {
        await this.#forgetOrSay(id, template);
        this.#dropped(next);
        return { result: 'dropped', error };
      }
      try {
        await this.#store.put(recordKey(id), serialize(next), this.#ttlSeconds(next));
      } catch {
        // The held copy stays: it is tried again once its claim lease ends.
        this.#logger.warn({ template, attempts }, 'mail not sent, and its retry could not be scheduled: it is tried again later');
        return { result: 'queued' };
      }
      this.#logger.warn({ template, attempts, retryInSeconds: Math.ceil(delayMs / 1000), reason: next.lastFailure }, 'mail not sent (the mail server is unavailable): queued for a retry');
      return { result: 'queued' };
    }
    await this.#forgetOrSay(id, template);
    return { result: 'sent' };
  }

  /** Writes the message under a new key, hidden from every pass (this one's too) until the claim lease ends. */
  async #hold(entry: QueuedMail): Promise<string> {
    const id = randomUUID();
    const held = { ...entry, nextAttemptAt: this.#now() + this.#timings.claimLeaseMs };
    const ttlSeconds = this.#ttlSeconds(held);
    // Record first: a pass drops index members whose record is missing.
    await this.#store.put(recordKey(id), serialize(held), ttlSeconds);
    await this.#store.addToIndex(INDEX_KEY, id, ttlSeconds);
    return id;
  }

  async #forget(id: string): Promise<void> {
    await this.#store.delete([recordKey(id)]);
    await this.#store.removeFromIndex(INDEX_KEY, [id]);
  }

  async #forgetOrSay(id: string, template: string): Promise<void> {
    try {
      await this.#forget(id);
    } catch {
      this.#logger.warn({ template }, 'mail handled, but could not be taken off the queue: it may be sent again');
    }
  }

  /** The one way a message is lost: said at error level, with why, for an operator to act on. */
  #dropped(entry: QueuedMail): void {
    const untilLinkExpired = entry.expiresAt < entry.queuedAt + this.#timings.maxAgeMs;
    const minutes = Math.round(this.#timings.maxAgeMs / 60_000);
    const kept = untilLinkExpired ? 'while the link in it was valid' : `within ${minutes % 60 ? `${minutes} minutes` : `${minutes / 60} hours`}`;
    this.#logger.error({
      template: entry.message.template, attempts: entry.attempts, queuedForMinutes: Math.round((this.#now() - entry.queuedAt) / 60_000),
      ...(entry.lastFailure === undefined ? {} : { reason: entry.lastFailure }),
    }, `queued mail dropped: the mail server could not take it ${kept}`);
  }

  /** Long enough to outlive the message's last chance and a claim on it, so that a pass sees it expire. */
  #ttlSeconds(entry: QueuedMail): number {
    return Math.max(1, Math.ceil((entry.expiresAt + this.#timings.claimLeaseMs + this.#timings.pollIntervalMs - this.#now()) / 1000));
  }

  #now(): number {
    return this.#clock.now().getTime();
  }

  #track<Result>(work: Promise<Result>): Promise<Result> {
    this.#inFlight.add(work);
    work.then(() => this.#inFlight.delete(work), () => this.#inFlight.delete(work));
    return work;
  }
}

/** A message with a link is of no use once the link has expired. */
function expiryOf(message: MailMessage<TemplateName>, now: number, maxAgeMs: number): number {
  const data = message.data as { expiresInMinutes?: unknown };
  const linkLifetimeMs = typeof data.expiresInMinutes === 'number' ? data.expiresInMinutes * 60_000 : Infinity;
  return now + Math.min(maxAgeMs, linkLifetimeMs);
}

/** Unreachable, timed out, or a 4xx reply: worth trying again. A 5xx is the server's final word. */
function isTransient(error: unknown): boolean {
  if (!(error instanceof DependencyUnavailable) || error.dependency !== 'mail') return false;
  const responseCode = (error.cause as { responseCode?: unknown } | undefined)?.responseCode;
  return !(typeof responseCode === 'number' && responseCode >= 500);
}

/** What went wrong, safe for a log line: a reply code or an error code, never a message that could quote the address. */
function failureReason(error: unknown): string {
  const cause = (error instanceof Error && error.cause !== undefined ? error.cause : error) as { code?: unknown; responseCode?: unknown } | null;
  if (typeof cause?.responseCode === 'number') return `SMTP ${cause.responseCode}`;
  if (typeof cause?.code === 'string' && /^[A-Z][A-Z_]*$/.test(cause.code)) return cause.code;
  return error instanceof Error ? error.name : 'Error';
}

// Template data carries Dates (changedAt, requestedAt); JSON alone would bring them back as strings.
function serialize(entry: QueuedMail): string {
  return JSON.stringify(entry, function (this: Record<string, unknown>, key, value: unknown) {
    const original = this[key];
    return original instanceof Date ? { $date: original.toISOString() } : value;
  });
}

function parseEntry(text: string): QueuedMail | undefined {
  try {
    const entry = JSON.parse(text, (_key, value: unknown) => {
      if (value && typeof value === 'object' && Object.keys(value).length === 1 && typeof (value as { $date?: unknown }).$date === 'string') {
        return new Date((value as { $date: string }).$date);
      }
      return value;
    }) as Partial<QueuedMail> | null;
    const complete = typeof entry?.message?.template === 'string' && typeof entry.nextAttemptAt === 'number'
      && typeof entry.expiresAt === 'number' && typeof entry.queuedAt === 'number' && typeof entry.attempts === 'number';
    return complete ? entry as QueuedMail : undefined;
  } catch {
    return undefined;
  }
}
