// Signing keys in the database, rotated in stages, as relying parties and APIs see them through the JWKS: a new
// key is published (by every instance sharing the database) before it signs anything; tokens from before and
// after a rotation both verify; the old key leaves the JWKS only once every token it signed has expired. A short
// configuration (a 4 s delay, 8 s tokens) stands for the hour and the minutes of a real one.
import test from 'ava';
import { SignJWT, createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { POST_LOGOUT_REDIRECT_URI, authorizationRequest, discover, insecure, signInToNewSpa } from './helpers/oauth.ts';
import { formAction, formField } from './helpers/user-agent.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { until } from './helpers/wait.ts';
import { generateEncryptionKey, generateJwks } from '../src/keys/secrets.ts';
import type { PrivateJwks } from '../src/keys/secrets.ts';
import { keyIdOf } from '../src/keys/sealed.ts';

const DELAY_SECONDS = 4;
const TOKEN_SECONDS = 8;

/** Two instances sharing the database (and, on Redis, the store), as behind a load balancer. */
let serverA: TestServer;
let serverB: TestServer;
test.before(async (t) => {
  t.timeout(120_000);
  const shared = {
    KEY_ROTATION_DELAY: String(DELAY_SECONDS), KEY_ROTATION_INTERVAL: '0',
    ACCESS_TOKEN_TTL: String(TOKEN_SECONDS), ID_TOKEN_TTL: String(TOKEN_SECONDS),
    ENCRYPTION_KEYS: generateEncryptionKey(), STORE_PREFIX: `gatehouse-rotation-${Date.now()}:`,
  };
  serverA = await startTestServer(shared);
  serverB = await startTestServer({ ...shared, DATABASE_URL: serverA.runtime.database.connectionString });
});
test.after.always(async () => {
  await serverB?.close();
  await serverA?.close();
});

async function publishedKids(server: TestServer): Promise<{ kids: string[]; cacheControl: string | null }> {
  const response = await fetch(`${server.issuer}/jwks`);
  const body = await response.json() as { keys: Array<{ kid: string; d?: string }> };
  if (body.keys.some((key) => key.d)) throw new Error('the JWKS published a private key');
  return { kids: body.keys.map((key) => key.kid), cacheControl: response.headers.get('cache-control') };
}

/** The engine's keys at their next change on this instance. */
function nextChange(server: TestServer): Promise<string[]> {
  return new Promise((resolve) => server.runtime.signingKeys.onChange((jwks) => resolve(jwks.keys.map((key) => key.kid!))));
}

async function serviceTokenFor(server: TestServer, api: string): Promise<string> {
  const as = await discover(server);
  const metadata = await server.runtime.clients.create({ name: 'Service', type: 'service', apiScopes: ['orders:read'] });
  const response = await oauth.clientCredentialsGrantRequest(as, { client_id: metadata.client_id }, oauth.ClientSecretBasic(String(metadata.client_secret)), new URLSearchParams({ resource: api, scope: 'orders:read' }), insecure);
  return (await oauth.processClientCredentialsResponse(as, { client_id: metadata.client_id }, response)).access_token;
}

async function verifiesAt(server: TestServer, token: string, audience: string) {
  // A fresh key set each time, as an API whose cache has expired fetches it. (Each test instance has an issuer
  // of its own, its address: instances of one deployment share theirs.)
  return jwtVerify(token, createRemoteJWKSet(new URL(`${server.issuer}/jwks`)), { issuer: [serverA.issuer, serverB.issuer], audience });
}

async function introspect(server: TestServer, token: string) {
  const as = await discover(server);
  const metadata = await server.runtime.clients.create({ name: 'Orders API', type: 'service', resourceServer: API });
  const response = await oauth.introspectionRequest(as, { client_id: metadata.client_id }, oauth.ClientSecretBasic(String(metadata.client_secret)), token, insecure);
  return oauth.processIntrospectionResponse(as, { client_id: metadata.client_id }, response);
}

const API = 'http://127.0.0.1:9801/orders';

test.serial('the keys live in the database, private halves sealed: a second instance signs with and publishes the same ones, which a development database took from keys/', async (t) => {
  const a = await publishedKids(serverA);
  t.deepEqual((await publishedKids(serverB)).kids, a.kids);
  t.is(a.kids.length, 3);
  // A development database starts with the keys generated into keys/, so tokens signed before the upgrade still verify.
  const seed = await serverA.runtime.secrets.firstSigningKeys();
  t.deepEqual(a.kids.sort(), seed.keys.map((key) => key.kid).sort());
  // Sealed: a compact JWE (dir, A256GCM) that holds no private part in the clear; the public half beside it.
  for (const row of await serverA.runtime.database.prisma.signingKey.findMany()) {
    const privateKey = seed.keys.find((key) => key.kid === row.kid)!;
    t.is(row.sealedPrivateJwk.split('.').length, 5);
    t.false(row.sealedPrivateJwk.includes(privateKey.d!));
    t.false('d' in (row.publicJwk as object));
  }
  const listed = await serverA.runtime.signingKeys.list();
  t.deepEqual(listed.map((key) => [key.alg, key.state]).sort(), [['ES256', 'signing'], ['EdDSA', 'signing'], ['RS256', 'signing']]);
  // The JWKS may be cached a quarter of the rotation delay.
  t.is(a.cacheControl, `public, max-age=${DELAY_SECONDS / 4}`);
});

test.serial('a rotation publishes new keys on every instance before they sign; tokens from before and after both verify; the old keys leave the JWKS once their last tokens expired', async (t) => {
  t.timeout(60_000);
  await serverA.runtime.apis.create({ identifier: API, name: 'Orders', scopes: [{ name: 'orders:read', description: 'See your orders' }] });
  const signedInBefore = await signInToNewSpa(serverA);
  const before = { access: await serviceTokenFor(serverA, API), id: signedInBefore.tokens };
  const oldKids = (await publishedKids(serverA)).kids;
  const oldAccessKid = decodeProtectedHeader(before.access).kid!;
  t.true(oldKids.includes(oldAccessKid));

  const publishedOnB = nextChange(serverB);
  const created = await serverA.runtime.signingKeys.rotate({ type: 'admin', id: 'cli:test' });
  const signsFrom = created[0]!.signsFrom.getTime();
  t.deepEqual(created.map((key) => key.alg).sort(), ['ES256', 'EdDSA', 'RS256']);
  const newKids = created.map((key) => key.kid);

  // Published at once here, and on the other instance (told through the store, or at its next read) well before they sign.
  t.deepEqual((await publishedKids(serverA)).kids.sort(), [...oldKids, ...newKids].sort());
  await publishedOnB;
  t.true(Date.now() < signsFrom, 'the other instance publishes the new keys before they sign');
  t.deepEqual((await publishedKids(serverB)).kids.sort(), [...oldKids, ...newKids].sort());
  // Nothing is signed with them yet.
  const during = await serviceTokenFor(serverB, API);
  t.is(decodeProtectedHeader(during).kid, oldAccessKid);
  t.deepEqual((await serverA.runtime.signingKeys.list()).filter((key) => key.state === 'next').map((key) => key.kid).sort(), [...newKids].sort());

  // Another rotation waits for this one.
  await t.throwsAsync(serverB.runtime.signingKeys.rotate({ type: 'admin', id: 'cli:test' }), { message: /a rotation is under way/ });

  const switchedOnA = nextChange(serverA);
  const switchedOnB = nextChange(serverB);
  await Promise.all([switchedOnA, switchedOnB]);
  t.true(Date.now() >= signsFrom);
  const after = { access: await serviceTokenFor(serverA, API), id: (await signInToNewSpa(serverA)).tokens };
  t.true(newKids.includes(decodeProtectedHeader(after.access).kid!), 'the new ES256 key signs access tokens');
  t.true(newKids.includes(decodeProtectedHeader(await serviceTokenFor(serverB, API)).kid!), 'on every instance');
  t.true(newKids.includes(decodeProtectedHeader(after.id.id_token!).kid!), 'the new RS256 key signs ID tokens');

  // Before and after: both verify with the JWKS of either instance, and are active at introspection.
  for (const server of [serverA, serverB]) {
    await t.notThrowsAsync(verifiesAt(server, before.access, API));
    await t.notThrowsAsync(verifiesAt(server, after.access, API));
    await t.notThrowsAsync(verifiesAt(server, before.id.id_token!, String(decodeJwtPayload(before.id.id_token!).aud)));
  }
  t.true((await introspect(serverA, before.access)).active);
  t.true((await introspect(serverA, after.access)).active);
  const states = new Map((await serverA.runtime.signingKeys.list()).map((key) => [key.kid, key]));
  for (const kid of oldKids) t.is(states.get(kid)!.state, 'retired');
  for (const kid of newKids) t.is(states.get(kid)!.state, 'signing');
  // The old keys stay published until every token they could have signed (until the switch) has expired.
  const leavesAt = states.get(oldAccessKid)!.expiresAt!.getTime();
  t.is(leavesAt, signsFrom + TOKEN_SECONDS * 1000);
  const lastOldToken = Math.max(...[before.access, before.id.id_token!, during].map((token) => decodeJwtPayload(token).exp! * 1000));
  t.true(leavesAt >= lastOldToken);

  await Promise.all([nextChange(serverA), nextChange(serverB)]);
  t.true(Date.now() >= leavesAt);
  t.deepEqual((await publishedKids(serverA)).kids.sort(), [...newKids].sort());
  t.deepEqual((await publishedKids(serverB)).kids.sort(), [...newKids].sort());
  t.deepEqual((await serverA.runtime.signingKeys.list()).filter((key) => oldKids.includes(key.kid)).map((key) => key.state), ['expired', 'expired', 'expired']);
  await t.notThrowsAsync(verifiesAt(serverA, await serviceTokenFor(serverA, API), API));
  await t.throwsAsync(verifiesAt(serverA, before.access, API), { code: 'ERR_JWKS_NO_MATCHING_KEY' });

  // The application sends its sign-in's ID token back as a hint, as it may for as long as the session lasts, though its
  // key has left: a silent sign-in (prompt=none) goes through...
  const silent = await authorizationRequest(await discover(serverA), signedInBefore.client.client_id, { prompt: 'none', id_token_hint: before.id.id_token! });
  const { url: silentCallback } = await signedInBefore.agent.follow(silent.url);
  t.truthy(silentCallback.searchParams.get('code'), silentCallback.href);
  // ...while a hint signed by a key Gatehouse never had is refused, as before any rotation.
  const forged = await new SignJWT({ sub: signedInBefore.user.id, aud: signedInBefore.client.client_id })
    .setProtectedHeader({ alg: 'RS256', kid: 'not-one-of-ours' }).setIssuer(serverA.issuer).setIssuedAt().setExpirationTime('1h')
    .sign((await generateKeyPair('RS256')).privateKey);
  const refused = new URL(`${serverA.issuer}/session/end`);
  refused.search = new URLSearchParams({ id_token_hint: forged, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI }).toString();
  t.is((await signedInBefore.agent.request(refused)).status, 400);
  // And it signs out: the person is asked, then sent back to the application.
  const logout = new URL(`${serverA.issuer}/session/end`);
  logout.search = new URLSearchParams({ id_token_hint: before.id.id_token!, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI, state: 'bye' }).toString();
  const { response: asked } = await signedInBefore.agent.follow(logout);
  t.is(asked.status, 200);
  const question = await asked.text();
  const { url: back } = await signedInBefore.agent.submit(formAction(question, /session\/end\/confirm/), { xsrf: formField(question, 'xsrf'), logout: 'yes' });
  t.is(`${back.origin}${back.pathname}`, POST_LOGOUT_REDIRECT_URI);
  t.is(back.searchParams.get('state'), 'bye');
  t.is(signedInBefore.agent.cookie('_session'), undefined, 'signed out');
  // Signed out now: the hint is still read (prompt=none answers login_required)... until its key expired longer ago
  // than a session lasts (SESSION_TTL, 14 days here): then the hint is refused as any unknown one.
  const silentError = async () => {
    const request = await authorizationRequest(await discover(serverA), signedInBefore.client.client_id, { prompt: 'none', id_token_hint: before.id.id_token! });
    return (await signedInBefore.agent.follow(request.url)).url.searchParams.get('error');
  };
  t.is(await silentError(), 'login_required');
  const hintKid = decodeProtectedHeader(before.id.id_token!).kid!;
  await serverA.runtime.database.prisma.signingKey.update({ where: { kid: hintKid }, data: { expiresAt: new Date(Date.now() - 15 * 24 * 3600 * 1000) } });
  t.is(await silentError(), 'invalid_request');

  const [audited] = await serverA.runtime.auditTrail.list({ action: 'keys.rotated', limit: 10 });
  t.like(audited, { actorType: 'admin', actorId: 'cli:test', outcome: 'success' });
});

test.serial('an instance whose ENCRYPTION_KEYS do not open the database\'s keys refuses to start, saying so', async (t) => {
  const error = await t.throwsAsync(startTestServer({ ENCRYPTION_KEYS: generateEncryptionKey(), DATABASE_URL: serverA.runtime.database.connectionString }));
  t.regex(error!.message, /does not open with ENCRYPTION_KEYS: every instance must share them/);
});

test('after a new ENCRYPTION_KEYS key is put in front, the signing keys are sealed anew under it, so the old one can go', async (t) => {
  const oldKey = generateEncryptionKey();
  const newKey = generateEncryptionKey();
  const first = await startTestServer({ ENCRYPTION_KEYS: oldKey });
  t.teardown(() => first.close());
  const sealedUnder = async () => (await first.runtime.database.prisma.signingKey.findMany())
    .map((row) => decodeProtectedHeader(row.sealedPrivateJwk).kid);
  t.deepEqual(await sealedUnder(), Array(3).fill(keyIdOf(Buffer.from(oldKey, 'base64url'))));
  const restarted = await startTestServer({ ENCRYPTION_KEYS: `${newKey},${oldKey}`, DATABASE_URL: first.runtime.database.connectionString });
  t.teardown(() => restarted.close());
  t.deepEqual(await sealedUnder(), Array(3).fill(keyIdOf(Buffer.from(newKey, 'base64url'))));
  const withoutOld = await startTestServer({ ENCRYPTION_KEYS: newKey, DATABASE_URL: first.runtime.database.connectionString });
  t.teardown(() => withoutOld.close());
  t.deepEqual((await publishedKids(withoutOld)).kids.sort(), (await publishedKids(first)).kids.sort());
});

test('fixed keys (JWKS) are published as given and never rotate', async (t) => {
  const jwks: PrivateJwks = await generateJwks();
  const server = await startTestServer({ JWKS: JSON.stringify(jwks) });
  t.teardown(() => server.close());
  t.deepEqual((await publishedKids(server)).kids, jwks.keys.map((key) => key.kid));
  t.deepEqual((await server.runtime.signingKeys.list()).map((key) => key.state), ['configured', 'configured', 'configured']);
  await t.throwsAsync(server.runtime.signingKeys.rotate({ type: 'admin' }), { message: /set by JWKS or JWKS_FILE/ });
});

test('fixed keys without a kid get their RFC 7638 thumbprint, as the engine names them: Gatehouse\'s own checks (introspection) find the key its JWTs name', async (t) => {
  const jwks: PrivateJwks = await generateJwks();
  for (const key of jwks.keys) delete key.kid;
  const server = await startTestServer({ JWKS: JSON.stringify(jwks) });
  t.teardown(() => server.close());
  const api = 'http://127.0.0.1:9802/orders';
  await server.runtime.apis.create({ identifier: api, name: 'Orders', scopes: [{ name: 'orders:read' }] });
  const as = await discover(server);
  const service = await server.runtime.clients.create({ name: 'Service', type: 'service', apiScopes: ['orders:read'] });
  const token = (await oauth.processClientCredentialsResponse(as, { client_id: service.client_id }, await oauth.clientCredentialsGrantRequest(as, { client_id: service.client_id },
    oauth.ClientSecretBasic(String(service.client_secret)), new URLSearchParams({ resource: api, scope: 'orders:read' }), insecure))).access_token;
  t.true((await publishedKids(server)).kids.includes(String(decodeProtectedHeader(token).kid)));
  await t.notThrowsAsync(jwtVerify(token, createRemoteJWKSet(new URL(as.jwks_uri!)), { issuer: as.issuer, audience: api }));
  const resourceServer = await server.runtime.clients.create({ name: 'Orders API', type: 'service', resourceServer: api });
  const answer = await oauth.processIntrospectionResponse(as, { client_id: resourceServer.client_id }, await oauth.introspectionRequest(as, { client_id: resourceServer.client_id },
    oauth.ClientSecretBasic(String(resourceServer.client_secret)), token, insecure));
  t.true(answer.active);
});

test('on a schedule, one of the instances sharing a database rotates, once, and each publishes the new keys', async (t) => {
  t.timeout(60_000);
  // The new keys stay next for 10 s: time enough for a loaded machine to see both instances publish them.
  const shared = { KEY_ROTATION_DELAY: '10', KEY_ROTATION_INTERVAL: '2', ENCRYPTION_KEYS: generateEncryptionKey() };
  const first = await startTestServer(shared);
  t.teardown(() => first.close());
  const second = await startTestServer({ ...shared, DATABASE_URL: first.runtime.database.connectionString });
  t.teardown(() => second.close());
  // Whenever the rotation comes (on a slow start, before the second instance is up): both publish the new keys.
  const published = async (server: TestServer) => (await publishedKids(server)).kids.length >= 6;
  await until(async () => await published(first) && await published(second), 'both instances to publish a rotation');
  const keys = await first.runtime.signingKeys.list();
  t.deepEqual(keys.map((key) => key.state).sort(), ['next', 'next', 'next', 'signing', 'signing', 'signing'], 'one rotation, not one per instance');
  t.deepEqual((await publishedKids(second)).kids.sort(), keys.map((key) => key.kid).sort());
  const audited = await first.runtime.auditTrail.list({ action: 'keys.rotated', limit: 10 });
  t.is(audited.length, 1);
  t.like(audited[0], { actorType: 'system', detail: { scheduled: true } });
});

test('when an API\'s tokens are made to last longer during a rotation, the key it replaces stays published until the longer tokens it signed have expired', async (t) => {
  const shared = { KEY_ROTATION_DELAY: '600', KEY_ROTATION_INTERVAL: '0', ACCESS_TOKEN_TTL: '60', ID_TOKEN_TTL: '60', ENCRYPTION_KEYS: generateEncryptionKey() };
  const server = await startTestServer(shared);
  t.teardown(() => server.close());
  await server.runtime.apis.create({ identifier: API, name: 'Orders', scopes: [{ name: 'orders:read' }], accessTokenTtl: 120 });
  const [next] = await server.runtime.signingKeys.rotate({ type: 'admin', id: 'cli:test' });
  const retiringKey = async (kid: string) => (await server.runtime.signingKeys.list()).find((key) => key.kid === kid)!;
  const longer = await serviceTokenFor(server, API);
  const oldKid = decodeProtectedHeader(longer).kid!;
  t.is((await retiringKey(oldKid)).expiresAt!.getTime(), next!.signsFrom.getTime() + 120_000, 'as planned at the rotation');

  await server.runtime.apis.update(API, { accessTokenTtl: 7200 });
  // Signed by the retiring key still (the new one signs in ten minutes), for two hours.
  const longest = await serviceTokenFor(server, API);
  t.is(decodeProtectedHeader(longest).kid, oldKid);
  // Read by an instance starting now (or by any at its next read of the keys).
  const another = await startTestServer({ ...shared, DATABASE_URL: server.runtime.database.connectionString });
  t.teardown(() => another.close());
  const expiresAt = (await retiringKey(oldKid)).expiresAt!.getTime();
  t.is(expiresAt, next!.signsFrom.getTime() + 7_200_000);
  t.true(expiresAt >= decodeJwtPayload(longest).exp! * 1000);
});

test.serial('when an API\'s tokens are made to last less before a rotation, the key it replaces stays published as long as the longer tokens it signed need', async (t) => {
  const identifier = 'http://127.0.0.1:9803/orders';
  const server = await startTestServer({ KEY_ROTATION_DELAY: '600', KEY_ROTATION_INTERVAL: '0', ACCESS_TOKEN_TTL: '60', ID_TOKEN_TTL: '60', ENCRYPTION_KEYS: generateEncryptionKey() });
  t.teardown(() => server.close());
  await server.runtime.apis.create({ identifier, name: 'Orders', scopes: [{ name: 'orders:read' }], accessTokenTtl: 7200 });
  // The keys are read again (each instance does so every refresh interval, and at each announcement).
  await server.runtime.signingKeys.refresh();
  const longLived = await serviceTokenFor(server, identifier);
  const kid = decodeProtectedHeader(longLived).kid!;
  await server.runtime.apis.update(identifier, { accessTokenTtl: 120 });

  const [next] = await server.runtime.signingKeys.rotate({ type: 'admin', id: 'cli:test' });
  const retiring = (await server.runtime.signingKeys.list()).find((key) => key.kid === kid)!;
  t.is(retiring.expiresAt!.getTime(), next!.signsFrom.getTime() + 7_200_000);
  t.true(retiring.expiresAt!.getTime() >= decodeJwtPayload(longLived).exp! * 1000, 'published while the token it signed lives');
});

function decodeJwtPayload(token: string): { exp?: number; aud?: string | string[] } {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp?: number; aud?: string | string[] };
}
