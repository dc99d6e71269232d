// Clients kept in memory, with two Gatehouse servers sharing one database and one Redis: a server
// serves a client it read recently without its database, hears of a change or removal made on the
// other server (or by the CLI) within moments, and stops trusting its memory while Redis is away.
// The same for the origins single-page apps may call from (CORS preflights), and for people as token
// requests read them. Then the cache on its own: bounded, expiring, and never keeping what a change made stale.
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import * as oauth from 'oauth4webapi';
import { Redis } from 'ioredis';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { ThrowawayRedisServer, eventually } from './helpers/redis.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { CuttableProxy } from './helpers/tcp-proxy.ts';
import { REDIRECT_URI, authorizationRequest, discover, insecure, registerConfidential, registerSpa, signInToNewSpa } from './helpers/oauth.ts';
import { UserAgent } from './helpers/user-agent.ts';
import { cleanEnvironment, runNode } from './helpers/process.ts';
import { openEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { DependencyUnavailable } from '../src/errors.ts';
import { CLIENT_CHANGES_CHANNEL, ClientCache, type ClientCacheOptions } from '../src/clients/client-cache.ts';
import type { ClientMetadata } from '../src/clients/clients.ts';
import { MemoryStore } from '../src/store/index.ts';
import { generateEncryptionKey } from '../src/keys/secrets.ts';

/**
 * How long a change may take to reach the other server in these tests: well below the cache's
 * 30 s lifetime, so only the announcement through Redis can make it. Polled, never asserted as timing.
 */
const ANNOUNCEMENT_TIMEOUT_MS = 10_000;
const SETUP_TIMEOUT_MS = 180_000;

let redis: ThrowawayRedisServer;
let database: TestDatabase;
let embedded: EmbeddedPostgres | undefined;
/** Between server B and the database, so that B alone can lose it. */
let proxy: CuttableProxy;
let serverA: TestServer;
let serverB: TestServer;
let shared: Record<string, string>;

test.before(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  // A Redis of this file's own: one test stops it.
  redis = await ThrowawayRedisServer.start();
  database = await createTestDatabase();
  let directUrl: string;
  let proxiedUrl: URL;
  if (database.databaseUrl) {
    directUrl = database.databaseUrl;
    const real = new URL(database.databaseUrl);
    proxy = new CuttableProxy({ host: real.hostname, port: Number(real.port || 5432) });
    proxiedUrl = new URL(real);
    proxiedUrl.hostname = '127.0.0.1';
  } else {
    // This process hosts the embedded database; A dials its socket, B the proxy in front of it.
    embedded = await openEmbeddedPostgres(database.dataDir);
    directUrl = embedded.connectionString;
    proxy = new CuttableProxy({ path: path.join(database.dataDir, '.s.PGSQL.5432') });
    proxiedUrl = new URL('postgresql://postgres@127.0.0.1/postgres');
  }
  await proxy.start();
  proxiedUrl.port = String(proxy.port);
  // The default cache lifetime (30 s) on purpose: the tests below see changes long before it ends.
  // Instances sharing a database share its encryption keys too (the signing keys are sealed with them).
  shared = { REDIS_URL: redis.url, STORE_PREFIX: `gatehouse-test-${randomBytes(6).toString('hex')}:`, ENCRYPTION_KEYS: generateEncryptionKey() };
  serverA = await startTestServer({ ...shared, DATABASE_URL: directUrl });
  serverB = await startTestServer({ ...shared, DATABASE_URL: proxiedUrl.toString() });
});

test.after.always(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  proxy?.thaw();
  await proxy?.restore().catch(() => {});
  // Closing deletes the servers' keys from Redis, so it must be up.
  await redis?.start().catch(() => {});
  await serverB?.close();
  await serverA?.close();
  await proxy?.close();
  await redis?.stop();
  await embedded?.close();
  await database?.drop();
});

