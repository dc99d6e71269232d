// The oidc-provider adapter over both stores: what the engine relies on — find after upsert, the
// consumed mark, findByUid and findByUserCode, revokeByGrantId per model, atomic consume with a
// protocol error for the loser, a pushed authorization request taken by its first find, reads started ahead
// within one engine request (and only there), and 503-shaped errors when the store is down.
import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { errors } from 'oidc-provider';
import engineRequest from 'oidc-provider/lib/helpers/als.js';
import { createAdapterFactory } from '../src/oidc/adapter.ts';
import { TemporarilyUnavailable } from '../src/oidc/errors.ts';
import { createStore, type Store } from '../src/store/index.ts';
import type { ClientService } from '../src/clients/clients.ts';
import { deleteKeysWithPrefix, findFreePort } from './helpers/redis.ts';

const runPrefix = `gatehouse-test:${randomUUID()}:`;
const backends = [{ name: 'memory', redisUrl: undefined }, ...(process.env.REDIS_URL ? [{ name: 'redis', redisUrl: process.env.REDIS_URL }] : [])];
const noClients = { find: async () => undefined } as unknown as ClientService;

test.after.always(async () => {
  if (process.env.REDIS_URL) await deleteKeysWithPrefix(process.env.REDIS_URL, runPrefix);
});

