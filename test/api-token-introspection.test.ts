// Introspection and revocation of access tokens for APIs, JWT and opaque alike (RFC 7662, RFC 7009), as a resource
// server sees them through oauth4webapi: a token for API A is active at A's resource server and inactive at B's; a
// revoked JWT is inactive at once; and revoking a grant — sign out everywhere, a refresh token used twice, a
// disabled account, a password change, withdrawn access — makes every token of it inactive whatever its format.
import test from 'ava';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, signIn } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent } from './helpers/user-agent.ts';

let server: TestServer;
let as: oauth.AuthorizationServer;
test.before(async () => {
  server = await startTestServer();
  as = await discover(server);
});
test.after.always(async () => {
  await server?.close();
});

interface Confidential {
  client: oauth.Client;
  authentication: oauth.ClientAuth;
}

let count = 0;
/** An API of the given format, its resource server (a service client that introspects for it), and a caller. */
async function apiWithResourceServer(accessTokenFormat: 'jwt' | 'opaque') {
  count += 1;
  const api = await server.runtime.apis.create({
    identifier: `https://orders-${count}-${crypto.randomUUID().slice(0, 8)}.example.com/api`, name: `Orders ${count}`,
    scopes: [{ name: 'orders:read' }], accessTokenFormat,
  });
  const resourceServer = await confidential({ name: 'Orders API server', type: 'service', resourceServer: api.identifier });
  const caller = await confidential({ name: 'Orders client', type: 'service', apiScopes: ['orders:read'] });
  return { api, resourceServer, caller };
}

async function confidential(input: Parameters<typeof server.runtime.clients.create>[0]): Promise<Confidential> {
  const metadata = await server.runtime.clients.create(input);
  return { client: { client_id: metadata.client_id }, authentication: oauth.ClientSecretBasic(String(metadata.client_secret)) };
}

async function tokenFor(caller: Confidential, resource: string): Promise<string> {
  const response = await oauth.clientCredentialsGrantRequest(as, caller.client, caller.authentication, new URLSearchParams({ resource, scope: 'orders:read' }), insecure);
  return (await oauth.processClientCredentialsResponse(as, caller.client, response)).access_token;
}

async function introspect(by: Confidential, token: string) {
  return oauth.processIntrospectionResponse(as, by.client, await oauth.introspectionRequest(as, by.client, by.authentication, token, insecure));
}

async function revoke(by: Confidential, token: string): Promise<void> {
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, by.client, by.authentication, token, insecure));
}

for (const format of ['jwt', 'opaque'] as const) {
  test(`${format}: a token for API A is active at A's resource server, with aud, scope, client_id, sub, exp and token_type, and inactive at B's`, async (t) => {
    const a = await apiWithResourceServer(format);
    const b = await apiWithResourceServer(format);
    const token = await tokenFor(a.caller, a.api.identifier);
    t.is(token.split('.').length === 3, format === 'jwt');
    const answer = await introspect(a.resourceServer, token);
    t.like(answer, { active: true, aud: a.api.identifier, scope: 'orders:read', client_id: a.caller.client.client_id, sub: a.caller.client.client_id, token_type: 'Bearer', iss: as.issuer });
    t.true(typeof answer.exp === 'number' && answer.exp > Date.now() / 1000);
    t.deepEqual(await introspect(b.resourceServer, token), { active: false });
    // A service that is no API's resource server cannot read it either; its own client can.
    t.deepEqual(await introspect(b.caller, token), { active: false });
    t.like(await introspect(a.caller, token), { active: true });
  });
}

for (const format of ['jwt', 'opaque'] as const) {
  test(`${format}: a DPoP-bound token is introspected as DPoP with its key's thumbprint (RFC 9449 §6.2), so an API never takes it as a bearer token`, async (t) => {
    const { api, resourceServer, caller } = await apiWithResourceServer(format);
    const key = await oauth.generateKeyPair('ES256');
    const DPoP = oauth.DPoP(caller.client, key);
    const parameters = new URLSearchParams({ resource: api.identifier, scope: 'orders:read' });
    const request = () => oauth.clientCredentialsGrantRequest(as, caller.client, caller.authentication, parameters, { ...insecure, DPoP });
    let response = await request();
    // The first answer may ask for the server's nonce; the library keeps it for the retry.
    if (oauth.isDPoPNonceError(await response.clone().json().catch(() => undefined))) response = await request();
    const { access_token: token, token_type: tokenType } = await oauth.processClientCredentialsResponse(as, caller.client, response);
    t.is(tokenType.toLowerCase(), 'dpop');
    const answer = await introspect(resourceServer, token);
    t.like(answer, { active: true, token_type: 'DPoP', cnf: { jkt: await calculateJwkThumbprint(await exportJWK(key.publicKey)) } });
  });
}

