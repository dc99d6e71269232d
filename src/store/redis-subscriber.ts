// The Redis side of the store's publish/subscribe: a dedicated connection (one in subscriber mode can
// do nothing else) that subscribes again after every reconnect and tells each subscription whether it
// is listening: subscribed as Redis confirmed, connection up, and answering a heartbeat.
import type { Subscription, SubscriptionHandlers } from './store.ts';
import { closeRedis, openFailFastRedis, type RedisClient, type RedisConnection } from './redis-connection.ts';

export interface RedisSubscriberOptions {
  connection: RedisConnection;
  commandTimeoutMs: number;
  /** How often the connection is checked; a hung Redis keeps it open, but answers nothing. Default 5000 ms. */
  heartbeatIntervalMs?: number | undefined;
  onError?: ((error: Error) => void) | undefined;
}

const DEFAULT_HEARTBEAT_INTERVAL_MS = 5000;

export class RedisSubscriber {
  readonly #options: RedisSubscriberOptions;
  /** Subscriptions by full channel name (prefix included). */
  readonly #channels = new Map<string, Set<RedisSubscription>>();
  /** Channels Redis confirmed on the current connection. */
  readonly #confirmed = new Set<string>();
  /** Counts connections, so that a confirmation meant for a connection already lost is ignored. */
  #connection = 0;
  #client: RedisClient | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RedisSubscriberOptions) {
    this.#options = options;
  }

  subscribe(channel: string, handlers: SubscriptionHandlers): Subscription {
    if (this.#closed) throw new Error('the store is closed');
    const subscription = new RedisSubscription(handlers, () => this.#confirmed.has(channel), () => this.#unsubscribe(channel, subscription));
    const subscribers = this.#channels.get(channel) ?? new Set<RedisSubscription>();
    this.#channels.set(channel, subscribers);
    subscribers.add(subscription);
    const client = this.#open();
    if (client.status === 'ready' && subscribers.size === 1) this.#subscribeOnRedis(client, [channel]);
    return subscription;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const subscribers of this.#channels.values()) for (const subscription of subscribers) subscription.end();
    this.#channels.clear();
    this.#confirmed.clear();
    if (this.#client) await closeRedis(this.#client);
  }

  #open(): RedisClient {
    if (this.#client) return this.#client;
    // No command here is ever resent: subscribing again is done on 'ready', where it can be confirmed.
    const client = openFailFastRedis(this.#options.connection, {
      commandTimeoutMs: this.#options.commandTimeoutMs, onError: this.#options.onError, resendAfterReconnect: false,
    });
    client.on('ready', () => this.#subscribeOnRedis(client, [...this.#channels.keys()]));
    client.on('close', () => this.#lost(client));
    client.on('end', () => this.#lost(client));
    client.on('message', (channel: string, message: string) => {
      // Delivered even before its channel's confirmation is processed: a message is news either way.
      for (const subscription of [...this.#channels.get(channel) ?? []]) subscription.deliver(message);
    });
    this.#heartbeat = setInterval(() => this.#checkConnection(client), this.#options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS);
    this.#heartbeat.unref();
    this.#client = client;
    return client;
  }

  #subscribeOnRedis(client: RedisClient, channels: string[]): void {
    if (!channels.length) return;
    const connection = this.#connection;
    client.subscribe(...channels).then(() => {
      if (connection !== this.#connection || this.#closed) return;
      for (const channel of channels) {
        // Unsubscribed meanwhile: nobody listens any more.
        if (!this.#channels.has(channel) || this.#confirmed.has(channel)) continue;
        this.#confirmed.add(channel);
        for (const subscription of this.#channels.get(channel)!) subscription.changed();
      }
    }, () => {
      // Not confirmed (timed out, or the connection broke): start over on a new connection.
      if (connection === this.#connection && !this.#closed) this.#reconnect(client);
    });
  }

  #unsubscribe(channel: string, subscription: RedisSubscription): void {
    const subscribers = this.#channels.get(channel);
    if (!subscribers?.delete(subscription) || subscribers.size) return;
    this.#channels.delete(channel);
    this.#confirmed.delete(channel);
    if (this.#client?.status === 'ready') this.#client.unsubscribe(channel).catch(() => this.#reconnect(this.#client!));
  }

  /** The connection is gone or cannot be trusted: every subscription stops listening until resubscribed. */
  #lost(client: RedisClient): void {
    if (client !== this.#client) return;
    this.#connection++;
    if (!this.#confirmed.size) return;
    const lost = [...this.#confirmed];
    this.#confirmed.clear();
    for (const channel of lost) for (const subscription of this.#channels.get(channel) ?? []) subscription.changed();
  }

  #reconnect(client: RedisClient): void {
    this.#lost(client);
    // ioredis reconnects with its retry strategy, and 'ready' subscribes again.
    if (!this.#closed) client.disconnect(true);
  }

  #checkConnection(client: RedisClient): void {
    if (this.#closed || client.status !== 'ready' || !this.#confirmed.size) return;
    const connection = this.#connection;
    // PING is allowed in subscriber mode; without an answer within the command timeout, Redis is hung
    // (or the path to it broken) and messages may not be coming.
    client.ping().catch(() => {
      if (connection === this.#connection && !this.#closed) this.#reconnect(client);
    });
  }
}

class RedisSubscription implements Subscription {
  readonly #handlers: SubscriptionHandlers;
  readonly #confirmed: () => boolean;
  readonly #remove: () => void;
  #open = true;
  /** What the handlers were last told, so each change is told once. */
  #told = false;

  constructor(handlers: SubscriptionHandlers, confirmed: () => boolean, remove: () => void) {
    this.#handlers = handlers;
    this.#confirmed = confirmed;
    this.#remove = remove;
    this.#told = confirmed();
  }

  get listening(): boolean {
    return this.#open && this.#confirmed();
  }

  deliver(message: string): void {
    if (this.#open) this.#handlers.message(message);
  }

  /** Tells the handlers when listening changed. */
  changed(): void {
    const listening = this.listening;
    if (listening === this.#told) return;
    this.#told = listening;
    this.#handlers.listeningChanged?.(listening);
  }

  /** The store is closing. */
  end(): void {
    this.#open = false;
    this.changed();
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    this.#remove();
    this.changed();
  }
}
