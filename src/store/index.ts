// Picks the Store implementation from configuration: Redis when it is configured, in-process otherwise.

import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { Store } from './store.ts';
import type { CallObserver } from '../dependency-calls.ts';
import type { RedisConnection } from './redis-connection.ts';

export type { Store, StoredRecord } from './store.ts';
export { MemoryStore, type MemoryStoreOptions } from './memory.ts';
export { RedisStore, type RedisStoreOptions } from './redis.ts';
export type { RedisConnection } from './redis-connection.ts';

export interface CreateStoreOptions {
  /** When absent the store lives in this process only: fine for one instance, lost on restart. */
  redis?: RedisConnection | undefined;
  prefix: string;
  /** Background Redis connection errors; ignored by the in-process store. */
  onError?: (error: Error) => void;
  /** Each Redis operation's time and outcome (for metrics); the in-process store has nothing to measure. */
  observe?: CallObserver | undefined;
}

export function createStore(options: CreateStoreOptions): Store {
  if (options.redis) {
    return new RedisStore({
      connection: options.redis,
      prefix: options.prefix,
      onError: options.onError,
      observe: options.observe,
    });
  }
  return new MemoryStore({ prefix: options.prefix });
}
