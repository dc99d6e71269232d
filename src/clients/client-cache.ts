// Recently read clients kept in memory: the engine looks a client up on nearly every protocol request,
// and each lookup was a database query. Every change is forgotten here at once and announced through the
// store to every instance sharing it; an entry lives a few seconds at most (an announcement can be lost),
// and nothing is served from memory while this instance is not listening for announcements. What is drawn
// from all clients at once (the origins single-page apps call from) is kept the same way, and forgotten at
// any client's change.
import type { Store, Subscription } from '../store/store.ts';
import type { ClientMetadata } from './clients.ts';

/** The store channel on which "client <id> changed" is announced (the message is the client id). */
export const CLIENT_CHANGES_CHANNEL = 'clients:changed';

export interface ClientCacheOptions {
  /** Longest an entry is served, in milliseconds; 0 turns the cache off (changes are still announced). */
  maxAgeMs: number;
  /** Most clients kept. Default 10 000. */
  maxClients?: number;
  /**
   * Most ids kept as "no such client", apart from the clients so that made-up ids (anyone can send
   * them) cannot push real clients out or fill memory. Default 1 000.
   */
  maxUnknownIds?: number;
  /** A change could not be announced: other instances see it only when their entry expires. */
  onAnnounceFailure?: (error: unknown, clientId: string) => void;
}

interface Entry {
  /** The metadata as JSON, so that no caller can change what the next one gets; undefined for "no such client". */
  json: string | undefined;
  expiresAtMs: number;
}

export class ClientCache {
  readonly #store: Pick<Store, 'publish'>;
  readonly #maxAgeMs: number;
  readonly #clients: LeastRecentlyUsed<Entry>;
  readonly #unknownIds: LeastRecentlyUsed<Entry>;
  readonly #onAnnounceFailure: ClientCacheOptions['onAnnounceFailure'];
  readonly #subscription: Subscription | undefined;
  /** The origins single-page apps may call from, drawn from every client; undefined until read. */
  #singlePageAppOrigins: { origins: ReadonlySet<string>; expiresAtMs: number } | undefined;
  /** Moves on with every forgetting: a read that began before one must not keep what it found. */
  #generation = 0;

  constructor(store: Pick<Store, 'publish' | 'subscribe'>, options: ClientCacheOptions) {
    this.#store = store;
    this.#maxAgeMs = options.maxAgeMs;
    this.#clients = new LeastRecentlyUsed(options.maxClients ?? 10_000);
    this.#unknownIds = new LeastRecentlyUsed(options.maxUnknownIds ?? 1_000);
    this.#onAnnounceFailure = options.onAnnounceFailure;
    if (this.#maxAgeMs > 0) {
      this.#subscription = store.subscribe(CLIENT_CHANGES_CHANNEL, {
        message: (clientId) => this.#forget(clientId),
        // Announcements may have been missed while not listening, and none can be trusted to come then.
        listeningChanged: () => this.#forgetAll(),
      });
    }
  }

  /** Whether reads are answered from memory now: on, and listening for announced changes. */
  get active(): boolean {
    return this.#subscription?.listening ?? false;
  }

  /** The client from memory if known and fresh, else from `load` (remembered if nothing changed meanwhile). */
  async read(clientId: string, load: () => Promise<ClientMetadata | undefined>): Promise<ClientMetadata | undefined> {
    if (!this.active) return load();
    const nowMs = Date.now();
    const entry = this.#clients.get(clientId) ?? this.#unknownIds.get(clientId);
    if (entry && entry.expiresAtMs > nowMs) return entry.json === undefined ? undefined : JSON.parse(entry.json) as ClientMetadata;
    if (entry) {
      this.#clients.delete(clientId);
      this.#unknownIds.delete(clientId);
    }
    const generation = this.#generation;
    const metadata = await load();
    if (generation === this.#generation && this.active) {
      const fresh: Entry = { json: metadata && JSON.stringify(metadata), expiresAtMs: nowMs + this.#maxAgeMs };
      if (metadata) this.#clients.set(clientId, fresh);
      else this.#unknownIds.set(clientId, fresh);
    }
    return metadata;
  }

  /**
   * The origins of every single-page app's redirect URIs, from memory if fresh, else from `load`
   * (remembered if no client changed meanwhile). Any client's change forgets them.
   */
  async readSinglePageAppOrigins(load: () => Promise<ReadonlySet<string>>): Promise<ReadonlySet<string>> {
    if (!this.active) return load();
    const nowMs = Date.now();
    if (this.#singlePageAppOrigins && this.#singlePageAppOrigins.expiresAtMs > nowMs) return this.#singlePageAppOrigins.origins;
    this.#singlePageAppOrigins = undefined;
    const generation = this.#generation;
    const origins = await load();
    if (generation === this.#generation && this.active) this.#singlePageAppOrigins = { origins, expiresAtMs: nowMs + this.#maxAgeMs };
    return origins;
  }

  /**
   * A client was created, changed or deleted (and the change committed): forgotten here at once, and
   * announced to every instance sharing the store. Never throws: the change is made; if it cannot be
   * announced, the others see it when their entries expire.
   */
  async changed(clientId: string): Promise<void> {
    this.#forget(clientId);
    try {
      await this.#store.publish(CLIENT_CHANGES_CHANNEL, clientId);
    } catch (error) {
      this.#onAnnounceFailure?.(error, clientId);
    }
  }

  async close(): Promise<void> {
    await this.#subscription?.close();
    this.#forgetAll();
  }

  #forget(clientId: string): void {
    this.#generation++;
    this.#clients.delete(clientId);
    this.#unknownIds.delete(clientId);
    this.#singlePageAppOrigins = undefined;
  }

  #forgetAll(): void {
    this.#generation++;
    this.#clients.clear();
    this.#unknownIds.clear();
    this.#singlePageAppOrigins = undefined;
  }
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