/** Waits until the server answers client lookups from memory (its subscription to changes is confirmed). */
async function cacheActive(server: TestServer): Promise<void> {
  await eventually(async () => {
    if (!server.runtime.clients.cacheActive) throw new Error('the client cache is not listening yet');
  }, ANNOUNCEMENT_TIMEOUT_MS);
}

/** Polls until the check passes; the last failure is the test's failure. */
function soon<Result>(check: () => Promise<Result>): Promise<Result> {
  return eventually(check, ANNOUNCEMENT_TIMEOUT_MS);
}

async function clientCredentials(server: TestServer, service: { client: oauth.Client; secret: string }): Promise<Response> {
  const as = await discover(server);
  return oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure);
}

async function authorizationPageStatus(server: TestServer, clientId: string, redirectUri: string): Promise<number> {
  const { url } = await authorizationRequest(await discover(server), clientId, { redirect_uri: redirectUri });
  const { response } = await new UserAgent().follow(url);
  await response.arrayBuffer();
  return response.status;
}

async function expectStatus(t: ExecutionContext, response: Response, status: number): Promise<void> {
  const body = await response.text();
  t.is(response.status, status, body);
}

test.serial('a server serves a client it read recently from memory, also while its database is unreachable', async (t) => {
  await cacheActive(serverB);
  const service = await registerConfidential(serverA, 'service');
  await expectStatus(t, await clientCredentials(serverB, service), 200);
  const unread = await registerConfidential(serverA, 'service');
  await proxy.cut();
  try {
    await expectStatus(t, await clientCredentials(serverB, service), 200);
    // The database really is out of reach for B: a client it has not read yet cannot be looked up.
    const refused = await clientCredentials(serverB, unread);
    t.is(refused.status, 503);
    t.like(await refused.json(), { error: 'temporarily_unavailable' });
  } finally {
    await proxy.restore();
  }
});

test.serial('a client changed on one server is read with its new redirect URIs on the other within moments', async (t) => {
  await cacheActive(serverB);
  const { client } = await registerSpa(serverA);
  const newRedirect = 'http://127.0.0.1:4999/moved';
  t.is(await authorizationPageStatus(serverB, client.client_id, REDIRECT_URI), 200);
  t.is(await authorizationPageStatus(serverB, client.client_id, newRedirect), 400);

  await serverA.runtime.clients.update(client.client_id, { redirectUris: [newRedirect] });
  await soon(async () => {
    if (await authorizationPageStatus(serverB, client.client_id, newRedirect) !== 200) throw new Error('B does not take the new redirect URI yet');
  });
  t.is(await authorizationPageStatus(serverB, client.client_id, REDIRECT_URI), 400, 'the old redirect URI is refused on B');
  t.is(await authorizationPageStatus(serverA, client.client_id, REDIRECT_URI), 400, 'and on A, at once');
});

test.serial('a client deleted on one server: the tokens it got from the other stop working there within moments', async (t) => {
  await cacheActive(serverB);
  const { as, client, tokens } = await signInToNewSpa(serverB);
  const service = await registerConfidential(serverB, 'service');
  const introspect = async (token: string) => oauth.processIntrospectionResponse(
    as, service.client, await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), token, insecure),
  );
  t.true((await introspect(tokens.access_token)).active);

  t.true(await serverA.runtime.clients.delete(client.client_id));
  await soon(async () => {
    if ((await introspect(tokens.access_token)).active) throw new Error('B still finds the token active');
  });
  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_client');
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 401);
  t.is(await authorizationPageStatus(serverB, client.client_id, REDIRECT_URI), 400);
});

