// Several Gatehouse instances behind one issuer share PostgreSQL and Redis: a sign-in begun on one goes on
// on the others, its code is exchanged on the second and its refresh token rotated on the third; keys,
// cookie secrets, sessions, grants, rate limits and client changes hold across them. (On the embedded
// defaults the store is in-process, so the instances share a redis-server of the test's own.)
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { generateEncryptionKey } from '../src/keys/secrets.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, registerSpa } from './helpers/oauth.ts';
import { ThrowawayRedisServer, eventually } from './helpers/redis.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';

let instances: TestServer[] = [];
let redis: ThrowawayRedisServer | undefined;

test.before(async (t) => {
  t.timeout(180_000);
  if (!process.env.REDIS_URL) {
    redis = await ThrowawayRedisServer.start();
  }
  const shared = {
    COOKIE_SECRETS: 's'.repeat(40), ENCRYPTION_KEYS: generateEncryptionKey(), STORE_PREFIX: `gatehouse-instances-${Date.now()}:`,
    TOKEN_LIMIT_PER_CLIENT: '4/60', ...(redis ? { REDIS_URL: redis.url } : {}),
  };
  const first = await startTestServer(shared);
  // The others answer for the first one's issuer, as instances behind one load balancer do.
  const sharing = { ...shared, ISSUER: first.runtime.config.issuer, DATABASE_URL: first.runtime.database.connectionString };
  instances = [first, await startTestServer(sharing), await startTestServer(sharing)];
});
test.after.always(async () => {
  for (const instance of instances.reverse()) await instance.close();
  await redis?.stop();
});

/** The same URL, answered by another instance (its own port): what a load balancer does. */
function on(instance: TestServer, url: URL | string): URL {
  const moved = new URL(url);
  const own = new URL(instance.issuer);
  moved.host = own.host;
  return moved;
}

test.serial('signed in across three instances: login on one, consent on another, the code exchanged on the second and refreshed on the third', async (t) => {
  const [a, b, c] = instances as [TestServer, TestServer, TestServer];
  const as = await discover(a);
  const { client } = await registerSpa(a);
  const user = await createUser(a);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);

  // The login page from A; the form posted to B (its cookie, signed by A, and the interaction, stored by A).
  const login = await agent.follow(request.url);
  const loginPage = await login.response.text();
  t.regex(loginPage, /name="password"/);
  const submitted = await agent.submit(on(b, new URL(`${login.url.pathname}/login`, login.url)), {
    csrf: formField(loginPage, 'csrf'), email: user.email, password: PASSWORD,
  });
  // B sends the browser back to the issuer (A's address): C answers it, with the consent page; A takes the consent.
  const consent = await agent.follow(on(c, submitted.url));
  const consentPage = await consent.response.text();
  t.regex(consentPage, /\/confirm"/);
  const confirmed = await agent.submit(on(a, new URL(`${consent.url.pathname}/confirm`, consent.url)), { csrf: formField(consentPage, 'csrf') });
  const resumed = confirmed.url.href.startsWith(REDIRECT_URI) ? confirmed : await agent.follow(on(b, confirmed.url));
  const parameters = oauth.validateAuthResponse(as, client, resumed.url, request.state);

  const exchanged = await oauth.authorizationCodeGrantRequest({ ...as, token_endpoint: `${b.issuer}/token` }, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, exchanged, { expectedNonce: request.nonce, requireIdToken: true });
  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest({ ...as, token_endpoint: `${c.issuer}/token` }, client, oauth.None(), tokens.refresh_token!, insecure));
  t.not(refreshed.refresh_token, tokens.refresh_token);

  // The new access token works on A; the rotated refresh token is spent everywhere (presented again on A, it revokes the grant).
  const userinfo = await oauth.userInfoRequest({ ...as, userinfo_endpoint: `${a.issuer}/me` }, client, refreshed.access_token, insecure);
  t.is(userinfo.status, 200);
  const reused = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(reused.status, 400);
  const afterReuse = await oauth.refreshTokenGrantRequest({ ...as, token_endpoint: `${b.issuer}/token` }, client, oauth.None(), refreshed.refresh_token!, insecure);
  t.is(afterReuse.status, 400, 'the grant was revoked on every instance');

  // The session lives in the store: C signs the person in again without a password.
  const silent = await authorizationRequest(as, client.client_id, { prompt: 'none' });
  const again = await agent.follow(on(c, silent.url));
  t.true(again.url.href.startsWith(REDIRECT_URI), again.url.href);
  t.truthy(again.url.searchParams.get('code'));
});

test.serial('every instance publishes the same keys; a client or an API changed on one is used by the others; a client’s rate limit is counted across them', async (t) => {
  const [a, b, c] = instances as [TestServer, TestServer, TestServer];
  const jwks = await Promise.all(instances.map(async (instance) => (await (await fetch(`${instance.issuer}/jwks`)).json()) as { keys: Array<{ kid: string }> }));
  t.deepEqual(jwks[1], jwks[0]);
  t.deepEqual(jwks[2], jwks[0]);

  const { metadata } = await registerSpa(a);
  const moved = 'http://127.0.0.1:4999/moved';
  const as = await discover(a);
  const authorize = async (instance: TestServer) => {
    const request = await authorizationRequest(as, metadata.client_id, { redirect_uri: moved });
    const response = await fetch(on(instance, request.url), { redirect: 'manual' });
    await response.body?.cancel();
    return response.status;
  };
  t.is(await authorize(b), 400, 'not yet registered');
  await c.runtime.clients.update(metadata.client_id, { redirectUris: [REDIRECT_URI, moved] });
  await eventually(async () => {
    if (await authorize(b) !== 303) throw new Error('B does not know the change yet');
  }, 10_000);
  t.pass('the change made on C reached B');

  // An API asked for on B before it exists, then registered on A: B issues tokens for it as soon as it is told.
  const api = `https://orders-${Date.now()}.example.com`;
  const orders = await a.runtime.clients.create({ name: 'Orders job', type: 'service' });
  const ordersClient: oauth.Client = { client_id: orders.client_id };
  const askB = async () => {
    const response = await oauth.clientCredentialsGrantRequest({ ...as, token_endpoint: `${b.issuer}/token` }, ordersClient, oauth.ClientSecretBasic(String(orders.client_secret)), new URLSearchParams({ resource: api, scope: 'orders:read' }), insecure);
    return { status: response.status, body: await response.json() as { error?: string } };
  };
  t.like(await askB(), { status: 400, body: { error: 'invalid_target' } });
  await a.runtime.apis.create({ identifier: api, name: 'Orders', scopes: [{ name: 'orders:read' }], accessTokenFormat: 'jwt' });
  await a.runtime.clients.update(orders.client_id, { apiScopes: ['orders:read'] });
  await eventually(async () => {
    const answer = await askB();
    if (answer.status !== 200) throw new Error(JSON.stringify(answer));
  }, 10_000);
  t.pass('the API registered on A is known to B');

  const { client, secret } = await registerConfidential(a, 'service');
  const statuses: number[] = [];
  for (const instance of [a, b, c, a, b]) {
    const response = await oauth.clientCredentialsGrantRequest({ ...as, token_endpoint: `${instance.issuer}/token` }, client, oauth.ClientSecretBasic(secret), new URLSearchParams(), insecure);
    await response.body?.cancel();
    statuses.push(response.status);
  }
  t.deepEqual(statuses, [200, 200, 200, 200, 429], 'four a minute for this client, wherever they come');
});
