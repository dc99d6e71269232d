// The Store contract: what every Store must do, registered as ava tests against one harness (the in-process
// store, Redis, Redis through Sentinels, a Redis Cluster), so the backends cannot drift apart.

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import type { Store } from '../../src/store/index.ts';
import type { Subscription } from '../../src/store/store.ts';
import { until } from './wait.ts';

export interface StoreHarness {
  name: string;
  /** A new store (for Redis: a new connection) on the shared backend. */
  open(prefix: string): Store;
  /**
   * Stores that see the same data as `store` but race like separate processes would: for Redis
   * separate connections, for memory the store itself (one process has only one).
   */
  openRacers(prefix: string, store: Store, count: number): Store[];
  /**
   * Whether two messages published one after the other arrive in that order. Not on a Redis Cluster: a publish goes
   * to any node, which relays it over the cluster bus, so two can overtake each other (the port promises no order).
   */
  unordered?: boolean;
}

// Every key this run writes to a shared Redis starts with this, so cleanup cannot touch anyone else's.
export const runPrefix = `gatehouse-test:${randomUUID()}:`;
export const newPrefix = (): string => `${runPrefix}${randomUUID()}:`;

/** Opens a store that is closed when the test ends, pass or fail. */
function openStore(t: ExecutionContext, harness: StoreHarness, prefix: string): Store {
  const store = harness.open(prefix);
  t.teardown(() => store.close());
  return store;
}

/** A subscription that records what it is told, and closes when the test ends. */
export function listen(t: ExecutionContext, store: Store, channel: string): { subscription: Subscription; messages: string[]; changes: boolean[] } {
  const messages: string[] = [];
  const changes: boolean[] = [];
  const subscription = store.subscribe(channel, { message: (message) => messages.push(message), listeningChanged: (listening) => changes.push(listening) });
  t.teardown(() => subscription.close());
  return { subscription, messages, changes };
}

// Waiting past a 1 s TTL is the only way to watch Redis expire a key (nor does the in-process store take a
// clock: it reads Date.now(), as Redis reads its own); these waits overlap because ava runs a file's tests
// concurrently.
export const pastOneSecondTtl = (): Promise<void> => sleep(1200);