test.serial('a client deleted with the CLI (another process) stops working on a running server within moments', async (t) => {
  t.timeout(180_000);
  await cacheActive(serverB);
  const service = await registerConfidential(serverA, 'service');
  await expectStatus(t, await clientCredentials(serverB, service), 200);
  const deleted = await runNode(['bin/gatehouse.js', 'clients', 'delete', '--client-id', String(service.client.client_id)], cleanEnvironment({
    ...shared,
    DATABASE_URL: serverA.runtime.config.databaseUrl,
    DATA_DIR: serverA.runtime.config.dataDir,
    KEYS_DIR: serverA.runtime.config.keysDir,
    LOG_LEVEL: 'warn',
  }), 180_000);
  t.is(deleted.code, 0, deleted.stderr);
  const answer = await soon(async () => {
    const response = await clientCredentials(serverB, service);
    if (response.status === 200) throw new Error('B still issues tokens to the deleted client');
    return response;
  });
  t.is(answer.status, 401);
  t.like(await answer.json(), { error: 'invalid_client' });
});

test.serial('a single-page app registered, then deleted, on one server opens, then closes, CORS preflights from its origin on the other within moments', async (t) => {
  await cacheActive(serverB);
  const origin = `https://spa-${randomBytes(6).toString('hex')}.example`;
  const allowedOrigin = async (server: TestServer) => {
    const response = await fetch(`${server.issuer}/token`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
    await response.arrayBuffer();
    return response.headers.get('access-control-allow-origin');
  };
  // B now keeps in memory the origins it allows, without this one.
  t.is(await allowedOrigin(serverB), null);
  const metadata = await serverA.runtime.clients.create({ name: 'Preflight SPA', type: 'spa', redirectUris: [`${origin}/callback`] });
  t.is(await soon(async () => {
    const allowed = await allowedOrigin(serverB);
    if (allowed !== origin) throw new Error('B does not allow the new SPA’s origin yet');
    return allowed;
  }), origin);
  t.true(await serverA.runtime.clients.delete(metadata.client_id));
  t.is(await soon(async () => {
    const allowed = await allowedOrigin(serverB);
    if (allowed !== null) throw new Error('B still allows the deleted SPA’s origin');
    return allowed;
  }), null);
});

test.serial('a person changed on one server: token requests on the other see it within moments, and on that server at once', async (t) => {
  await cacheActive(serverB);
  const { as, client, user, tokens } = await signInToNewSpa(serverB);
  const service = await registerConfidential(serverB, 'service');
  const active = async (server: TestServer, token: string) => {
    const at = await discover(server);
    return (await oauth.processIntrospectionResponse(at, service.client,
      await oauth.introspectionRequest(at, service.client, oauth.ClientSecretBasic(service.secret), token, insecure))).active;
  };
  const refresh = async (refreshToken: string) => oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, insecure));
  // Both servers read the person (and keep them).
  let latest = await refresh(tokens.refresh_token!);
  t.true(await active(serverB, latest.access_token));
  t.true(await active(serverA, latest.access_token));

  await serverA.runtime.users.updateProfile(user.id, { name: 'Renamed Elsewhere' });
  await soon(async () => {
    latest = await refresh(latest.refresh_token!);
    const name = oauth.getValidatedIdTokenClaims(latest)?.name;
    if (name !== 'Renamed Elsewhere') throw new Error(`B's new ID token still says ${String(name)}`);
  });

  // Disabled through the account service alone (no session or grant ended): only the person's state stops the tokens.
  await serverA.runtime.users.setDisabled(user.id, true);
  t.false(await active(serverA, latest.access_token), 'on A at once');
  await soon(async () => {
    if (await active(serverB, latest.access_token)) throw new Error('B still finds the token active');
  });
  const refused = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), latest.refresh_token!, insecure);
  t.is(refused.status, 400);
  t.like(await refused.json(), { error: 'invalid_grant' });
});

