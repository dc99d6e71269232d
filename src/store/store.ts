// The key/value port for short-lived protocol state: records with a TTL, an atomic "consume",
// indexes (sets of keys) that expire no earlier than what they point at, and messages to every
// instance sharing the store (publish/subscribe), for news such as "this client changed".

export interface StoredRecord {
  /** The JSON text given to put(). */
  value: string;
  /** Epoch seconds at which consume() first succeeded, if it has. */
  consumedAt?: number;
}

export interface Store {
  /** Writes a record, replacing any previous one (and its consumed mark), expiring after ttlSeconds. */
  put(key: string, value: string, ttlSeconds: number): Promise<void>;
  /**
   * Writes a record only if none lives at the key. Atomic across processes: of any number of concurrent calls
   * for one key exactly one returns true (a claim, e.g. "this request answers for that refresh token").
   */
  create(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  get(key: string): Promise<StoredRecord | undefined>;
  /**
   * Marks an existing record consumed. Atomic across processes: of any number of concurrent calls for
   * one key exactly one returns true. False when the record is missing or was already consumed.
   */
  consume(key: string, atEpochSeconds: number): Promise<boolean>;
  /**
   * Takes back the consumed mark that consume(key, atEpochSeconds) set, and no other: for a consume whose purpose
   * came to nothing (the request it was for failed). Nothing happens to a missing or replaced record.
   */
  unconsume(key: string, atEpochSeconds: number): Promise<void>;
  delete(keys: readonly string[]): Promise<void>;
  /** Adds a member to an index; the index lives at least ttlSeconds from now (never shortened). */
  addToIndex(indexKey: string, member: string, ttlSeconds: number): Promise<void>;
  indexMembers(indexKey: string): Promise<string[]>;
  /** Removes members (that point at records gone by now) from an index; an index left empty disappears. */
  removeFromIndex(indexKey: string, members: readonly string[]): Promise<void>;
  /**
   * Sends a message to every subscriber of the channel on this store's backend under the same prefix,
   * this instance included, if listening at that moment. A message may come twice (resent after a
   * reconnect), and on a Redis Cluster after one published later (each node relays it over the cluster
   * bus): receiving one must be harmless to repeat, and in any order.
   * Throws DependencyUnavailable when the backing service cannot be reached.
   */
  publish(channel: string, message: string): Promise<void>;
  /**
   * Listens on a channel until the subscription is closed (or the store is). Messages can be lost while
   * the subscription is not `listening` (not yet confirmed, or its connection is down): whoever relies on
   * them must not trust what they stand for meanwhile, and is told through `listeningChanged`.
   */
  subscribe(channel: string, handlers: SubscriptionHandlers): Subscription;
  /** Throws DependencyUnavailable when the backing service cannot be reached, or cannot take a write. */
  ping(): Promise<void>;
  /**
   * What keeps this store from being a store of record, each said with its remedy; empty when nothing does.
   * Grants, refresh tokens, "used" markers and revocation lists live here: one lost or evicted brings a dead token back.
   * Throws DependencyUnavailable when the backing service cannot be reached.
   */
  durabilityProblems(): Promise<string[]>;
  close(): Promise<void>;
}

export interface SubscriptionHandlers {
  /** Called for each message, in order; must not throw. */
  message(message: string): void;
  /** Called whenever `listening` changes; after it turns true again, messages sent in between are lost. */
  listeningChanged?(listening: boolean): void;
}

export interface Subscription {
  /** Whether messages published now will be delivered: the subscription is confirmed and its connection up. */
  readonly listening: boolean;
  close(): Promise<void>;
}