/** The store, with each key's reads counted. */
function countingReads(store: Store): { store: Store; reads(key: string): number } {
  const counts = new Map<string, number>();
  const counted = new Proxy(store, {
    get(target, property) {
      if (property === 'get') {
        return (key: string) => {
          counts.set(key, (counts.get(key) ?? 0) + 1);
          return target.get(key);
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store: counted, reads: (key) => counts.get(key) ?? 0 };
}

function adapters(t: ExecutionContext, redisUrl: string | undefined) {
  const store: Store = createStore({ redis: redisUrl === undefined ? undefined : { url: redisUrl }, prefix: `${runPrefix}${randomUUID()}:` });
  t.teardown(() => store.close());
  return createAdapterFactory(store, noClients, async () => {}, { spendOne: async () => {} });
}

for (const { name, redisUrl } of backends) {
  const title = (text: string) => `[${name}] ${text}`;

  test(title('find returns what upsert stored, and nothing for unknown ids'), async (t) => {
    const adapter = adapters(t, redisUrl)('AccessToken');
    const payload = { jti: 'at1', kind: 'AccessToken', accountId: 'u1', grantId: 'g1', scope: 'openid' };
    await adapter.upsert('at1', payload, 60);
    t.deepEqual(await adapter.find('at1'), payload);
    t.is(await adapter.find('unknown'), undefined);
  });

  test(title('consume marks the record; a second consume fails with invalid_grant'), async (t) => {
    const adapter = adapters(t, redisUrl)('RefreshToken');
    await adapter.upsert('rt1', { jti: 'rt1', kind: 'RefreshToken', grantId: 'g1' }, 60);
    await adapter.consume('rt1');
    const found = await adapter.find('rt1');
    t.is(typeof found?.consumed, 'number');
    await t.throwsAsync(adapter.consume('rt1'), { instanceOf: errors.InvalidGrant });
  });

  test(title('of concurrent consumes exactly one succeeds'), async (t) => {
    const adapter = adapters(t, redisUrl)('AuthorizationCode');
    await adapter.upsert('code1', { jti: 'code1', kind: 'AuthorizationCode', grantId: 'g1' }, 60);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => adapter.consume('code1')));
    t.is(results.filter((result) => result.status === 'fulfilled').length, 1);
  });

  test(title('a pushed authorization request is found once: of concurrent finds exactly one gets it, and consuming it then is no error'), async (t) => {
    const adapter = adapters(t, redisUrl)('PushedAuthorizationRequest');
    const payload = { jti: 'par1', kind: 'PushedAuthorizationRequest', request: 'header.payload.', trusted: [] };
    await adapter.upsert('par1', payload, 60);
    const found = await Promise.all(Array.from({ length: 20 }, () => adapter.find('par1')));
    t.deepEqual(found.filter((record) => record !== undefined), [payload]);
    await t.notThrowsAsync(adapter.consume('par1'), 'the engine consumes it when answering the request that took it');
    t.is(await adapter.find('par1'), undefined);
    t.is(await adapter.find('unknown'), undefined);
  });

  test(title('findByUid finds a session and findByUserCode a device code'), async (t) => {
    const factory = adapters(t, redisUrl);
    const session = { jti: 's1', kind: 'Session', uid: 'uid-1', accountId: 'u1' };
    await factory('Session').upsert('s1', session, 60);
    t.deepEqual(await factory('Session').findByUid('uid-1'), session);
    t.is(await factory('Session').findByUid('uid-2'), undefined);
    const deviceCode = { jti: 'd1', kind: 'DeviceCode', userCode: 'ABCD-EFGH', grantId: 'g9' };
    await factory('DeviceCode').upsert('d1', deviceCode, 60);
    t.deepEqual(await factory('DeviceCode').findByUserCode('ABCD-EFGH'), deviceCode);
    await factory('Session').destroy('s1');
    t.is(await factory('Session').findByUid('uid-1'), undefined, 'a destroyed session is not found through its uid');
  });

  test(title('revokeByGrantId removes the grant’s tokens of that model and leaves other grants alone'), async (t) => {
    const factory = adapters(t, redisUrl);
    for (const model of ['AccessToken', 'RefreshToken']) {
      await factory(model).upsert(`${model}-a`, { jti: `${model}-a`, grantId: 'grant-a' }, 60);
      await factory(model).upsert(`${model}-a2`, { jti: `${model}-a2`, grantId: 'grant-a' }, 60);
      await factory(model).upsert(`${model}-b`, { jti: `${model}-b`, grantId: 'grant-b' }, 60);
    }
    await factory('AccessToken').revokeByGrantId('grant-a');
    t.is(await factory('AccessToken').find('AccessToken-a'), undefined);
    t.is(await factory('AccessToken').find('AccessToken-a2'), undefined);
    t.truthy(await factory('AccessToken').find('AccessToken-b'));
    t.truthy(await factory('RefreshToken').find('RefreshToken-a'), 'the engine revokes each model in turn');
    await factory('RefreshToken').revokeByGrantId('grant-a');
    t.is(await factory('RefreshToken').find('RefreshToken-a'), undefined);
    t.truthy(await factory('RefreshToken').find('RefreshToken-b'));
  });

  test(title('in an engine request a token read starts the reads of its grant, session and person; each is used once, by that request alone'), async (t) => {
    const store = createStore({ redis: redisUrl === undefined ? undefined : { url: redisUrl }, prefix: `${runPrefix}${randomUUID()}:` });
    t.teardown(() => store.close());
    const counting = countingReads(store);
    const personReads: Array<[object, string]> = [];
    const factory = createAdapterFactory(counting.store, noClients, async () => {}, { spendOne: async () => {} }, undefined, (request, accountId) => {
      personReads.push([request, accountId]);
    });
    const grant = { jti: 'g1', kind: 'Grant', accountId: 'p1', clientId: 'c1' };
    const session = { jti: 's1', kind: 'Session', uid: 'uid-1', accountId: 'p1' };
    const refreshToken = { jti: 'rt1', kind: 'RefreshToken', accountId: 'p1', grantId: 'g1', sessionUid: 'uid-1', expiresWithSession: true };
    await factory('Grant').upsert('g1', grant, 60);
    await factory('Session').upsert('s1', session, 60);
    await factory('RefreshToken').upsert('rt1', refreshToken, 60);
    const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

    const request = {};
    await engineRequest.run(request, async () => {
      t.deepEqual(await factory('RefreshToken').find('rt1'), refreshToken);
      await settle();
      t.is(counting.reads('Grant:g1'), 1, 'the grant is being read before the engine asks');
      t.is(counting.reads('Session:uid:uid-1'), 1);
      t.is(counting.reads('Session:s1'), 1, 'and the session the pointer names');
      t.deepEqual(personReads, [[request, 'p1']]);
      t.deepEqual(await factory('Session').findByUid('uid-1'), session);
      t.deepEqual(await factory('Grant').find('g1'), grant);
      t.is(counting.reads('Session:uid:uid-1') + counting.reads('Session:s1') + counting.reads('Grant:g1'), 3, 'the engine got the reads started for it');
      await factory('Grant').upsert('g1', { ...grant, clientId: 'changed' }, 60);
      t.is((await factory('Grant').find('g1'))?.clientId, 'changed', 'a second read in the same request goes to the store');
    });
    await engineRequest.run({}, async () => {
      t.is((await factory('Grant').find('g1'))?.clientId, 'changed');
      t.is(counting.reads('Grant:g1'), 3, 'another request reads for itself');
    });
    await factory('RefreshToken').find('rt1');
    await settle();
    t.is(counting.reads('Grant:g1'), 3, 'outside an engine request nothing is read ahead');
    t.is(personReads.length, 1);
  });

  test(title('records expire with the TTL the engine gives'), async (t) => {
    const adapter = adapters(t, redisUrl)('Interaction');
    await adapter.upsert('i1', { jti: 'i1', kind: 'Interaction' }, 1);
    // A real wait past the 1 s TTL: the expiry is Redis's own (or the in-process store's, on Date.now()).
    await new Promise((resolve) => setTimeout(resolve, 1200));
    t.is(await adapter.find('i1'), undefined);
  });
}

test('a store that is down turns into temporarily_unavailable (503) for the engine', async (t) => {
  const port = await findFreePort();
  const adapter = adapters(t, `redis://127.0.0.1:${port}`)('AccessToken');
  const error = await t.throwsAsync(adapter.find('anything'), { instanceOf: TemporarilyUnavailable });
  t.is(error?.status, 503);
  t.is(error?.error, 'temporarily_unavailable');
  t.true(error?.expose, 'the engine shows the error instead of a generic server_error');
});