test.serial('a one-shot runtime (the CLI) listens for no client changes, yet announces the changes it makes', async (t) => {
  await cacheActive(serverB);
  const subscriber = new Redis(redis.url);
  t.teardown(() => subscriber.quit());
  const channel = `${shared.STORE_PREFIX}${CLIENT_CHANGES_CHANNEL}`;
  const listeners = async () => Number((await subscriber.pubsub('NUMSUB', channel))[1]);
  t.is(await listeners(), 2, 'servers A and B listen');

  const oneShot = await startTestServer({ ...shared, DATABASE_URL: serverA.runtime.config.databaseUrl! }, { runtime: { oneShot: true } });
  t.teardown(() => oneShot.close());
  const service = await registerConfidential(oneShot, 'service');
  await expectStatus(t, await clientCredentials(serverB, service), 200);
  t.is(await listeners(), 2, 'the one-shot runtime opened no subscription');
  await oneShot.runtime.clients.delete(String(service.client.client_id));
  const answer = await soon(async () => {
    const response = await clientCredentials(serverB, service);
    if (response.status === 200) throw new Error('B still issues tokens to the deleted client');
    return response;
  });
  t.is(answer.status, 401, 'its change was announced');
});

test.serial('while its subscription to changes is down (Redis stopped), a server reads clients from the database again', async (t) => {
  t.timeout(90_000);
  await cacheActive(serverB);
  const service = await registerConfidential(serverA, 'service');
  const clientId = String(service.client.client_id);
  await expectStatus(t, await clientCredentials(serverB, service), 200);
  await proxy.cut();
  try {
    t.like(await serverB.runtime.clients.find(clientId), { client_id: clientId }, 'from memory while listening');
    await redis.kill();
    // Not listening, B could miss a change: so it asks the database, which is out of reach.
    const refused = await soon(async () => {
      const outcome = await serverB.runtime.clients.find(clientId).then(() => undefined, (error: unknown) => error);
      if (!outcome) throw new Error('B still answers from memory');
      return outcome;
    });
    t.true(refused instanceof DependencyUnavailable, String(refused));
    t.is((refused as DependencyUnavailable).dependency, 'database');
    t.false(serverB.runtime.clients.cacheActive);
    // A change nobody can be told of is still made (and logged); B, not listening, reads it from the database.
    t.like(await serverA.runtime.clients.update(clientId, { name: 'Renamed while Redis is down' }), { client_name: 'Renamed while Redis is down' });
  } finally {
    await proxy.restore();
    await redis.start();
  }
  t.like(await serverB.runtime.clients.find(clientId), { client_name: 'Renamed while Redis is down' });
  // Back by itself once Redis is: subscribed again, and serving from memory.
  await cacheActive(serverB);
  await soon(async () => {
    const response = await clientCredentials(serverB, service);
    if (response.status !== 200) throw new Error(`B answers ${response.status}`);
  });
});

// The cache on its own, over the in-process store: what it keeps, for how long, and how much.

function cacheOver(t: ExecutionContext, options: Partial<ClientCacheOptions> = {}) {
  const store = new MemoryStore({ prefix: 'client-cache-test:' });
  const cache = new ClientCache(store, { maxAgeMs: 60_000, ...options });
  t.teardown(async () => {
    await cache.close();
    await store.close();
  });
  const stored = new Map<string, ClientMetadata>();
  const loads: string[] = [];
  const read = (clientId: string) => cache.read(clientId, async () => {
    loads.push(clientId);
    const metadata = stored.get(clientId);
    return metadata && structuredClone(metadata);
  });
  return { store, cache, stored, loads, read };
}

test('made-up client ids are remembered as unknown in a bounded space of their own: they cannot push real clients out', async (t) => {
  const { stored, loads, read } = cacheOver(t, { maxClients: 10, maxUnknownIds: 3 });
  stored.set('real', { client_id: 'real' });
  t.like(await read('real'), { client_id: 'real' });
  for (let attempt = 0; attempt < 100; attempt++) t.is(await read(`made-up-${attempt}`), undefined);
  loads.length = 0;
  t.like(await read('real'), { client_id: 'real' });
  t.is(await read('made-up-99'), undefined);
  t.deepEqual(loads, [], 'the client and the latest unknown id come from memory');
  t.is(await read('made-up-0'), undefined);
  t.deepEqual(loads, ['made-up-0'], 'older unknown ids were let go');
});

