// Messages that must reach their receiver even if it is down right now (mail, logout notices to applications):
// each is kept in the Store until it is sent, retried with a growing delay, and dropped (logged, and told to
// its kind) when too old. Instances sharing the store share the queue; each attempt is claimed by exactly one.
// Messages are kept sealed: a reset link waiting in Redis is a way into an account for whoever reads Redis.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.ts';
import { DependencyUnavailable } from '../errors.ts';
import type { Store } from './store.ts';

export interface QueueTimings {
  /** Wait after the first failed attempt; it doubles after each further one. */
  firstRetryDelayMs: number;
  maxRetryDelayMs: number;
  /** A message not done this long after it was asked for is dropped. */
  maxAgeMs: number;
  /** How often each instance looks for messages that are due. */
  pollIntervalMs: number;
  /**
   * How long a message being tried stays hidden from the other instances. Longer than any attempt can take (its
   * timeouts): only if the instance dies mid-attempt is it tried again, after this long.
   */
  claimLeaseMs: number;
}

/** What a queue does, and how it speaks of it. */
export interface MessageKind<Message> {
  /** Prefix of the queue's keys in the store. */
  keyPrefix: string;
  /** What a message is called in log lines ("mail", "logout notice"). */
  noun: string;
  /** Who takes the messages, in log lines ("the mail server", "the application"). */
  receiver: string;
  /**
   * Which receiver takes this message, where there are several (each application its own logout notices): one
   * that is down holds back only its own messages. Without it, all go to one receiver (the mail server).
   */
  receiverOf?(message: Message): string;
  /** Sends the message once; throws when it could not be delivered. */
  perform(message: Message): Promise<void>;
  /** Whether a failure is worth trying again (unreachable, timed out), rather than a refusal for good. */
  isTransient(error: unknown): boolean;
  /** Why an attempt failed, safe for a log line and the audit trail (never a reply that could quote data). */
  failureReason(error: unknown): string;
  /** Log fields naming the message: never a secret, token or address. */
  describe(message: Message): Record<string, unknown>;
  /** Whether a record read back from the store is a message of this kind (written by this version). */
  isMessage(value: unknown): value is Message;
  /** When the message is of no use any more, if sooner than the queue's maxAgeMs, with words for it in a log line. */
  usefulUntil?(message: Message, queuedAt: number): { at: number; words: string } | undefined;
  /** Told once a queued message was done (after one or more attempts). */
  done?(message: Message, outcome: { attempts: number }): Promise<void>;
  /** Told once a message ends undone: refused for good, or still failing when too old. */
  givenUp?(message: Message, outcome: { attempts: number; reason: string }): Promise<void>;
}

/** sent: done now; queued: its receiver is unavailable now, and it is done when it is back. */
export type Delivered = 'sent' | 'queued';

interface QueuedMessage<Message> {
  message: Message;
  queuedAt: number;
  /** Attempts that failed so far. */
  attempts: number;
  nextAttemptAt: number;
  /** After this (epoch ms) the message is dropped instead of tried. */
  expiresAt: number;
  /** Why the last attempt failed (failureReason), so that a drop found by a later pass can still say why. */
  lastFailure?: string;
}

type Outcome = 'sent' | 'queued' | 'dropped' | 'refused' | 'skipped';

/** Encryption at rest for kept messages (src/keys/sealed.ts); context binds a sealed value to its record. */
export interface MessageSealer {
  seal(plaintext: string, context: string): Promise<string>;
  open(sealed: string, context: string): Promise<string>;
}

export interface DurableQueueOptions<Message> {
  store: Store;
  sealer: MessageSealer;
  logger: Logger;
  kind: MessageKind<Message>;
  timings: QueueTimings;
  /**
   * When messages are due and too old (default: the system clock). A test moves one by hand to see a message age; the
   * passes themselves still come every pollIntervalMs of real time.
   */
  clock?: Clock | undefined;
}

export class DurableQueue<Message> {
  readonly #store: Store;
  readonly #sealer: MessageSealer;
  readonly #logger: Logger;
  readonly #kind: MessageKind<Message>;
  readonly #timings: QueueTimings;
  readonly #clock: Clock;
  readonly #indexKey: string;
  /** Attempts under way (first tries and passes), which close() waits for before the store closes. */
  readonly #inFlight = new Set<Promise<unknown>>();
  #pass: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The store was unreachable on the last pass: said once, not on every pass of an outage. */
  #storeDownSaid = false;

  constructor(options: DurableQueueOptions<Message>) {
    this.#store = options.store;
    this.#sealer = options.sealer;
    this.#logger = options.logger;
    this.#kind = options.kind;
    this.#timings = options.timings;
    this.#clock = options.clock ?? systemClock;
    this.#indexKey = `${this.#kind.keyPrefix}:messages`;
  }

