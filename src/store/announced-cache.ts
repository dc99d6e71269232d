// Records read often and changed seldom (clients, APIs), kept in this process's memory: every change is
// forgotten here at once and announced through the store to every instance sharing it; an entry lives a few
// seconds at most (an announcement can be lost), and nothing is served from memory while this instance is not
// listening for announcements. A value drawn from all records at once can be kept too, forgotten at any change.
import type { Store, Subscription } from './store.ts';

/** The announcement that everything changed (e.g. a role's permissions: every cached answer may depend on it). */
const EVERYTHING = '*';

export interface AnnouncedCacheOptions {
  /** The store channel on which "<key> changed" is announced. */
  channel: string;
  /** Longest an entry is served, in milliseconds; 0 turns the cache off (changes are still announced). */
  maxAgeMs: number;
  /** Most records kept. */
  maxEntries: number;
  /**
   * Most keys kept as "no such record", apart from the records so that made-up keys (anyone can send them)
   * cannot push real records out or fill memory.
   */
  maxUnknownKeys: number;
  /** A change could not be announced: other instances see it only when their entry expires. */
  onAnnounceFailure?: ((error: unknown, key: string) => void) | undefined;
}

interface Entry<Value> {
  /**
   * A copy made when it was read, frozen all through: every caller gets this same one, and none can change what
   * the next one gets (a change throws). Undefined for "no such record".
   */
  value: Value | undefined;
  expiresAtMs: number;
}

export class AnnouncedCache<Value> {
  readonly #store: Pick<Store, 'publish'>;
  readonly #options: AnnouncedCacheOptions;
  readonly #known: LeastRecentlyUsed<Entry<Value>>;
  readonly #unknown: LeastRecentlyUsed<Entry<Value>>;
  readonly #subscription: Subscription | undefined;
  #drawnFromAll: { value: unknown; expiresAtMs: number } | undefined;
  /** Moves on with every forgetting: a read that began before one must not keep what it found. */
  #generation = 0;

  constructor(store: Pick<Store, 'publish' | 'subscribe'>, options: AnnouncedCacheOptions) {
    this.#store = store;
    this.#options = options;
    this.#known = new LeastRecentlyUsed(options.maxEntries);
    this.#unknown = new LeastRecentlyUsed(options.maxUnknownKeys);
    if (options.maxAgeMs > 0) {
      this.#subscription = store.subscribe(options.channel, {
        message: (key) => (key === EVERYTHING ? this.#forgetAll() : this.#forget(key)),
        // Announcements may have been missed while not listening, and none can be trusted to come then.
        listeningChanged: () => this.#forgetAll(),
      });
    }
  }

  /** Whether reads are answered from memory now: on, and listening for announced changes. */
  get active(): boolean {
    return this.#subscription?.listening ?? false;
  }

  /**
   * The record from memory if known and fresh (frozen: read it, never change it), else from `load` (remembered if
   * nothing changed meanwhile).
   */
  async read(key: string, load: () => Promise<Value | undefined>): Promise<Value | undefined> {
    if (!this.active) return load();
    const nowMs = Date.now();
    const entry = this.#known.get(key) ?? this.#unknown.get(key);
    if (entry && entry.expiresAtMs > nowMs) return entry.value;
    if (entry) {
      this.#known.delete(key);
      this.#unknown.delete(key);
    }
    const generation = this.#generation;
    const value = await load();
    if (generation === this.#generation && this.active) {
      const fresh: Entry<Value> = { value: value === undefined ? undefined : deepFreeze(structuredClone(value)), expiresAtMs: nowMs + this.#options.maxAgeMs };
      (value === undefined ? this.#unknown : this.#known).set(key, fresh);
    }
    return value;
  }

  /** A value drawn from every record (read-only to callers), from memory if fresh, else from `load`; any change forgets it. */
  async readDrawnFromAll<Drawn>(load: () => Promise<Drawn>): Promise<Drawn> {
    if (!this.active) return load();
    const nowMs = Date.now();
    if (this.#drawnFromAll && this.#drawnFromAll.expiresAtMs > nowMs) return this.#drawnFromAll.value as Drawn;
    this.#drawnFromAll = undefined;
    const generation = this.#generation;
    const value = await load();
    if (generation === this.#generation && this.active) this.#drawnFromAll = { value, expiresAtMs: nowMs + this.#options.maxAgeMs };
    return value;
  }

  /**
   * A record was created, changed or deleted (and the change committed): forgotten here at once, and announced
   * to every instance sharing the store. Never throws: the change is made; if it cannot be announced, the others
   * see it when their entries expire.
   */
  changed(key: string): Promise<void> {
    this.#forget(key);
    return this.#announce(key);
  }

  /** Something every cached record may depend on changed: all of them are forgotten, everywhere. */
  changedAll(): Promise<void> {
    this.#forgetAll();
    return this.#announce(EVERYTHING);
  }

  async close(): Promise<void> {
    await this.#subscription?.close();
    this.#forgetAll();
  }

  async #announce(key: string): Promise<void> {
    try {
      await this.#store.publish(this.#options.channel, key);
    } catch (error) {
      this.#options.onAnnounceFailure?.(error, key);
    }
  }

  #forget(key: string): void {
    this.#generation++;
    this.#known.delete(key);
    this.#unknown.delete(key);
    this.#drawnFromAll = undefined;
  }

  #forgetAll(): void {
    this.#generation++;
    this.#known.clear();
    this.#unknown.clear();
    this.#drawnFromAll = undefined;
  }
}

function deepFreeze<Value>(value: Value): Value {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const nested of Object.values(value)) deepFreeze(nested);
  }
  return value;
}

/** A Map bounded in size that drops the entry used least recently (Map keeps insertion order). */
class LeastRecentlyUsed<Value> {
  readonly #entries = new Map<string, Value>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(key: string): Value | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  set(key: string, value: Value): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.#capacity) this.#entries.delete(this.#entries.keys().next().value!);
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }
}