test('a client is read again once its entry is older than the max age', async (t) => {
  const { stored, loads, read } = cacheOver(t, { maxAgeMs: 50 });
  stored.set('client', { client_id: 'client', client_name: 'Before' });
  await read('client');
  stored.set('client', { client_id: 'client', client_name: 'After' });
  const fresh = await soon(async () => {
    const metadata = await read('client');
    if (metadata?.client_name !== 'After') throw new Error('still the old entry');
    return metadata;
  });
  t.like(fresh, { client_name: 'After' });
  t.true(loads.length >= 2);
});

test('a read that began before a change does not keep what it found', async (t) => {
  const { cache, stored, loads, read } = cacheOver(t);
  let finishLoad!: (metadata: ClientMetadata) => void;
  const early = cache.read('client', () => new Promise((resolve) => { finishLoad = resolve; }));
  stored.set('client', { client_id: 'client', client_name: 'New' });
  await cache.changed('client');
  finishLoad({ client_id: 'client', client_name: 'Old' });
  t.like(await early, { client_name: 'Old' }, 'the early read gets what it found');
  t.like(await read('client'), { client_name: 'New' }, 'but the next read goes to the database');
  t.deepEqual(loads, ['client']);
});

test('a caller changing the client it got does not change what the next one gets: what memory serves cannot be changed', async (t) => {
  const { stored, read, loads } = cacheOver(t);
  stored.set('client', { client_id: 'client', redirect_uris: ['https://app.example.com/callback'] });
  const loaded = await read('client');
  (loaded!.redirect_uris as string[]).push('https://attacker.example/callback');
  const kept = await read('client');
  t.deepEqual(kept!.redirect_uris, ['https://app.example.com/callback']);
  t.throws(() => (kept!.redirect_uris as string[]).push('https://attacker.example/callback'), { instanceOf: TypeError });
  t.throws(() => Object.assign(kept!, { client_name: 'Changed' }), { instanceOf: TypeError });
  t.deepEqual((await read('client'))!.redirect_uris, ['https://app.example.com/callback']);
  t.deepEqual(loads, ['client'], 'served from memory after the first read');
});

test('the origins of single-page apps are kept until any client changes; a read that began before a change does not keep what it found', async (t) => {
  const { cache } = cacheOver(t);
  let stored = ['https://a.example'];
  let loads = 0;
  const read = async () => [...await cache.readSinglePageAppOrigins(async () => {
    loads++;
    return new Set(stored);
  })];
  t.deepEqual(await read(), ['https://a.example']);
  stored = ['https://b.example'];
  t.deepEqual(await read(), ['https://a.example'], 'from memory');
  t.is(loads, 1);
  await cache.changed('any-client');
  t.deepEqual(await read(), ['https://b.example'], 'any client’s change forgets them');

  await cache.changed('any-client');
  let finishLoad!: (origins: ReadonlySet<string>) => void;
  const early = cache.readSinglePageAppOrigins(() => new Promise((resolve) => { finishLoad = resolve; }));
  stored = ['https://c.example'];
  await cache.changed('another-client');
  finishLoad(new Set(['https://b.example']));
  t.deepEqual([...await early], ['https://b.example'], 'the early read gets what it found');
  t.deepEqual(await read(), ['https://c.example'], 'but the next read loads again');
});

test('with a max age of 0 every read goes to the database, and changes are still announced to others', async (t) => {
  const { store, cache, stored, loads, read } = cacheOver(t, { maxAgeMs: 0 });
  stored.set('client', { client_id: 'client' });
  await read('client');
  await read('client');
  t.deepEqual(loads, ['client', 'client']);
  t.false(cache.active);
  const announced: string[] = [];
  const subscription = store.subscribe(CLIENT_CHANGES_CHANNEL, { message: (clientId) => announced.push(clientId) });
  t.teardown(() => subscription.close());
  await cache.changed('client');
  t.deepEqual(announced, ['client']);
});
