// Dependencies going down and coming back, with real services: a throwaway redis-server that is
// killed, frozen and restarted, and PostgreSQL (or the embedded database) behind a proxy that is cut
// and restored. Gatehouse must answer 503 temporarily_unavailable naming the dependency, never a 500
// or a stack trace, and recover by itself.
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { ThrowawayRedisServer } from './helpers/redis.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { CuttableProxy } from './helpers/tcp-proxy.ts';
import {
  PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, registerSpa, signIn, signInToNewSpa,
} from './helpers/oauth.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';
import { until } from './helpers/wait.ts';
import { READY_CHECK_TIMEOUT_MS } from '../src/web/health.ts';
import { openEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';
import { RedisStore } from '../src/store/index.ts';
import { DependencyUnavailable } from '../src/errors.ts';

/** Only keeps a hanging request from stalling the suite; no timing is asserted. */
const REQUEST_TIMEOUT_MS = 30_000;
/** How long a dependency that came back may take to be used again. */
const RECOVERY_TIMEOUT_MS = 15_000;
/** Starting a server (the embedded database's first start runs initdb) is slow on a busy machine. */
const SETUP_TIMEOUT_MS = 180_000;
/** A test waits for recoveries and a hung Redis; more than AVA's default of 10 s without news. */
const TEST_TIMEOUT_MS = 90_000;

const withTimeout = () => ({ ...insecure, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });

/** Stack frames, file positions and module paths: none may reach a response body. */
const STACK_TRACE = /\n\s+at\s|\bat (?:async )?[\w.<>]+ \(|(?:file|node):\/*[\w/.-]*:\d+|node_modules|\.(?:ts|js|mjs):\d+:\d+/;

interface Answer {
  status: number;
  type: string;
  body: string;
  location: string | null;
  retryAfter: string | null;
}

/** Reads a response and checks what every answer during an outage must satisfy. */
async function answer(t: ExecutionContext, response: Response): Promise<Answer> {
  const body = await response.text();
  t.not(response.status, 500, `a 500: ${body.slice(0, 300)}`);
  t.notRegex(body, STACK_TRACE, 'the body carries a stack trace');
  return { status: response.status, type: response.headers.get('content-type') ?? '', body, location: response.headers.get('location'), retryAfter: response.headers.get('retry-after') };
}

function assertUnavailableJson(t: ExecutionContext, result: Answer, dependency: 'store' | 'database'): void {
  t.is(result.status, 503, result.body);
  t.regex(result.type, /application\/json/);
  const json = JSON.parse(result.body) as { error?: string; error_description?: string };
  t.is(json.error, 'temporarily_unavailable');
  t.is(result.retryAfter, '5', 'Retry-After says when to try again');
  t.regex(json.error_description ?? '', new RegExp(`\\b${dependency}\\b`), 'error_description names the dependency');
}

function assertUnavailablePage(t: ExecutionContext, result: Answer, dependency: 'store' | 'database'): void {
  t.is(result.status, 503, result.body.slice(0, 300));
  t.regex(result.type, /text\/html/);
  t.regex(result.body, /temporarily unavailable/i);
  t.is(result.retryAfter, '5', 'Retry-After says when to try again');
  t.regex(result.body, new RegExp(`\\b${dependency} is unavailable`, 'i'), 'the page says which dependency is down');
  t.is(result.location, null, 'no redirect');
}

/**
 * What a real client library makes of a token endpoint 503: oauth4webapi parses error bodies of 4xx
 * answers only (RFC 6749 §5.2), so it rejects the response as not conform, keeping it for the caller.
 */
async function assertClientLibraryRefuses(t: ExecutionContext, processing: Promise<unknown>): Promise<void> {
  const error = await processing.then(() => undefined, (reason: unknown) => reason);
  t.true(error instanceof oauth.OperationProcessingError, `oauth4webapi accepted or failed otherwise: ${String(error)}`);
  const { code, cause } = error as oauth.OperationProcessingError;
  t.is(code, oauth.RESPONSE_IS_NOT_CONFORM);
  t.is((cause as Response).status, 503);
}

async function probe(issuer: string, path: '/readyz' | '/healthz'): Promise<{ status: number; json: { status?: string; checks?: Record<string, string> } }> {
  const response = await fetch(`${issuer}${path}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  return { status: response.status, json: await response.json() as { status?: string; checks?: Record<string, string> } };
}

/** Polls /readyz until it says ready (the dependency is back and in use) or the time is up. */
async function waitUntilReady(t: ExecutionContext, issuer: string): Promise<void> {
  let last: Awaited<ReturnType<typeof probe>> | undefined;
  // Not ready in time is the assertion below, which says what /readyz last answered.
  await until(async () => (last = await probe(issuer, '/readyz')).status === 200, 'readiness', RECOVERY_TIMEOUT_MS).catch(() => {});
  t.is(last?.status, 200, `still not ready: ${JSON.stringify(last?.json)}`);
  t.deepEqual(last?.json.checks, { database: 'up', store: 'up' });
}

interface Fixture {
  server: TestServer;
  as: oauth.AuthorizationServer;
  spa: oauth.Client;
  service: { client: oauth.Client; secret: string };
  user: { email: string };
}

async function prepare(server: TestServer): Promise<Fixture> {
  const as = await discover(server);
  const { client: spa } = await registerSpa(server);
  const service = await registerConfidential(server, 'service');
  const user = await createUser(server);
  return { server, as, spa, service, user };
}

/** A person signs in through the pages and the SPA exchanges the code: the whole happy path. */
async function signInAndExchange(fixture: Fixture) {
  const { as, spa, user } = fixture;
  const agent = new UserAgent();
  const request = await authorizationRequest(as, spa.client_id);
  const callback = await signIn(agent, request.url, { email: user.email, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, spa, callback, request.state);
  const response = await oauth.authorizationCodeGrantRequest(as, spa, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, withTimeout());
  const tokens = await oauth.processAuthorizationCodeResponse(as, spa, response, { expectedNonce: request.nonce, requireIdToken: true });
  return { agent, tokens };
}

/** Opens the login page of a new authorization request and returns how to submit it. */
async function openLoginPage(fixture: Fixture) {
  const agent = new UserAgent();
  const request = await authorizationRequest(fixture.as, fixture.spa.client_id);
  const { response, url } = await agent.follow(request.url);
  const page = await response.text();
  if (response.status !== 200 || !page.includes('name="password"')) throw new Error(`no login page: ${response.status}`);
  return {
    agent,
    pageUrl: url,
    submit: () => agent.request(new URL(`${url.pathname}/login`, url), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(page, 'csrf'), email: fixture.user.email, password: PASSWORD }).toString(),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Redis: a throwaway redis-server of our own, killed, frozen and restarted on the same port.

let redis: ThrowawayRedisServer;
let redisRunning = false;
let onRedis: Fixture;

async function redisDown(): Promise<void> {
  if (!redisRunning) return;
  redisRunning = false;
  await redis.kill();
}

async function redisUp(): Promise<void> {
  if (redisRunning) return;
  await redis.start();
  redisRunning = true;
}

test.before(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  redis = await ThrowawayRedisServer.start();
  redisRunning = true;
  onRedis = await prepare(await startTestServer({ REDIS_URL: redis.url }));
});

test.after.always(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  // The server's cleanup deletes its keys from this Redis, so it must be up for that.
  await redisUp().catch(() => {});
  await onRedis?.server.close();
  await redis?.stop();
});

test.serial('Redis down: the token endpoint answers 503 temporarily_unavailable naming the store, for client_credentials and refresh', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa, service } = onRedis;
  const { tokens } = await signInAndExchange(onRedis);
  t.truthy(tokens.refresh_token);
  await redisDown();

  const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
  assertUnavailableJson(t, await answer(t, credentials.clone()), 'store');
  await assertClientLibraryRefuses(t, oauth.processClientCredentialsResponse(as, service.client, credentials));

  const refresh = await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, withTimeout());
  assertUnavailableJson(t, await answer(t, refresh.clone()), 'store');
  await assertClientLibraryRefuses(t, oauth.processRefreshTokenResponse(as, spa, refresh));
});

test.serial('Redis down: userinfo, introspection and revocation answer 503 naming the store', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa, service } = onRedis;
  await redisUp();
  await waitUntilReady(t, onRedis.server.issuer);
  const { tokens } = await signInAndExchange(onRedis);
  await redisDown();
  const userinfo = await answer(t, await oauth.userInfoRequest(as, spa, tokens.access_token, withTimeout()));
  assertUnavailableJson(t, userinfo, 'store');
  const introspection = await answer(t, await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), tokens.access_token, withTimeout()));
  assertUnavailableJson(t, introspection, 'store');
  // A revocation that could not happen must not look like one that did (RFC 7009 answers 200 for both).
  const revocation = await answer(t, await oauth.revocationRequest(as, spa, oauth.None(), tokens.refresh_token!, withTimeout()));
  assertUnavailableJson(t, revocation, 'store');
});

test.serial('Redis down: a browser sent to the authorization endpoint returns to the client with error=temporarily_unavailable, state and iss', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa } = onRedis;
  await redisDown();
  const request = await authorizationRequest(as, spa.client_id);
  const result = await answer(t, await new UserAgent().request(request.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
  // The redirect URI is registered for this client, so RFC 6749 §4.1.2.1 has the error go back to it.
  t.is(result.status, 303);
  const location = new URL(result.location!);
  t.is(location.origin + location.pathname, REDIRECT_URI);
  t.is(location.searchParams.get('error'), 'temporarily_unavailable');
  t.regex(location.searchParams.get('error_description') ?? '', /\bstore\b/);
  t.is(location.searchParams.get('state'), request.state);
  t.is(location.searchParams.get('iss'), as.issuer);
  const error = t.throws(() => oauth.validateAuthResponse(as, spa, location, request.state), { instanceOf: oauth.AuthorizationResponseError });
  t.is(error?.error, 'temporarily_unavailable', 'the client library reads it as an authorization error');
});

test.serial('Redis down: an untrusted redirect_uri or an unknown client still gets an error page, never a redirect', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa } = onRedis;
  await redisDown();
  const untrusted = await authorizationRequest(as, spa.client_id, { redirect_uri: 'https://attacker.example/callback' });
  const untrustedResult = await answer(t, await new UserAgent().request(untrusted.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
  t.is(untrustedResult.location, null, 'never redirected to an unregistered URI');
  t.regex(untrustedResult.type, /text\/html/);
  t.true(untrustedResult.status === 400 || untrustedResult.status === 503, String(untrustedResult.status));

  const unknown = await authorizationRequest(as, 'no-such-client');
  const unknownResult = await answer(t, await new UserAgent().request(unknown.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
  t.is(unknownResult.location, null);
  t.regex(unknownResult.type, /text\/html/);
  t.true(unknownResult.status === 400 || unknownResult.status === 503, String(unknownResult.status));
});

test.serial('Redis down: the sign-in page and its form answer a 503 page naming the store', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await redisUp();
  await waitUntilReady(t, onRedis.server.issuer);
  const login = await openLoginPage(onRedis);
  await redisDown();
  const page = await answer(t, await login.agent.request(login.pageUrl, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
  assertUnavailablePage(t, page, 'store');
  const submitted = await answer(t, await login.submit());
  assertUnavailablePage(t, submitted, 'store');
});

test.serial('Redis down: /readyz is 503 with checks.store "down", /healthz stays 200', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await redisDown();
  const ready = await probe(onRedis.server.issuer, '/readyz');
  t.is(ready.status, 503);
  t.is(ready.json.checks?.store, 'down');
  t.is(ready.json.checks?.database, 'up');
  const health = await probe(onRedis.server.issuer, '/healthz');
  t.is(health.status, 200);
});

test.serial('Redis hung (frozen, connections open): requests answer 503 instead of waiting forever, and recover on thaw', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, service, server } = onRedis;
  await redisUp();
  await waitUntilReady(t, server.issuer);
  redis.freeze();
  try {
    const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
    assertUnavailableJson(t, await answer(t, credentials), 'store');
    const ready = await probe(server.issuer, '/readyz');
    t.is(ready.status, 503);
    t.is(ready.json.checks?.store, 'down');
  } finally {
    redis.thaw();
  }
  await waitUntilReady(t, server.issuer);
  const after = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
  t.truthy((await oauth.processClientCredentialsResponse(as, service.client, after)).access_token);
});

test.serial('Redis full (maxmemory reached, noeviction): token requests answer 503 naming the store, /readyz says so; with room again the same refresh token works', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa, service, server } = onRedis;
  await redisUp();
  await waitUntilReady(t, server.issuer);
  const { tokens } = await signInAndExchange(onRedis);
  const control = new Redis(redis.url);
  control.on('error', () => {});
  try {
    // A full Redis still answers PING: only a write tells.
    await control.config('SET', 'maxmemory', '1');
    const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
    assertUnavailableJson(t, await answer(t, credentials), 'store');
    const refresh = await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, withTimeout());
    assertUnavailableJson(t, await answer(t, refresh), 'store');
    const ready = await probe(server.issuer, '/readyz');
    t.is(ready.status, 503);
    t.is(ready.json.checks?.store, 'down');
  } finally {
    await control.config('SET', 'maxmemory', '0');
    control.disconnect();
  }
  await waitUntilReady(t, server.issuer);
  const refreshed = await oauth.processRefreshTokenResponse(as, spa, await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, withTimeout()));
  t.truthy(refreshed.access_token, 'nothing was lost');
});

test.serial('Redis full: replacing a record is refused like any write, and the record it would replace is still there', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await redisUp();
  const store = new RedisStore({ connection: { url: redis.url }, prefix: `full-${process.pid}:` });
  const control = new Redis(redis.url);
  control.on('error', () => {});
  try {
    await store.put('grant', 'kept', 60);
    await control.config('SET', 'maxmemory', '1');
    // Redis 7 lets a script without flags write past maxmemory once it has begun (its DEL frees memory first).
    await t.throwsAsync(store.put('grant', 'replacement', 60), { instanceOf: DependencyUnavailable });
    await control.config('SET', 'maxmemory', '0');
    t.is((await store.get('grant'))?.value, 'kept');
  } finally {
    await control.config('SET', 'maxmemory', '0');
    await store.delete(['grant']);
    await store.close();
    control.disconnect();
  }
});

test.serial('Redis full when a signed-in browser comes back from a consent: 503, and the session it holds survives (the engine deleted it before writing its successor)', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { server } = onRedis;
  await redisUp();
  await waitUntilReady(t, server.issuer);
  const { as, agent, client, tokens } = await signInToNewSpa(server);
  const second = await registerSpa(server);
  const request = await authorizationRequest(as, second.client.client_id);
  const { response, url } = await agent.follow(request.url);
  const page = await response.text();
  const consent = await agent.request(new URL(`${url.pathname}/confirm`, url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: formField(page, 'csrf') }).toString(),
  });
  const resume = new URL(consent.headers.get('location')!, url);
  const control = new Redis(redis.url);
  control.on('error', () => {});
  try {
    await control.config('SET', 'maxmemory', '1');
    t.is((await answer(t, await agent.request(resume))).status, 503);
  } finally {
    await control.config('SET', 'maxmemory', '0');
    control.disconnect();
  }
  await waitUntilReady(t, server.issuer);
  const silent = await agent.follow((await authorizationRequest(as, client.client_id, { prompt: 'none' })).url);
  t.truthy(silent.url.searchParams.get('code'), `still signed in (${silent.url.searchParams.get('error')})`);
  const refreshed = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, withTimeout());
  t.truthy((await oauth.processRefreshTokenResponse(as, client, refreshed)).access_token, 'the app\'s tokens, which end with the session, still work');
});

test.serial('Redis back on the same port: everything works again without restarting Gatehouse', async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, spa, service, server } = onRedis;
  await redisDown();
  t.is((await probe(server.issuer, '/readyz')).status, 503);
  await redisUp();
  await waitUntilReady(t, server.issuer);

  const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
  t.truthy((await oauth.processClientCredentialsResponse(as, service.client, credentials)).access_token);
  // The restarted Redis kept nothing, so sessions and tokens start over: a full sign-in and a refresh work.
  const { tokens } = await signInAndExchange(onRedis);
  const refreshed = await oauth.processRefreshTokenResponse(as, spa, await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, withTimeout()));
  t.truthy(refreshed.access_token);
  t.not(refreshed.refresh_token, tokens.refresh_token);
});

// ---------------------------------------------------------------------------------------------
// PostgreSQL: Gatehouse reaches its database through a proxy that the test cuts and restores. With
// DATABASE_URL the proxy forwards to that server (a fresh database on it); without it, to the
// embedded database, which this test process hosts on its Unix socket.

const databaseKind = process.env.DATABASE_URL ? 'PostgreSQL' : 'embedded PostgreSQL';
let database: TestDatabase;
let embedded: EmbeddedPostgres | undefined;
let proxy: CuttableProxy;
let onDatabase: Fixture;

test.before(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  database = await createTestDatabase();
  let proxiedUrl: URL;
  if (database.databaseUrl) {
    const real = new URL(database.databaseUrl);
    proxy = new CuttableProxy({ host: real.hostname, port: Number(real.port || 5432) });
    await proxy.start();
    proxiedUrl = new URL(real);
    proxiedUrl.hostname = '127.0.0.1';
  } else {
    embedded = await openEmbeddedPostgres(database.dataDir);
    proxy = new CuttableProxy({ path: path.join(database.dataDir, '.s.PGSQL.5432') });
    await proxy.start();
    proxiedUrl = new URL('postgresql://postgres@127.0.0.1/postgres');
  }
  proxiedUrl.port = String(proxy.port);
  onDatabase = await prepare(await startTestServer({ DATABASE_URL: proxiedUrl.toString() }));
});

test.after.always(async (t) => {
  t.timeout(SETUP_TIMEOUT_MS);
  // Closing needs the database (the pool says goodbye); a cut or frozen proxy would only slow that down.
  proxy?.thaw();
  await proxy?.restore().catch(() => {});
  await onDatabase?.server.close();
  await proxy?.close();
  await embedded?.close();
  await database?.drop();
});

test.serial(`${databaseKind} down: submitting the sign-in form answers a 503 page saying the database is unavailable`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await proxy.restore().catch(() => {});
  const login = await openLoginPage(onDatabase);
  await proxy.cut();
  try {
    const submitted = await answer(t, await login.submit());
    assertUnavailablePage(t, submitted, 'database');
  } finally {
    await proxy.restore();
  }
});

test.serial(`${databaseKind} down: a client lookup answers 503 naming the database — a page at the authorization endpoint, JSON at the token endpoint`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as } = onDatabase;
  // Clients not read yet: one read recently is served from memory (test/client-cache.test.ts).
  const { client: spa } = await registerSpa(onDatabase.server);
  const service = await registerConfidential(onDatabase.server, 'service');
  await proxy.cut();
  try {
    const request = await authorizationRequest(as, spa.client_id);
    const page = await answer(t, await new UserAgent().request(request.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
    // The client (and so its redirect URIs) cannot be read: nothing is trusted, so no redirect.
    assertUnavailablePage(t, page, 'database');

    const credentials = await answer(t, await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout()));
    assertUnavailableJson(t, credentials, 'database');
  } finally {
    await proxy.restore();
  }
});

test.serial(`${databaseKind} down: asking for a password reset link or a new verification link answers a 503 page, never "check your email"`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await proxy.restore().catch(() => {});
  const { issuer } = onDatabase.server;
  const agent = new UserAgent();
  // The forms as a person has them, opened while the database answers.
  const forgot = await (await agent.request(`${issuer}/password/forgot`)).text();
  const invalidLink = await (await agent.request(`${issuer}/verify-email?token=no-such-link`)).text();
  await proxy.cut();
  try {
    const asked = (path: string, html: string) => agent.request(`${issuer}${path}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      body: new URLSearchParams({ csrf: formField(html, 'csrf'), email: 'someone@example.com' }),
    });
    assertUnavailablePage(t, await answer(t, await asked('/password/forgot', forgot)), 'database');
    assertUnavailablePage(t, await answer(t, await asked('/verify-email/resend', invalidLink)), 'database');
  } finally {
    await proxy.restore();
  }
});

