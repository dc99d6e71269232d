// The Store contract, run unchanged against MemoryStore and (when REDIS_URL is set) RedisStore, so the
// embedded default and production cannot drift apart; plus Redis-only outage and key-layout tests.

import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import test from 'ava';
import { Redis } from 'ioredis';
import { DependencyUnavailable } from '../src/errors.ts';
import { createStore, MemoryStore, RedisStore } from '../src/store/index.ts';
import { listen, newPrefix, pastOneSecondTtl, registerContract, runPrefix } from './helpers/store-contract.ts';
import { until } from './helpers/wait.ts';
import {
  deleteKeysWithPrefix,
  eventually,
  findFreePort,
  keysWithPrefix,
  ThrowawayRedisServer,
} from './helpers/redis.ts';

registerContract({
  name: 'memory',
  open: (prefix) => new MemoryStore({ prefix }),
  openRacers: (_prefix, store, count) => Array.from({ length: count }, () => store),
});

test('[memory] expired keys are freed by the sweep without being read', async (t) => {
  const store = new MemoryStore({ prefix: newPrefix(), sweepIntervalMs: 50 });
  t.teardown(() => store.close());
  await store.put('Record:1', '"payload"', 1);
  await store.addToIndex('Index:1', 'Record:1', 1);
  await store.put('Record:kept', '"kept"', 100);
  t.is(store.storedKeyCount, 3);
  await pastOneSecondTtl();
  t.is(store.storedKeyCount, 1);
});

test('createStore picks memory without a Redis URL', async (t) => {
  const store = createStore({ prefix: newPrefix() });
  t.teardown(() => store.close());
  t.true(store instanceof MemoryStore);
});

const sharedRedisUrl = process.env['REDIS_URL'];

if (sharedRedisUrl === undefined || sharedRedisUrl === '') {
  test.skip('[redis] contract and outage tests (set REDIS_URL to run them)', (t) => {
    t.fail('skipped tests never run');
  });
} else {
  registerRedisTests(sharedRedisUrl);
}