export function registerContract(harness: StoreHarness): void {
  const title = (text: string): string => `[${harness.name}] ${text}`;

  test(title('put then get returns the value, with no consumed mark'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    const value = JSON.stringify({ kind: 'AuthorizationCode', nested: { list: [1, 2] }, text: 'é ✓' });
    await store.put('Record:1', value, 60);
    t.deepEqual(await store.get('Record:1'), { value });
  });

  test(title('get of a missing key is undefined'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    t.is(await store.get('Record:never-written'), undefined);
  });

  test(title('a record is gone after its TTL'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:short', '"short"', 1);
    await store.put('Record:long', '"long"', 100);
    t.deepEqual(await store.get('Record:short'), { value: '"short"' });
    await pastOneSecondTtl();
    t.is(await store.get('Record:short'), undefined);
    t.false(await store.consume('Record:short', 1), 'an expired record cannot be consumed');
    t.deepEqual(await store.get('Record:long'), { value: '"long"' });
  });

  test(title('put replaces the value and clears the consumed mark'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:1', '"first"', 60);
    t.true(await store.consume('Record:1', 1_700_000_000));
    await store.put('Record:1', '"second"', 60);
    t.deepEqual(await store.get('Record:1'), { value: '"second"' });
    t.true(await store.consume('Record:1', 1_700_000_100), 'a replaced record can be consumed again');
  });

  test(title('consume of a missing record is false and creates nothing'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    t.false(await store.consume('Record:missing', 1_700_000_000));
    t.is(await store.get('Record:missing'), undefined);
    t.false(await store.consume('Record:missing', 1_700_000_000));
  });

  test(title('consume succeeds once, records when, and keeps the value'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:1', '"payload"', 60);
    t.true(await store.consume('Record:1', 1_700_000_000));
    t.deepEqual(await store.get('Record:1'), { value: '"payload"', consumedAt: 1_700_000_000 });
    t.false(await store.consume('Record:1', 1_700_000_999));
    t.deepEqual(
      await store.get('Record:1'),
      { value: '"payload"', consumedAt: 1_700_000_000 },
      'a losing consume must not move the consumed time',
    );
  });

  test(title('unconsume takes back only the consumed mark it names, on the record it was set on'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:1', '"payload"', 60);
    t.true(await store.consume('Record:1', 1_700_000_000));
    await store.unconsume('Record:1', 1_700_000_001);
    t.deepEqual(await store.get('Record:1'), { value: '"payload"', consumedAt: 1_700_000_000 }, 'another time: not the mark it names');
    await store.unconsume('Record:1', 1_700_000_000);
    t.deepEqual(await store.get('Record:1'), { value: '"payload"' });
    t.true(await store.consume('Record:1', 1_700_000_002), 'consumable again');
    await store.unconsume('Record:missing', 1_700_000_000);
    t.is(await store.get('Record:missing'), undefined, 'a missing record is not made');
    await store.put('Record:1', '"replaced"', 60);
    await store.unconsume('Record:1', 1_700_000_002);
    t.deepEqual(await store.get('Record:1'), { value: '"replaced"' });
  });

  test(title('of 50 concurrent consumes exactly one wins'), async (t) => {
    const prefix = newPrefix();
    const store = openStore(t, harness, prefix);
    const racers = harness.openRacers(prefix, store, 5);
    t.teardown(() => Promise.all(racers.map((racer) => racer.close())));
    await store.put('RefreshToken:1', '"token"', 60);
    await Promise.all(racers.map((racer) => racer.ping()));
    const outcomes = await Promise.all(
      Array.from({ length: 50 }, (_, attempt) => racers[attempt % racers.length]!.consume('RefreshToken:1', 1_700_000_000 + attempt)),
    );
    t.is(outcomes.filter((won) => won).length, 1);
    const winner = outcomes.indexOf(true);
    t.deepEqual(await store.get('RefreshToken:1'), { value: '"token"', consumedAt: 1_700_000_000 + winner });
  });

  test(title('create writes a record only where none lives, and of 50 concurrent creates exactly one wins'), async (t) => {
    const prefix = newPrefix();
    const store = openStore(t, harness, prefix);
    t.true(await store.create('Claim:1', '"first"', 60));
    t.false(await store.create('Claim:1', '"second"', 60));
    t.deepEqual(await store.get('Claim:1'), { value: '"first"' });
    const racers = harness.openRacers(prefix, store, 5);
    t.teardown(() => Promise.all(racers.map((racer) => racer.close())));
    await Promise.all(racers.map((racer) => racer.ping()));
    const outcomes = await Promise.all(Array.from({ length: 50 }, (_, index) => racers[index % racers.length]!.create('Claim:2', `"${index}"`, 60)));
    t.is(outcomes.filter(Boolean).length, 1);
  });

  test(title('a created record expires after its TTL, and the key can then be created again'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    t.true(await store.create('Claim:short', '"short"', 1));
    await pastOneSecondTtl();
    t.is(await store.get('Claim:short'), undefined);
    t.true(await store.create('Claim:short', '"again"', 60));
  });

  test(title('consume keeps the record TTL'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:1', '"payload"', 1);
    t.true(await store.consume('Record:1', 1_700_000_000));
    await pastOneSecondTtl();
    t.is(await store.get('Record:1'), undefined);
  });

  test(title('delete removes several keys and ignores missing ones'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:a', '"a"', 60);
    await store.put('Record:b', '"b"', 60);
    await store.put('Record:c', '"c"', 60);
    await store.addToIndex('Index:1', 'Record:a', 60);
    await store.delete(['Record:a', 'Record:b', 'Record:missing', 'Index:1']);
    await store.delete([]);
    t.is(await store.get('Record:a'), undefined);
    t.is(await store.get('Record:b'), undefined);
    t.deepEqual(await store.indexMembers('Index:1'), []);
    t.deepEqual(await store.get('Record:c'), { value: '"c"' });
  });

  test(title('an index collects distinct members'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    t.deepEqual(await store.indexMembers('Index:empty'), []);
    await store.addToIndex('Index:grant', 'AccessToken:1', 60);
    await store.addToIndex('Index:grant', 'RefreshToken:1', 60);
    await store.addToIndex('Index:grant', 'AccessToken:1', 60);
    t.deepEqual((await store.indexMembers('Index:grant')).sort(), ['AccessToken:1', 'RefreshToken:1']);
  });

  test(title('members removed from an index are gone, and an index left empty disappears'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.addToIndex('Index:sessions', 'uid-1', 60);
    await store.addToIndex('Index:sessions', 'uid-2', 60);
    await store.addToIndex('Index:sessions', 'uid-3', 60);
    await store.removeFromIndex('Index:sessions', ['uid-1', 'uid-3', 'uid-missing']);
    await store.removeFromIndex('Index:sessions', []);
    await store.removeFromIndex('Index:never-made', ['uid-1']);
    t.deepEqual(await store.indexMembers('Index:sessions'), ['uid-2']);
    await store.removeFromIndex('Index:sessions', ['uid-2']);
    t.deepEqual(await store.indexMembers('Index:sessions'), []);
    await store.addToIndex('Index:sessions', 'uid-4', 60);
    t.deepEqual(await store.indexMembers('Index:sessions'), ['uid-4'], 'a new member starts a new index');
  });

  test(title('an index expires after its TTL'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.addToIndex('Index:short', 'Record:1', 1);
    t.deepEqual(await store.indexMembers('Index:short'), ['Record:1']);
    await pastOneSecondTtl();
    t.deepEqual(await store.indexMembers('Index:short'), []);
  });

  test(title('a shorter TTL never shortens an index'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.addToIndex('Index:grant', 'RefreshToken:1', 100);
    await store.addToIndex('Index:grant', 'AccessToken:1', 1);
    await pastOneSecondTtl();
    t.deepEqual((await store.indexMembers('Index:grant')).sort(), ['AccessToken:1', 'RefreshToken:1']);
  });

  test(title('a longer TTL extends an index'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.addToIndex('Index:grant', 'AccessToken:1', 1);
    await store.addToIndex('Index:grant', 'RefreshToken:1', 100);
    await pastOneSecondTtl();
    t.deepEqual((await store.indexMembers('Index:grant')).sort(), ['AccessToken:1', 'RefreshToken:1']);
  });

  test(title('stores with different prefixes do not see each other'), async (t) => {
    const first = openStore(t, harness, newPrefix());
    const second = openStore(t, harness, newPrefix());
    await first.put('Record:1', '"first"', 60);
    await second.put('Record:1', '"second"', 60);
    await first.addToIndex('Index:1', 'from-first', 60);
    t.true(await first.consume('Record:1', 1_700_000_000));
    t.deepEqual(await second.get('Record:1'), { value: '"second"' }, 'consume must not reach across prefixes');
    t.deepEqual(await second.indexMembers('Index:1'), []);
    await second.delete(['Record:1', 'Index:1']);
    t.deepEqual(await first.get('Record:1'), { value: '"first"', consumedAt: 1_700_000_000 });
    t.deepEqual(await first.indexMembers('Index:1'), ['from-first']);
  });

  test(title('one key cannot be both a record and an index'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await store.put('Record:1', '"payload"', 60);
    await store.addToIndex('Index:1', 'Record:1', 60);
    await t.throwsAsync(store.addToIndex('Record:1', 'member', 60), { message: /WRONGTYPE/ });
    await t.throwsAsync(store.get('Index:1'), { message: /WRONGTYPE/ });
    await t.throwsAsync(store.consume('Index:1', 1), { message: /WRONGTYPE/ });
    await t.throwsAsync(store.indexMembers('Record:1'), { message: /WRONGTYPE/ });
    await store.put('Index:1', '"now a record"', 60);
    t.deepEqual(await store.get('Index:1'), { value: '"now a record"' }, 'put replaces whatever held the key');
  });

  test(title('a TTL that is not positive is refused'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await t.throwsAsync(store.put('Record:1', '"payload"', 0), { instanceOf: RangeError });
    await t.throwsAsync(store.put('Record:1', '"payload"', Number.NaN), { instanceOf: RangeError });
    await t.throwsAsync(store.addToIndex('Index:1', 'member', -5), { instanceOf: RangeError });
    t.is(await store.get('Record:1'), undefined);
    t.deepEqual(await store.indexMembers('Index:1'), []);
  });

  test(title('ping answers'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await t.notThrowsAsync(store.ping());
  });

  test(title(`a published message reaches every subscriber of its channel${harness.unordered ? '' : ', in order,'} and only them`), async (t) => {
    const prefix = newPrefix();
    const store = openStore(t, harness, prefix);
    const [publisher] = harness.openRacers(prefix, store, 1);
    t.teardown(() => publisher!.close());
    const first = listen(t, store, 'News');
    const second = listen(t, store, 'News');
    const elsewhere = listen(t, store, 'Other');
    await until(() => first.subscription.listening && second.subscription.listening && elsewhere.subscription.listening, 'listening');
    await publisher!.publish('News', 'client-1');
    await publisher!.publish('News', 'client-2 ✓');
    await until(() => first.messages.length === 2 && second.messages.length === 2, 'two messages each');
    const received = (messages: string[]) => harness.unordered ? [...messages].sort() : messages;
    t.deepEqual(received(first.messages), ['client-1', 'client-2 ✓']);
    t.deepEqual(received(second.messages), ['client-1', 'client-2 ✓']);
    // Messages on one connection arrive in order: once this one is in, one for News would have been too.
    await publisher!.publish('Other', 'last');
    await until(() => elsewhere.messages.length === 1, 'the message on Other');
    t.deepEqual(elsewhere.messages, ['last']);
    t.false(first.changes.includes(false), 'it listened all along');
  });

  test(title('publishing without subscribers is fine, and a publisher hears itself'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    await t.notThrowsAsync(store.publish('Nobody', 'message'));
    const own = listen(t, store, 'Own');
    await until(() => own.subscription.listening, 'listening');
    await store.publish('Own', 'mine');
    await until(() => own.messages.length === 1, 'its own message');
    t.deepEqual(own.messages, ['mine']);
  });

  test(title('stores with different prefixes do not hear each other'), async (t) => {
    const prefix = newPrefix();
    const store = openStore(t, harness, prefix);
    const stranger = openStore(t, harness, newPrefix());
    const heard = listen(t, store, 'News');
    const strangerHeard = listen(t, stranger, 'News');
    await until(() => heard.subscription.listening && strangerHeard.subscription.listening, 'listening');
    await stranger.publish('News', 'from-the-stranger');
    await store.publish('News', 'from-the-same-prefix');
    await until(() => heard.messages.length >= 1 && strangerHeard.messages.length >= 1, 'one message each');
    t.deepEqual(heard.messages, ['from-the-same-prefix'], 'a message under another prefix would have come first');
    t.deepEqual(strangerHeard.messages, ['from-the-stranger']);
  });

  test(title('a closed subscription stops listening, says so, and hears nothing more'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    const closed = listen(t, store, 'News');
    const control = listen(t, store, 'News');
    await until(() => closed.subscription.listening && control.subscription.listening, 'listening');
    await closed.subscription.close();
    t.false(closed.subscription.listening);
    t.is(closed.changes.at(-1), false);
    await store.publish('News', 'after-close');
    await until(() => control.messages.length === 1, 'the control subscription hears it');
    t.deepEqual(closed.messages, []);
    t.true(control.subscription.listening, 'other subscriptions of the channel go on');
  });

  test(title('closing the store ends its subscriptions'), async (t) => {
    const store = openStore(t, harness, newPrefix());
    const ended = listen(t, store, 'News');
    await until(() => ended.subscription.listening, 'listening');
    await store.close();
    t.false(ended.subscription.listening);
    t.is(ended.changes.at(-1), false);
  });
}