test.serial(`${databaseKind} down: /readyz is 503 with checks.database "down", /healthz stays 200`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  await proxy.cut();
  try {
    const ready = await probe(onDatabase.server.issuer, '/readyz');
    t.is(ready.status, 503);
    t.is(ready.json.checks?.database, 'down');
    t.is(ready.json.checks?.store, 'up');
    t.is((await probe(onDatabase.server.issuer, '/healthz')).status, 200);
  } finally {
    await proxy.restore();
  }
});

test.serial(`${databaseKind} hung (frozen, connections open): requests answer 503 naming the database instead of waiting forever, and recover on thaw`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, server } = onDatabase;
  await proxy.restore().catch(() => {});
  // A client not read yet, so that the token request must query the database (see above).
  const service = await registerConfidential(server, 'service');
  // Ready first: the pool then holds an open connection, so the token request's query is sent on it
  // and meets the query timeout (a new connection would meet the connection timeout instead).
  await waitUntilReady(t, server.issuer);
  proxy.freeze();
  try {
    // Bounded by openDatabase's default query timeout (10 s), well inside REQUEST_TIMEOUT_MS.
    const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
    assertUnavailableJson(t, await answer(t, credentials.clone()), 'database');
    await assertClientLibraryRefuses(t, oauth.processClientCredentialsResponse(as, service.client, credentials));
    const asked = Date.now();
    const ready = await probe(server.issuer, '/readyz');
    t.true(Date.now() - asked < READY_CHECK_TIMEOUT_MS + 1500, `/readyz answers within its own timeout, not the query's: ${Date.now() - asked} ms`);
    t.is(ready.status, 503);
    t.is(ready.json.checks?.database, 'down');
    t.is(ready.json.checks?.store, 'up');
  } finally {
    proxy.thaw();
  }
  await waitUntilReady(t, server.issuer);
  const after = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
  t.truthy((await oauth.processClientCredentialsResponse(as, service.client, after)).access_token);
});

test.serial(`${databaseKind} back: Gatehouse uses it again by itself`, async (t) => {
  t.timeout(TEST_TIMEOUT_MS);
  const { as, service, server } = onDatabase;
  await proxy.cut();
  t.is((await probe(server.issuer, '/readyz')).status, 503);
  await proxy.restore();
  await waitUntilReady(t, server.issuer);
  const credentials = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, withTimeout());
  t.truthy((await oauth.processClientCredentialsResponse(as, service.client, credentials)).access_token);
  const { tokens } = await signInAndExchange(onDatabase);
  t.truthy(tokens.access_token);
});