function registerRedisTests(redisUrl: string): void {
  const openRedisStore = (prefix: string): RedisStore => new RedisStore({ connection: { url: redisUrl }, prefix });

  registerContract({
    name: 'redis',
    open: openRedisStore,
    openRacers: (prefix, _store, count) => Array.from({ length: count }, () => openRedisStore(prefix)),
  });

  test.after.always('remove the keys this run wrote', async () => {
    await deleteKeysWithPrefix(redisUrl, runPrefix);
  });

  test('[redis] createStore picks Redis for a URL', async (t) => {
    const store = createStore({ redis: { url: redisUrl }, prefix: newPrefix() });
    t.teardown(() => store.close());
    t.true(store instanceof RedisStore);
    await store.put('Record:1', '"payload"', 60);
    t.deepEqual(await store.get('Record:1'), { value: '"payload"' });
  });

  test('[redis] every key, also the consume script’s, lands under the prefix with a TTL', async (t) => {
    const prefix = newPrefix();
    const store = openRedisStore(prefix);
    t.teardown(() => store.close());
    const rawClient = new Redis(redisUrl);
    t.teardown(() => rawClient.quit());
    await store.put('Record:1', '"payload"', 60);
    t.true(await store.consume('Record:1', 1_700_000_000));
    t.false(await store.consume('Record:missing', 1_700_000_000));
    await store.addToIndex('Index:1', 'Record:1', 60);
    t.deepEqual((await keysWithPrefix(rawClient, prefix)).sort(), [`${prefix}Index:1`, `${prefix}Record:1`]);
    t.is(await rawClient.exists('Record:1', 'Index:1'), 0, 'nothing is written without the prefix');
    t.deepEqual(await rawClient.hgetall(`${prefix}Record:1`), { value: '"payload"', consumedAt: '1700000000' });
    t.true((await rawClient.ttl(`${prefix}Record:1`)) > 0);
    t.true((await rawClient.ttl(`${prefix}Index:1`)) > 0);
  });

  test('[redis] errors do not carry the keys or values of the failed command', async (t) => {
    const store = openRedisStore(newPrefix());
    t.teardown(() => store.close());
    const secretKey = `Index:${randomUUID()}`;
    const secretEpochSeconds = 1_234_567_891;
    await store.addToIndex(secretKey, 'member', 60);
    const failures = [
      await t.throwsAsync(store.get(secretKey), { message: /WRONGTYPE/ }),
      await t.throwsAsync(store.consume(secretKey, secretEpochSeconds), { message: /WRONGTYPE/ }),
    ];
    for (const failure of failures) {
      const everythingLoggable = inspect(failure, { depth: 10, showHidden: true });
      t.false(everythingLoggable.includes(secretKey));
      t.false(everythingLoggable.includes(String(secretEpochSeconds)));
    }
  });

  test('[redis] a store whose Redis cannot be reached fails fast and reports why', async (t) => {
    const nobodyListening = `redis://127.0.0.1:${await findFreePort()}`;
    const backgroundErrors: Error[] = [];
    const store = new RedisStore({
      connection: { url: nobodyListening },
      prefix: newPrefix(),
      onError: (error) => backgroundErrors.push(error),
    });
    t.teardown(() => store.close());
    await t.throwsAsync(store.ping(), { instanceOf: DependencyUnavailable });
    await t.throwsAsync(store.get('Record:1'), { instanceOf: DependencyUnavailable });
    // Unhandled, these 'error' events would crash the process; the hook is where they can be seen.
    await eventually(async () => {
      if (backgroundErrors.length === 0) throw new Error('no connection error reported yet');
    }, 5000);
    t.regex(backgroundErrors[0]?.message ?? '', /ECONNREFUSED/);
  });

  const outageServers: ThrowawayRedisServer[] = [];
  test.after.always('stop the throwaway redis-servers', async () => {
    await Promise.all(outageServers.map((server) => server.stop()));
  });

  async function startThrowawayServer(): Promise<ThrowawayRedisServer> {
    const server = await ThrowawayRedisServer.start();
    outageServers.push(server);
    return server;
  }

  test('[redis] while Redis is down operations fail with DependencyUnavailable, and recover by themselves', async (t) => {
    t.timeout(30_000);
    const server = await startThrowawayServer();
    // A command timeout longer than this test's own timeout: only noticing the lost connection can fail
    // the in-flight command below. Each failed attempt to reconnect is reported as an error.
    let connectionErrors = 0;
    const store = new RedisStore({ connection: { url: server.url }, prefix: newPrefix(), commandTimeoutMs: 60_000, onError: () => { connectionErrors += 1; } });
    t.teardown(() => store.close());
    await store.put('Record:1', '"before"', 60);

    server.freeze();
    const inFlightWhenRedisDied = store.get('Record:1');
    await server.kill();
    await t.throwsAsync(inFlightWhenRedisDied, { instanceOf: DependencyUnavailable });
    await t.throwsAsync(store.get('Record:1'), { instanceOf: DependencyUnavailable });
    await t.throwsAsync(store.put('Record:1', '"during"', 60), { instanceOf: DependencyUnavailable });
    await t.throwsAsync(store.consume('Record:1', 1), { instanceOf: DependencyUnavailable });
    const pingError = await t.throwsAsync(store.ping(), { instanceOf: DependencyUnavailable });
    t.is(pingError?.dependency, 'store');
    t.true(pingError?.cause instanceof Error, 'the connection error is kept as the cause');

    // Several reconnect attempts fail first, so recovery is not just the first retry.
    const failedSoFar = connectionErrors;
    await until(() => connectionErrors >= failedSoFar + 3, 'three more attempts to reconnect to fail', 10_000);
    await t.throwsAsync(store.get('Record:1'), { instanceOf: DependencyUnavailable });

    await server.start();
    await eventually(() => store.ping(), 10_000);
    await store.put('Record:1', '"after"', 60);
    t.deepEqual(await store.get('Record:1'), { value: '"after"' });
  });

  test('[redis] a subscription stops listening while Redis is down, and listens again by itself when it is back', async (t) => {
    t.timeout(30_000);
    const server = await startThrowawayServer();
    const prefix = newPrefix();
    const store = new RedisStore({ connection: { url: server.url }, prefix });
    t.teardown(() => store.close());
    const heard = listen(t, store, 'News');
    await until(() => heard.subscription.listening, 'listening');
    t.deepEqual(heard.changes, [true]);

    await server.kill();
    await until(() => !heard.subscription.listening, 'no longer listening');
    t.deepEqual(heard.changes, [true, false]);
    await t.throwsAsync(store.publish('News', 'during'), { instanceOf: DependencyUnavailable });

    await server.start();
    await until(() => heard.subscription.listening, 'listening again');
    t.deepEqual(heard.changes, [true, false, true]);
    // Subscribed again on the new connection: a message from another connection arrives.
    const publisher = new RedisStore({ connection: { url: server.url }, prefix });
    t.teardown(() => publisher.close());
    await eventually(() => publisher.ping(), 10_000);
    await publisher.publish('News', 'after');
    await until(() => heard.messages.length === 1, 'the message after the outage');
    t.deepEqual(heard.messages, ['after']);
  });

  test('[redis] a hung Redis makes a subscription stop listening (its heartbeat goes unanswered), until it answers again', async (t) => {
    t.timeout(30_000);
    const server = await startThrowawayServer();
    const prefix = newPrefix();
    const store = new RedisStore({ connection: { url: server.url }, prefix, commandTimeoutMs: 300, subscriberHeartbeatIntervalMs: 100 });
    t.teardown(() => store.close());
    const heard = listen(t, store, 'News');
    await until(() => heard.subscription.listening, 'listening');
    server.freeze();
    try {
      await until(() => !heard.subscription.listening, 'no longer listening');
    } finally {
      server.thaw();
    }
    await until(() => heard.subscription.listening, 'listening again');
    await store.publish('News', 'after');
    await until(() => heard.messages.length === 1, 'the message after the thaw');
    t.deepEqual(heard.messages, ['after']);
  });

  test('[redis] a hung Redis makes operations fail with DependencyUnavailable, not hang', async (t) => {
    t.timeout(30_000);
    const server = await startThrowawayServer();
    const store = new RedisStore({ connection: { url: server.url }, prefix: newPrefix(), commandTimeoutMs: 300 });
    t.teardown(() => store.close());
    await store.put('Record:1', '"payload"', 60);

    server.freeze();
    try {
      await t.throwsAsync(store.get('Record:1'), { instanceOf: DependencyUnavailable });
      await t.throwsAsync(store.consume('Record:1', 1), { instanceOf: DependencyUnavailable });
    } finally {
      server.thaw();
    }
    await eventually(() => store.ping(), 10_000);
    t.deepEqual(await store.get('Record:1'), { value: '"payload"', consumedAt: 1 }, 'the timed-out consume still ran once Redis woke up');
  });
}
