// The Store on Redis (ioredis): records are hashes {value, consumedAt?} with EXPIRE, indexes are sets,
// messages go through Redis channels named with the prefix. It fails fast with DependencyUnavailable
// while Redis is unreachable and reconnects by itself.

import { Cluster, type Redis } from 'ioredis';
import { DependencyUnavailable, LoginRefused } from '../errors.ts';
import { timed, type CallObserver } from '../dependency-calls.ts';
import type { Store, StoredRecord, Subscription, SubscriptionHandlers } from './store.ts';
import { wholeSecondsTtl } from './ttl.ts';
import { RedisSubscriber } from './redis-subscriber.ts';
import {
  DEFAULT_COMMAND_TIMEOUT_MS, closeRedis, connectionFailureOf, isConnectionFailure, isLoginRefusal, openFailFastRedis, waitForConnectionAttempt,
  withoutCommandArguments, type RedisClient, type RedisConnection,
} from './redis-connection.ts';

export interface RedisStoreOptions {
  /** Where Redis is (one server, Sentinels or a cluster); credentials in it never appear in errors raised here. */
  connection: RedisConnection;
  /** Prepended to every key (records and indexes, also inside the consume script). */
  prefix: string;
  /** Told about connection errors the client reports in the background (they are otherwise dropped). */
  onError?: (error: Error) => void;
  /** A command without a reply after this long fails as DependencyUnavailable. Default 2000 ms. */
  commandTimeoutMs?: number;
  /** How often the subscriber connection (opened by the first subscribe) checks that Redis answers. Default 5000 ms. */
  subscriberHeartbeatIntervalMs?: number;
  /** Told how long each operation took and how it ended (for metrics). */
  observe?: CallObserver | undefined;
}


/*
 * HSETNX alone would create a TTL-less hash for a missing (expired) record, and a separate EXISTS
 * would race with other processes, so both run in one script. A hash field write keeps the key's TTL.
 * Returns -1 when the record is missing, 0 when it was already consumed, 1 for the one winner.
 */
const consumeScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
return redis.call('HSETNX', KEYS[1], 'consumedAt', ARGV[1])
`;

type ConsumeOutcome = -1 | 0 | 1;

/** The consumed mark goes only if it is the one given: in one script, so that no consume can come in between. */
const unconsumeScript = `
if redis.call('HGET', KEYS[1], 'consumedAt') == ARGV[1] then
  return redis.call('HDEL', KEYS[1], 'consumedAt')
