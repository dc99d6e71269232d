// The in-process Store used when no REDIS_URL is configured: one keyspace in a Map with the same
// semantics as RedisStore (TTLs, consume-once, never-shortened indexes, WRONGTYPE on mixed use), and
// publish/subscribe within this store only: another process (the CLI) has a store of its own.

import type { Store, StoredRecord, Subscription, SubscriptionHandlers } from './store.ts';
import { wholeSecondsTtl } from './ttl.ts';

export interface MemoryStoreOptions {
  prefix: string;
  /** How often expired keys are freed even if nobody reads them again. Default 60 s. */
  sweepIntervalMs?: number;
}

interface RecordEntry {
  kind: 'record';
  value: string;
  consumedAt?: number;
  expiresAtMs: number;
}

interface IndexEntry {
  kind: 'index';
  members: Set<string>;
  expiresAtMs: number;
}

type Entry = RecordEntry | IndexEntry;

const defaultSweepIntervalMs = 60_000;

/** Redis's own text for a key used as a record and an index at once, so callers see one error either way. */
const wrongTypeMessage = 'WRONGTYPE Operation against a key holding the wrong kind of value';

export class MemoryStore implements Store {
  readonly #prefix: string;
  readonly #entries = new Map<string, Entry>();
  /** Subscribers by prefixed channel. */
  readonly #channels = new Map<string, Set<MemorySubscription>>();
  #sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: MemoryStoreOptions) {
    this.#prefix = options.prefix;
    this.#sweepTimer = setInterval(() => this.#sweepExpired(), options.sweepIntervalMs ?? defaultSweepIntervalMs);
    // The sweep only frees memory; it must never keep a finished process (or test run) alive.
    this.#sweepTimer.unref();
  }

  /** Keys currently held, expired ones included until the next sweep or read. For diagnostics. */
  get storedKeyCount(): number {
    return this.#entries.size;
  }

  async put(key: string, value: string, ttlSeconds: number): Promise<void> {
    const lifetimeSeconds = wholeSecondsTtl(ttlSeconds);
    this.#entries.set(this.#prefix + key, {
      kind: 'record',
      value,
      expiresAtMs: Date.now() + lifetimeSeconds * 1000,
    });
  }

  async create(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    if (this.#liveEntry(this.#prefix + key) !== undefined) return false;
    await this.put(key, value, ttlSeconds);
    return true;
  }

  async get(key: string): Promise<StoredRecord | undefined> {
    const entry = this.#liveEntry(this.#prefix + key);
    if (entry === undefined) return undefined;
    if (entry.kind !== 'record') throw new Error(wrongTypeMessage);
    return entry.consumedAt === undefined
      ? { value: entry.value }
      : { value: entry.value, consumedAt: entry.consumedAt };
  }

  async consume(key: string, atEpochSeconds: number): Promise<boolean> {
    const entry = this.#liveEntry(this.#prefix + key);
    if (entry === undefined) return false;
    if (entry.kind !== 'record') throw new Error(wrongTypeMessage);
    if (entry.consumedAt !== undefined) return false;
    entry.consumedAt = atEpochSeconds;
    return true;
  }

  async unconsume(key: string, atEpochSeconds: number): Promise<void> {
    const entry = this.#liveEntry(this.#prefix + key);
    if (entry?.kind === 'record' && entry.consumedAt === atEpochSeconds) delete entry.consumedAt;
  }

  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) this.#entries.delete(this.#prefix + key);
  }

  async addToIndex(indexKey: string, member: string, ttlSeconds: number): Promise<void> {
    const lifetimeSeconds = wholeSecondsTtl(ttlSeconds);
    const prefixedKey = this.#prefix + indexKey;
    const requestedExpiryMs = Date.now() + lifetimeSeconds * 1000;
    const entry = this.#liveEntry(prefixedKey);
    if (entry === undefined) {
      this.#entries.set(prefixedKey, { kind: 'index', members: new Set([member]), expiresAtMs: requestedExpiryMs });
      return;
    }
    if (entry.kind !== 'index') throw new Error(wrongTypeMessage);
    entry.members.add(member);
    // Members may point at records that outlive the index's current TTL: only ever extend it.
    entry.expiresAtMs = Math.max(entry.expiresAtMs, requestedExpiryMs);
  }

  async indexMembers(indexKey: string): Promise<string[]> {
    const entry = this.#liveEntry(this.#prefix + indexKey);
    if (entry === undefined) return [];
    if (entry.kind !== 'index') throw new Error(wrongTypeMessage);
    return [...entry.members];
  }

  async removeFromIndex(indexKey: string, members: readonly string[]): Promise<void> {
    const prefixedKey = this.#prefix + indexKey;
    const entry = this.#liveEntry(prefixedKey);
    if (entry === undefined) return;
    if (entry.kind !== 'index') throw new Error(wrongTypeMessage);
    for (const member of members) entry.members.delete(member);
    if (entry.members.size === 0) this.#entries.delete(prefixedKey);
  }

  async publish(channel: string, message: string): Promise<void> {
    // A copy: a subscriber may subscribe or close while being told.
    for (const subscription of [...this.#channels.get(this.#prefix + channel) ?? []]) subscription.deliver(message);
  }

  subscribe(channel: string, handlers: SubscriptionHandlers): Subscription {
    const prefixedChannel = this.#prefix + channel;
    const subscribers = this.#channels.get(prefixedChannel) ?? new Set<MemorySubscription>();
    this.#channels.set(prefixedChannel, subscribers);
    // In one process nothing can be missed: listening from the start until closed.
    const subscription = new MemorySubscription(handlers, () => {
      subscribers.delete(subscription);
      if (subscribers.size === 0 && this.#channels.get(prefixedChannel) === subscribers) this.#channels.delete(prefixedChannel);
    });
    subscribers.add(subscription);
    return subscription;
  }

  async ping(): Promise<void> {}

  async durabilityProblems(): Promise<string[]> {
    return ['the in-process store loses everything when the process ends: set REDIS_URL'];
  }

  async close(): Promise<void> {
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
    this.#entries.clear();
    for (const subscribers of [...this.#channels.values()]) {
      for (const subscription of [...subscribers]) await subscription.close();
    }
  }

  /** The entry under a prefixed key, or undefined if absent or expired (an expired one is freed). */
  #liveEntry(prefixedKey: string): Entry | undefined {
    const entry = this.#entries.get(prefixedKey);
    if (entry === undefined) return undefined;
    if (entry.expiresAtMs <= Date.now()) {
      this.#entries.delete(prefixedKey);
      return undefined;
    }
    return entry;
  }

  #sweepExpired(): void {
    const nowMs = Date.now();
    for (const [prefixedKey, entry] of this.#entries) {
      if (entry.expiresAtMs <= nowMs) this.#entries.delete(prefixedKey);
    }
  }
}

class MemorySubscription implements Subscription {
  readonly #handlers: SubscriptionHandlers;
  readonly #remove: () => void;
  #listening = true;

  constructor(handlers: SubscriptionHandlers, remove: () => void) {
    this.#handlers = handlers;
    this.#remove = remove;
  }

  get listening(): boolean {
    return this.#listening;
  }

  deliver(message: string): void {
    if (this.#listening) this.#handlers.message(message);
  }

  async close(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    this.#remove();
    this.#handlers.listeningChanged?.(false);
  }
}
