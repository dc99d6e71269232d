// The key/value port for short-lived protocol state: records with a TTL, an atomic "consume",
// and indexes (sets of keys) that expire no earlier than what they point at.

export interface StoredRecord {
  /** The JSON text given to put(). */
  value: string;
  /** Epoch seconds at which consume() first succeeded, if it has. */
  consumedAt?: number;
}

export interface Store {
  /** Writes a record, replacing any previous one (and its consumed mark), expiring after ttlSeconds. */
  put(key: string, value: string, ttlSeconds: number): Promise<void>;
  get(key: string): Promise<StoredRecord | undefined>;
  /**
   * Marks an existing record consumed. Atomic across processes: of any number of concurrent calls for
   * one key exactly one returns true. False when the record is missing or was already consumed.
   */
  consume(key: string, atEpochSeconds: number): Promise<boolean>;
  delete(keys: readonly string[]): Promise<void>;
  /** Adds a member to an index; the index lives at least ttlSeconds from now (never shortened). */
  addToIndex(indexKey: string, member: string, ttlSeconds: number): Promise<void>;
  indexMembers(indexKey: string): Promise<string[]>;
  /** Removes members (that point at records gone by now) from an index; an index left empty disappears. */
  removeFromIndex(indexKey: string, members: readonly string[]): Promise<void>;
  /** Throws DependencyUnavailable when the backing service cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