  get closed(): boolean {
    return this.#closed;
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
   * Sends the message now, or, when its receiver cannot take it now, keeps it and sends it when it can. Throws when
   * the message is refused for good (retrying cannot help). Also throws the receiver's error when the store is down
   * too, as nothing could keep the message.
   */
  deliver(message: Message): Promise<Delivered> {
    return this.#track(this.#deliver(message));
  }

  /**
   * Keeps the message and tries it without waiting for the attempt (idle() does): for work the person's request must
   * not wait on. When the store cannot keep it, it is tried once, still without waiting.
   */
  async submit(message: Message): Promise<void> {
    const entry = this.#entry(message);
    let id: string;
    try {
      id = await this.#hold(entry);
    } catch (error) {
      this.#logger.warn({ ...this.#kind.describe(message), reason: failureReason(error) }, `${this.#kind.noun} could not be queued (the store is unavailable): trying it once, without a retry`);
      this.#track(this.#kind.perform(message).then(
        () => this.#told(() => this.#kind.done?.(message, { attempts: 1 })),
        (failure: unknown) => this.#givenUp(entry, 1, this.#kind.failureReason(failure)),
      ));
      return;
    }
    this.#track(this.#attempt(id, entry));
  }

  async #deliver(message: Message): Promise<Delivered> {
    const entry = this.#entry(message);
    // Kept before the attempt, so that not even a crash during it loses the message.
    let id: string | undefined;
    try {
      id = await this.#hold(entry);
    } catch (error) {
      this.#logger.warn({ ...this.#kind.describe(message), reason: failureReason(error) }, `${this.#kind.noun} could not be queued (the store is unavailable): sending it without a retry`);
      await this.#kind.perform(message);
      return 'sent';
    }
    const outcome = await this.#attempt(id, entry);
    if (outcome.result === 'sent' || outcome.result === 'queued') return outcome.result;
    throw outcome.error;
  }

  /**
   * One pass over the queue: tries the messages that are due, oldest due first, each claimed by one instance. The
   * timer calls it; a call while a pass runs joins that pass.
   */
  retryDue(): Promise<void> {
    this.#pass ??= this.#track(this.#retryDue()).finally(() => { this.#pass = undefined; });
    return this.#pass;
  }

  async #retryDue(): Promise<void> {
    try {
      const stillFailing = new Set<string>();
      for (const { id, entry } of await this.#due()) {
        if (this.#closed) return;
        // A receiver still failing is down or throttling: the rest of its messages wait for the next pass rather
        // than each wait for a timeout now (each stays due, so an outage costs one attempt per pass and instance);
        // other receivers' messages go on.
        const receiver = this.#kind.receiverOf?.(entry.message) ?? '';
        if (stillFailing.has(receiver)) continue;
        if (await this.#retry(id, entry) === 'queued') stillFailing.add(receiver);
      }
      this.#storeDownSaid = false;
    } catch (error) {
      if (!(error instanceof DependencyUnavailable && error.dependency === 'store')) {
        this.#logger.error({ error: error instanceof Error ? error.name : 'Error', reason: failureReason(error) }, `queued ${this.#kind.noun}: a pass over the queue failed`);
      } else if (!this.#storeDownSaid) {
        this.#storeDownSaid = true;
        this.#logger.warn(`queued ${this.#kind.noun} waits: the store is unavailable`);
      }
    }
  }

  /** How many messages wait (those being tried right now included). */
  async queuedCount(): Promise<number> {
    const records = await Promise.all((await this.#store.indexMembers(this.#indexKey)).map((id) => this.#store.get(this.#recordKey(id))));
    return records.filter((record) => record && record.consumedAt === undefined).length;
  }

  /**
   * Resolves once no attempt is under way: first attempts and passes (each bounded by the receiver's timeouts),
   * those started meanwhile included. Tests await this rather than sleep before checking what arrived.
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

  #entry(message: Message): QueuedMessage<Message> {
    const now = this.#now();
    const expiresAt = Math.min(now + this.#timings.maxAgeMs, this.#kind.usefulUntil?.(message, now)?.at ?? Infinity);
    return { message, queuedAt: now, attempts: 0, nextAttemptAt: now, expiresAt };
  }

  async #due(): Promise<Array<{ id: string; entry: QueuedMessage<Message> }>> {
    const now = this.#now();
    const ids = await this.#store.indexMembers(this.#indexKey);
    const due: Array<{ id: string; entry: QueuedMessage<Message> }> = [];
    const gone: string[] = [];
    let sealedElsewhere = 0;
    for (const id of ids) {
      const record = await this.#store.get(this.#recordKey(id));
      if (!record) gone.push(id);
      // Consumed: another instance (or this one) has claimed it; its successor is queued under a new key.
      else if (record.consumedAt === undefined) {
        const entry = await this.#parse(id, record.value);
        if (entry === 'sealed elsewhere') sealedElsewhere++;
        else if (!entry) {
          // Not written by this version: it would fail every pass.
          await this.#forget(id);
          this.#logger.error(`queued ${this.#kind.noun} dropped: its record could not be read`);
        } else if (entry.nextAttemptAt <= now || entry.expiresAt <= now) due.push({ id, entry });
      }
    }
    if (sealedElsewhere) {
      // Left for an instance that can open them (they expire with their record): this one is set up differently.
      this.#logger.error({ messages: sealedElsewhere }, `queued ${this.#kind.noun} left alone: sealed with a key this instance does not have (is ENCRYPTION_KEYS the same on every instance?)`);
    }
    await this.#store.removeFromIndex(this.#indexKey, gone);
    return due.sort((a, b) => a.entry.nextAttemptAt - b.entry.nextAttemptAt);
  }

  /**
   * Claims a queued message and tries it. Its successor (the same message, hidden for the claim lease) is written before
   * the claim, so whatever happens to this instance during the attempt, the message stays.
   */
  async #retry(id: string, entry: QueuedMessage<Message>): Promise<Outcome> {
    const claimedAt = Math.floor(this.#now() / 1000);
    if (entry.expiresAt <= this.#now()) {
      if (!await this.#store.consume(this.#recordKey(id), claimedAt)) return 'skipped';
      await this.#forget(id);
      await this.#dropped(entry);
      return 'dropped';
    }
    const successor = await this.#hold(entry);
    if (!await this.#store.consume(this.#recordKey(id), claimedAt)) {
      await this.#forget(successor);
      return 'skipped';
    }
    await this.#forget(id);
    const outcome = await this.#attempt(successor, entry);
    if (outcome.result === 'sent') {
      this.#logger.info({ ...this.#kind.describe(entry.message), attempts: entry.attempts + 1, queuedForSeconds: Math.round((this.#now() - entry.queuedAt) / 1000) }, `queued ${this.#kind.noun} sent`);
    }
    return outcome.result;
  }

  /** Tries a held message once: forgets it when done or refused for good, else schedules its next attempt. */
  async #attempt(id: string, entry: QueuedMessage<Message>): Promise<{ result: Outcome; error?: unknown }> {
    const described = this.#kind.describe(entry.message);
    try {
      await this.#kind.perform(entry.message);
    } catch (error) {
      const reason = this.#kind.failureReason(error);
      if (!this.#kind.isTransient(error)) {
        await this.#forgetOrSay(id, described);
        this.#logger.warn({ ...described, reason }, `${this.#kind.noun} refused for good: not retried`);
        await this.#givenUp(entry, entry.attempts + 1, reason);
        return { result: 'refused', error };
      }
      const attempts = entry.attempts + 1;
      const delayMs = Math.min(this.#timings.firstRetryDelayMs * 2 ** (attempts - 1), this.#timings.maxRetryDelayMs);
      const next: QueuedMessage<Message> = { ...entry, attempts, nextAttemptAt: this.#now() + delayMs, lastFailure: reason };
      if (next.nextAttemptAt >= entry.expiresAt) {
        await this.#forgetOrSay(id, described);
        await this.#dropped(next);
        return { result: 'dropped', error };
      }
      try {
        await this.#write(id, next, this.#ttlSeconds(next));
      } catch {
        // The held copy stays: it is tried again once its claim lease ends.
        this.#logger.warn({ ...described, attempts }, `${this.#kind.noun} not sent, and its retry could not be scheduled: it is tried again later`);
        return { result: 'queued' };
      }
      this.#logger.warn({ ...described, attempts, retryInSeconds: Math.ceil(delayMs / 1000), reason }, `${this.#kind.noun} not sent (${this.#kind.receiver} is unavailable): queued for a retry`);
      return { result: 'queued' };
    }
    await this.#forgetOrSay(id, described);
    await this.#told(() => this.#kind.done?.(entry.message, { attempts: entry.attempts + 1 }));
    return { result: 'sent' };
  }

  /** Writes the message under a new key, hidden from every pass (this one's too) until the claim lease ends. */
  async #hold(entry: QueuedMessage<Message>): Promise<string> {
    const id = randomUUID();
    const held = { ...entry, nextAttemptAt: this.#now() + this.#timings.claimLeaseMs };
    const ttlSeconds = this.#ttlSeconds(held);
    // Record first: a pass drops index members whose record is missing.
    await this.#write(id, held, ttlSeconds);
    await this.#store.addToIndex(this.#indexKey, id, ttlSeconds);
    return id;
  }

  async #forget(id: string): Promise<void> {
    await this.#store.delete([this.#recordKey(id)]);
    await this.#store.removeFromIndex(this.#indexKey, [id]);
  }

  async #forgetOrSay(id: string, described: Record<string, unknown>): Promise<void> {
    try {
      await this.#forget(id);
    } catch {
      this.#logger.warn(described, `${this.#kind.noun} handled, but could not be taken off the queue: it may be sent again`);
    }
  }

  /** The one way a message is lost: said at error level, with why, for an operator to act on. */
  async #dropped(entry: QueuedMessage<Message>): Promise<void> {
    const useful = this.#kind.usefulUntil?.(entry.message, entry.queuedAt);
    const minutes = Math.round(this.#timings.maxAgeMs / 60_000);
    const kept = useful && useful.at <= entry.expiresAt ? useful.words : `within ${minutes % 60 ? `${minutes} minutes` : `${minutes / 60} hours`}`;
    this.#logger.error({
      ...this.#kind.describe(entry.message), attempts: entry.attempts, queuedForMinutes: Math.round((this.#now() - entry.queuedAt) / 60_000),
      ...(entry.lastFailure === undefined ? {} : { reason: entry.lastFailure }),
    }, `queued ${this.#kind.noun} dropped: ${this.#kind.receiver} could not take it ${kept}`);
    await this.#givenUp(entry, entry.attempts, entry.lastFailure ?? 'expired');
  }

  #givenUp(entry: QueuedMessage<Message>, attempts: number, reason: string): Promise<void> {
    return this.#told(() => this.#kind.givenUp?.(entry.message, { attempts, reason }));
  }

  /** Tells the kind an outcome; its own failure (say, the audit trail down) is logged, never the queue's. */
  async #told(tell: () => Promise<void> | undefined): Promise<void> {
    try {
      await tell();
    } catch (error) {
      this.#logger.error({ error: error instanceof Error ? error.name : 'Error' }, `queued ${this.#kind.noun}: its outcome could not be recorded`);
    }
  }

  /** Long enough to outlive the message's last chance and a claim on it, so that a pass sees it expire. */
  #ttlSeconds(entry: QueuedMessage<Message>): number {
    return Math.max(1, Math.ceil((entry.expiresAt + this.#timings.claimLeaseMs + this.#timings.pollIntervalMs - this.#now()) / 1000));
  }

  #recordKey(id: string): string {
    return `${this.#kind.keyPrefix}:message:${id}`;
  }

  async #write(id: string, entry: QueuedMessage<Message>, ttlSeconds: number): Promise<void> {
    const sealed = { ...entry, message: await this.#sealer.seal(serialize(entry.message), this.#recordKey(id)) };
    await this.#store.put(this.#recordKey(id), serialize(sealed), ttlSeconds);
  }

  /** The entry kept under id; undefined when it cannot be read (another version's), or sealed with a key not configured here. */
  async #parse(id: string, text: string): Promise<QueuedMessage<Message> | undefined | 'sealed elsewhere'> {
    const entry = parse(text) as Partial<QueuedMessage<unknown>> | undefined;
    if (entry === undefined) return undefined;
    // A string is sealed; a message kept before messages were sealed is read as it is.
    if (typeof entry.message === 'string') {
      try {
        entry.message = parse(await this.#sealer.open(entry.message, this.#recordKey(id)));
      } catch {
        return 'sealed elsewhere';
      }
    }
    const complete = this.#kind.isMessage(entry.message) && typeof entry.nextAttemptAt === 'number'
      && typeof entry.expiresAt === 'number' && typeof entry.queuedAt === 'number' && typeof entry.attempts === 'number';
    return complete ? entry as QueuedMessage<Message> : undefined;
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

/** The store's failure, safe for a log line: its cause's code, or the error's name. */
function failureReason(error: unknown): string {
  const code = ((error instanceof Error && error.cause !== undefined ? error.cause : error) as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^[A-Z][A-Z_]*$/.test(code)) return code;
  return error instanceof Error ? error.name : 'Error';
}

// Messages may carry Dates (mail's changedAt, requestedAt); JSON alone would bring them back as strings.
function serialize(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, value: unknown) {
    const original = this[key];
    return original instanceof Date ? { $date: original.toISOString() } : value;
  });
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text, (_key, value: unknown) => {
      if (value && typeof value === 'object' && Object.keys(value).length === 1 && typeof (value as { $date?: unknown }).$date === 'string') {
        return new Date((value as { $date: string }).$date);
      }
      return value;
    }) as unknown;
  } catch {
    return undefined;
  }
}
