// Recently read clients kept in memory: the engine looks a client up on nearly every protocol request, and each
// lookup was a database query. An announced cache (src/store/announced-cache.ts): a change is forgotten at once
// here and on every instance sharing the store. What is drawn from all clients at once (the origins single-page
// apps call from) is kept the same way, and forgotten at any client's change.
import { AnnouncedCache } from '../store/announced-cache.ts';
import type { Store } from '../store/store.ts';
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

export class ClientCache extends AnnouncedCache<ClientMetadata> {
  constructor(store: Pick<Store, 'publish' | 'subscribe'>, options: ClientCacheOptions) {
    super(store, {
      channel: CLIENT_CHANGES_CHANNEL, maxAgeMs: options.maxAgeMs, maxEntries: options.maxClients ?? 10_000,
      maxUnknownKeys: options.maxUnknownIds ?? 1_000, onAnnounceFailure: options.onAnnounceFailure,
    });
  }

  /** The origins of every single-page app's redirect URIs, from memory if fresh, else from `load`. */
  readSinglePageAppOrigins(load: () => Promise<ReadonlySet<string>>): Promise<ReadonlySet<string>> {
    return this.readDrawnFromAll(load);
  }
}
