// Types of the two engine modules the baseline server uses to give its default in-memory adapter more room.
declare module 'oidc-provider/lib/helpers/lru.js' {
  /** The engine's bounded map: about maxSize records, the oldest dropped first. */
  export default class LRU {
    constructor(options: { maxSize: number });
  }
}
declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  import type { Adapter } from 'oidc-provider';
  import type LRU from 'oidc-provider/lib/helpers/lru.js';
  /** The engine's default adapter; each provider gets one over an LRU of its own holding about 1000 records. */
  const MemoryAdapter: new (model: string, store: LRU) => Adapter;
  export default MemoryAdapter;
}