for (const format of ['jwt', 'opaque'] as const) {
  test(`${format}: a token for an API deleted since is inactive at introspection, its own client asking too`, async (t) => {
    const { api, caller } = await apiWithResourceServer(format);
    const token = await tokenFor(caller, api.identifier);
    t.true((await introspect(caller, token)).active);
    await server.runtime.apis.delete(api.identifier);
    t.false((await introspect(caller, token)).active);
  });
}

test('a revoked JWT is answered as an opaque token is: 200, no body, no content type', async (t) => {
  const { api, caller } = await apiWithResourceServer('jwt');
  const token = await tokenFor(caller, api.identifier);
  const response = await oauth.revocationRequest(as, caller.client, caller.authentication, token, insecure);
  t.is(response.status, 200);
  t.is(response.headers.get('content-type'), null);
  t.is(await response.text(), '');
});

test('every JWT of a revoked grant is inactive, whenever it was signed: one a refresh racing the revocation signed a moment after too', async (t) => {
  const jwts = server.runtime.jwtAccessTokens;
  const grantId = `grant-${crypto.randomUUID()}`;
  const now = Math.floor(Date.now() / 1000);
  const issuedAt = (iat: number) => ({ jti: crypto.randomUUID(), grant_id: grantId, client_id: 'client', iat, exp: iat + 600 });
  t.false(await jwts.isRevoked(issuedAt(now)));
  await jwts.grantRevoked(grantId);
  t.true(await jwts.isRevoked(issuedAt(now - 60)));
  t.true(await jwts.isRevoked(issuedAt(now + 2)), 'signed after the revocation');
});

test('a revoked JWT is inactive at once; only its own client may revoke it, and a forged one was never active', async (t) => {
  const { api, resourceServer, caller } = await apiWithResourceServer('jwt');
  const token = await tokenFor(caller, api.identifier);
  await revoke(resourceServer, token);
  t.like(await introspect(resourceServer, token), { active: true }, 'another client\'s revocation changes nothing');
  await revoke(caller, token);
  t.deepEqual(await introspect(resourceServer, token), { active: false });

  const other = await tokenFor(caller, api.identifier);
  const [header, payload] = other.split('.');
  const forged = `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), scope: 'orders:write' })).toString('base64url')}.${other.split('.')[2]}`;
  t.deepEqual(await introspect(resourceServer, forged), { active: false });
  t.like(await introspect(resourceServer, other), { active: true });
});

/** A person's sign-in to a web app with offline access for the API: its JWT and refresh token. */
async function personsTokens(api: { identifier: string }, person?: Awaited<ReturnType<typeof createUser>>) {
  const registered = await server.runtime.clients.create({ name: 'Orders app', type: 'web', redirectUris: [REDIRECT_URI], apiScopes: ['orders:read'] });
  const client: oauth.Client = { client_id: registered.client_id };
  const authentication = oauth.ClientSecretBasic(String(registered.client_secret));
  const user = person ?? await createUser(server);
  const role = `reader-${crypto.randomUUID().slice(0, 8)}`;
  await server.runtime.roles.create(role, undefined);
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  await server.runtime.flows.roleAssignment.add(user.email, role, { type: 'admin', id: 'test' });
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid offline_access orders:read', prompt: 'consent', resource: api.identifier });
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, authentication, oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier,
      { ...insecure, additionalParameters: { resource: api.identifier } }),
    { expectedNonce: request.nonce, requireIdToken: true });
  return { user, client, authentication, tokens };
}

const GRANT_ENDINGS = [
  ['the person signs out everywhere', async ({ user }: Awaited<ReturnType<typeof personsTokens>>) => {
    await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  }],
  ['a refresh token is used twice', async ({ client, authentication, tokens }: Awaited<ReturnType<typeof personsTokens>>) => {
    const refresh = () => oauth.refreshTokenGrantRequest(as, client, authentication, tokens.refresh_token!, insecure);
    await oauth.processRefreshTokenResponse(as, client, await refresh());
    await oauth.processRefreshTokenResponse(as, client, await refresh()).catch(() => undefined);
  }],
  ['the account is disabled', async ({ user }: Awaited<ReturnType<typeof personsTokens>>) => {
    await server.runtime.flows.accountAdministration.disable(user.email, { type: 'admin', id: 'test' });
  }],
  ['the person changes their password elsewhere', async ({ user }: Awaited<ReturnType<typeof personsTokens>>) => {
    const changed = await server.runtime.flows.passwordChange.change({ account: user, newPassword: `${PASSWORD} again`, keepSession: 'another-session' }, {});
    if (!changed.ok) throw new Error(`the password was not changed: ${changed.reason}`);
  }],
  ['the person withdraws the app\'s access', async ({ user, client }: Awaited<ReturnType<typeof personsTokens>>) => {
    const withdrawn = await server.runtime.flows.applicationAccess.withdraw(user, client.client_id, {});
    if (!withdrawn.ok) throw new Error(`access was not withdrawn: ${withdrawn.reason}`);
  }],
] as const;