end
return 0
`;

/**
 * DEL first so that a replaced record loses its consumed mark along with its old value; one command, not five.
 * The shebang makes Redis refuse the whole script while memory is full (OOM), as it refuses a plain write:
 * without flags, a script that has begun writes past maxmemory.
 */
const putScript = `#!lua
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'value', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
`;

/** HSETNX, and the TTL only on the record it created (EXPIRE alone could lengthen another's). Returns 1 when created. */
const createScript = `
if redis.call('HSETNX', KEYS[1], 'value', ARGV[1]) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
`;

/** SADD, then NX gives a new set its TTL and GT only ever lengthens an existing one (GT ignores TTL-less keys). */
const addToIndexScript = `
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
redis.call('EXPIRE', KEYS[1], ARGV[2], 'GT')
`;

/** The client with the script registered by defineCommand (ioredis adds the method at run time). */
type RedisWithConsume = RedisClient & {
  consumeRecord(key: string, atEpochSeconds: number): Promise<ConsumeOutcome>;
  unconsumeRecord(key: string, atEpochSeconds: number): Promise<0 | 1>;
  createRecord(key: string, value: string, ttlSeconds: number): Promise<0 | 1>;
  putRecord(key: string, value: string, ttlSeconds: number): Promise<null>;
  addToIndex(key: string, member: string, ttlSeconds: number): Promise<null>;
};

export class RedisStore implements Store {
  readonly #client: RedisWithConsume;
  readonly #commandTimeoutMs: number;
  /** ioredis prefixes keys but not channel names: publish and subscribe add it themselves. */
  readonly #prefix: string;
  readonly #subscriber: RedisSubscriber;
  readonly #observe: CallObserver | undefined;

  constructor(options: RedisStoreOptions) {
    this.#observe = options.observe;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    this.#prefix = options.prefix;
    // Connects only when something subscribes.
    this.#subscriber = new RedisSubscriber({
      connection: options.connection, commandTimeoutMs: this.#commandTimeoutMs, heartbeatIntervalMs: options.subscriberHeartbeatIntervalMs, onError: options.onError,
    });
    // Every command used here is idempotent (DEL/HSET/EXPIRE, HSETNX, SADD), or harmless twice (PUBLISH): resending one is safe.
    const client = openFailFastRedis(options.connection, {
      keyPrefix: options.prefix, commandTimeoutMs: this.#commandTimeoutMs, onError: options.onError, resendAfterReconnect: true, batchWrites: true,
    });
    client.defineCommand('consumeRecord', { numberOfKeys: 1, lua: consumeScript });
    client.defineCommand('unconsumeRecord', { numberOfKeys: 1, lua: unconsumeScript });
    client.defineCommand('createRecord', { numberOfKeys: 1, lua: createScript });
    client.defineCommand('putRecord', { numberOfKeys: 1, lua: putScript });
    client.defineCommand('addToIndex', { numberOfKeys: 1, lua: addToIndexScript });
    this.#client = client as RedisWithConsume;
  }

  async put(key: string, value: string, ttlSeconds: number): Promise<void> {
    await this.#run(() => this.#client.putRecord(key, value, wholeSecondsTtl(ttlSeconds)));
  }

  get(key: string): Promise<StoredRecord | undefined> {
    return this.#run(async () => {
      const fields = await this.#client.hgetall(key);
      const value = fields['value'];
      if (value === undefined) return undefined;
      const consumedAt = fields['consumedAt'];
      return consumedAt === undefined ? { value } : { value, consumedAt: Number(consumedAt) };
    });
  }

  create(key: string, value: string, ttlSeconds: number): Promise<boolean> {
    return this.#run(async () => (await this.#client.createRecord(key, value, wholeSecondsTtl(ttlSeconds))) === 1);
  }

  consume(key: string, atEpochSeconds: number): Promise<boolean> {
    return this.#run(async () => (await this.#client.consumeRecord(key, atEpochSeconds)) === 1);
  }

  async unconsume(key: string, atEpochSeconds: number): Promise<void> {
    await this.#run(() => this.#client.unconsumeRecord(key, atEpochSeconds));
  }

  async delete(keys: readonly string[]): Promise<void> {
    // One DEL per key: in a Redis Cluster the keys may live on different nodes (one DEL of several would
    // fail with CROSSSLOT); sent together they still cost one round trip.
    await this.#run(async () => {
      await Promise.all(keys.map((key) => this.#client.del(key)));
    });
  }

  async addToIndex(indexKey: string, member: string, ttlSeconds: number): Promise<void> {
    await this.#run(() => this.#client.addToIndex(indexKey, member, wholeSecondsTtl(ttlSeconds)));
  }

  indexMembers(indexKey: string): Promise<string[]> {
    return this.#run(() => this.#client.smembers(indexKey));
  }

  async removeFromIndex(indexKey: string, members: readonly string[]): Promise<void> {
    if (!members.length) return;
    // Redis deletes a set whose last member goes.
    await this.#run(() => this.#client.srem(indexKey, ...members));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run(() => this.#client.publish(this.#prefix + channel, message));
  }

  subscribe(channel: string, handlers: SubscriptionHandlers): Subscription {
    return this.#subscriber.subscribe(this.#prefix + channel, handlers);
  }

  ping(): Promise<void> {
    return this.#run(async () => {
      // A write, not PING: a Redis that is full (noeviction) or cannot persist answers PING and refuses writes.
      await this.#client.set(`${this.#prefix}ready-probe`, '1', 'PX', 5000);
    });
  }

  async durabilityProblems(): Promise<string[]> {
    const problems = await this.#run(() => {
      // Every node of a cluster holds records (a replica becomes a master when its master fails); known once connected.
      const servers = this.#client instanceof Cluster ? this.#client.nodes('all') : [this.#client];
      return Promise.all(servers.map((server) => serverDurabilityProblems(server, servers.length > 1)));
    });
    return problems.flat();
  }

  async close(): Promise<void> {
    await Promise.all([this.#subscriber.close(), closeRedis(this.#client)]);
  }

  /** Runs one operation, turning connection-level failures into DependencyUnavailable. */
  #run<Result>(operation: () => Promise<Result>): Promise<Result> {
    return timed(this.#observe, (error) => error instanceof DependencyUnavailable, async () => {
      try {
        await waitForConnectionAttempt(this.#client, this.#commandTimeoutMs);
        return await operation();
      } catch (error) {
        throw toStoreError(error, this.#client);
      }
    });
  }
}

/** What would make one server forget or evict records; `named`: say which server (one of a cluster's). */
async function serverDurabilityProblems(server: Redis, named: boolean): Promise<string[]> {
  // INFO rather than CONFIG GET: hosted Redis services often refuse CONFIG to their users.
  const [persistence, memory] = await Promise.all([server.info('persistence'), server.info('memory')]);
  const where = named ? ` (${server.options.host}:${server.options.port})` : '';
  const problems: string[] = [];
  if (infoField(persistence, 'aof_enabled') !== '1') {
    problems.push(`Redis${where} does not keep an append-only file, so a restart loses the writes since its last snapshot: set appendonly yes`);
  }
  const policy = infoField(memory, 'maxmemory_policy');
  if (policy !== 'noeviction') {
    problems.push(`Redis${where} evicts keys when its memory is full (maxmemory-policy ${policy ?? 'unknown'}): set maxmemory-policy noeviction`);
  }
  return problems;
}

/** A field of an INFO reply ("name:value" lines). */
function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*?)\\r?$`, 'm').exec(info)?.[1];
}

function toStoreError(error: unknown, client: RedisClient): Error {
  if (!(error instanceof Error)) return new Error(`Redis store failed: ${String(error)}`);
  const sanitized = withoutCommandArguments(error);
  if (!isConnectionFailure(sanitized)) return sanitized;
  // Said as the connection's own failure when it has one: the command's error only says it could not be sent.
  const cause = connectionFailureOf(client) ?? sanitized;
  return isLoginRefusal(cause) ? new LoginRefused('store', { cause }) : new DependencyUnavailable('store', { cause });
}