for (const [how, end] of GRANT_ENDINGS) {
  test(`when ${how}, the person's JWT access token is inactive at once`, async (t) => {
    const { api, resourceServer } = await apiWithResourceServer('jwt');
    const person = await personsTokens(api);
    t.like(await introspect(resourceServer, person.tokens.access_token), { active: true, sub: person.user.id, aud: api.identifier });
    await end(person);
    t.deepEqual(await introspect(resourceServer, person.tokens.access_token), { active: false });
  });
}

test('an administrator disabling the account through the admin API makes its tokens inactive at once, JWT and opaque alike', async (t) => {
  const jwt = await apiWithResourceServer('jwt');
  const opaque = await apiWithResourceServer('opaque');
  const person = await createUser(server);
  const forJwt = await personsTokens(jwt.api, person);
  const forOpaque = await personsTokens(opaque.api, person);
  t.true((await introspect(jwt.resourceServer, forJwt.tokens.access_token)).active);
  t.true((await introspect(opaque.resourceServer, forOpaque.tokens.access_token)).active);

  const admin = `${server.issuer}/admin/v1`;
  const script = await confidential({ name: 'Admin script', type: 'service', apiScopes: ['admin:write'] });
  const adminToken = (await oauth.processClientCredentialsResponse(as, script.client,
    await oauth.clientCredentialsGrantRequest(as, script.client, script.authentication, new URLSearchParams({ resource: admin, scope: 'admin:write' }), insecure))).access_token;
  const disabled = await fetch(`${admin}/users/${person.id}/disable`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}` } });
  t.is(disabled.status, 200);

  t.deepEqual(await introspect(jwt.resourceServer, forJwt.tokens.access_token), { active: false });
  t.deepEqual(await introspect(opaque.resourceServer, forOpaque.tokens.access_token), { active: false });
});

test('a token that ends with its browser session is inactive once the session has run out, JWT and opaque alike', async (t) => {
  const sessionSeconds = 3;
  const short = await startTestServer({ SESSION_TTL: String(sessionSeconds) });
  t.teardown(() => short.close());
  const shortAs = await discover(short);
  const created = async (input: Parameters<typeof short.runtime.clients.create>[0]): Promise<Confidential> => {
    const metadata = await short.runtime.clients.create(input);
    return { client: { client_id: metadata.client_id }, authentication: oauth.ClientSecretBasic(String(metadata.client_secret)) };
  };
  const user = await createUser(short);
  const role = `reader-${crypto.randomUUID().slice(0, 8)}`;
  await short.runtime.roles.create(role, undefined);
  await short.runtime.flows.roleAssignment.add(user.email, role, { type: 'admin', id: 'test' });
  const apis = await Promise.all((['jwt', 'opaque'] as const).map(async (format) => {
    const api = await short.runtime.apis.create({ identifier: `https://${format}-${crypto.randomUUID().slice(0, 8)}.example.com/api`, name: format, scopes: [{ name: 'orders:read' }], accessTokenFormat: format });
    await short.runtime.roles.grant(role, api.identifier, ['orders:read']);
    return { format, api, resourceServer: await created({ name: `${format} API server`, type: 'service', resourceServer: api.identifier }) };
  }));
  // A web app without offline_access: its tokens end with the session.
  const app = await created({ name: 'Orders app', type: 'web', redirectUris: [REDIRECT_URI], apiScopes: ['orders:read'] });
  const agent = new UserAgent();
  const tokens: Array<{ format: string; accessToken: string; resourceServer: Confidential }> = [];
  for (const { format, api, resourceServer } of apis) {
    const request = await authorizationRequest(shortAs, app.client.client_id, { scope: 'openid orders:read', resource: api.identifier });
    const callback = await signIn(agent, request.url, { email: user.email, password: PASSWORD });
    const { access_token: accessToken } = await oauth.processAuthorizationCodeResponse(shortAs, app.client,
      await oauth.authorizationCodeGrantRequest(shortAs, app.client, app.authentication, oauth.validateAuthResponse(shortAs, app.client, callback, request.state), REDIRECT_URI,
        request.codeVerifier, { ...insecure, additionalParameters: { resource: api.identifier } }),
      { expectedNonce: request.nonce, requireIdToken: true });
    tokens.push({ format, accessToken, resourceServer });
  }
  const introspected = async ({ resourceServer, accessToken }: (typeof tokens)[number]) => oauth.processIntrospectionResponse(shortAs, resourceServer.client,
    await oauth.introspectionRequest(shortAs, resourceServer.client, resourceServer.authentication, accessToken, insecure));
  for (const token of tokens) t.true((await introspected(token)).active, token.format);
  // The session runs out; the access tokens (ACCESS_TOKEN_TTL) would not yet.
  await new Promise((resolve) => setTimeout(resolve, (sessionSeconds + 2) * 1000));
  for (const token of tokens) t.false((await introspected(token)).active, token.format);
});
