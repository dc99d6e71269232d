// APIs as resource servers see them (RFC 8707 resource indicators, RFC 9068 JWT access tokens): a token asked for
// one API is for that API alone and carries only its scopes; it verifies with jose against the JWKS and through
// Auth0's express-oauth2-jwt-bearer unchanged, and an API it was not issued for refuses it. Unknown APIs and
// scopes a client may not have are refused in the protocol's words, naming what is wrong. Clients go through
// oauth4webapi, people through the real sign-in and consent pages.
import type { AddressInfo } from 'node:net';
import test from 'ava';
import express from 'express';
import { auth, requiredScopes } from 'express-oauth2-jwt-bearer';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, signIn } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';
import { signInToAccount } from './helpers/account.ts';

let server: TestServer;
let as: oauth.AuthorizationServer;
test.before(async () => {
  server = await startTestServer();
  as = await discover(server);
});
test.after.always(async () => {
  await server?.close();
});

let apiCount = 0;
/** A new API on a loopback identifier of its own, with orders scopes. */
async function registerApi(overrides: Partial<Parameters<typeof server.runtime.apis.create>[0]> = {}) {
  apiCount += 1;
  return server.runtime.apis.create({
    identifier: `http://127.0.0.1:${9000 + apiCount}/api`, name: `Orders API ${apiCount}`,
    scopes: [{ name: 'orders:read', description: 'See your orders' }, { name: 'orders:write', description: 'Place orders for you' }],
    ...overrides,
  });
}

async function registerService(scope: string, extra: { defaultApi?: string } = {}) {
  const names = scope.split(' ');
  const metadata = await server.runtime.clients.create({ name: 'Service', type: 'service', apiScopes: names, ...extra });
  const client: oauth.Client = { client_id: metadata.client_id };
  return { client, authentication: oauth.ClientSecretBasic(String(metadata.client_secret)) };
}

async function clientCredentials(service: Awaited<ReturnType<typeof registerService>>, parameters: Record<string, string>) {
  const response = await oauth.clientCredentialsGrantRequest(as, service.client, service.authentication, new URLSearchParams(parameters), insecure);
  return oauth.processClientCredentialsResponse(as, service.client, response);
}

const jwks = () => createRemoteJWKSet(new URL(as.jwks_uri!));

test('client_credentials for an API gets a JWT access token for that API alone (RFC 9068): typ at+jwt, aud, scope, client_id', async (t) => {
  const api = await registerApi();
  const service = await registerService('orders:read orders:write');
  const tokens = await clientCredentials(service, { resource: api.identifier, scope: 'orders:read' });
  t.is(tokens.token_type.toLowerCase(), 'bearer');
  const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier, typ: 'at+jwt' });
  t.is(protectedHeader.alg, 'ES256');
  t.like(payload, { client_id: service.client.client_id, sub: service.client.client_id, scope: 'orders:read' });
  for (const claim of ['exp', 'iat', 'jti'] as const) t.truthy(payload[claim], claim);
  t.true(payload.exp! - payload.iat! === api.accessTokenTtl);

  // Another API refuses it: its audience is not theirs.
  const other = await registerApi();
  await t.throwsAsync(jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: other.identifier }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
});

test('an API protected by express-oauth2-jwt-bearer, unchanged, accepts its own tokens and refuses another API\'s', async (t) => {
  const api = await registerApi();
  const other = await registerApi();
  const edwards = await registerApi({ signingAlg: 'EdDSA' });
  const service = await registerService('orders:read');
  const app = express();
  app.get('/orders', auth({ issuerBaseURL: as.issuer, audience: api.identifier, tokenSigningAlg: 'ES256' }), requiredScopes('orders:read'), (_request, response) => {
    response.json({ orders: [] });
  });
  // It takes only an algorithm that discovery lists for ID tokens.
  app.get('/edwards', auth({ issuerBaseURL: as.issuer, audience: edwards.identifier, tokenSigningAlg: 'EdDSA' }), (_request, response) => {
    response.json({ ok: true });
  });
  const listener = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => listener.once('listening', resolve));
  t.teardown(() => new Promise<void>((resolve) => listener.close(() => resolve())));
  const url = `http://127.0.0.1:${(listener.address() as AddressInfo).port}/orders`;

  const own = await clientCredentials(service, { resource: api.identifier, scope: 'orders:read' });
  const ok = await fetch(url, { headers: { authorization: `Bearer ${own.access_token}` } });
  t.is(ok.status, 200);
  t.deepEqual(await ok.json(), { orders: [] });

  const signedWithEdwards = await clientCredentials(service, { resource: edwards.identifier, scope: 'orders:read' });
  t.is((await fetch(url.replace('/orders', '/edwards'), { headers: { authorization: `Bearer ${signedWithEdwards.access_token}` } })).status, 200, 'an EdDSA API');

  const theirs = await clientCredentials(await registerService('orders:read'), { resource: other.identifier, scope: 'orders:read' });
  const refused = await fetch(url, { headers: { authorization: `Bearer ${theirs.access_token}` } });
  t.is(refused.status, 401);
  t.regex(refused.headers.get('www-authenticate') ?? '', /invalid_token/);
});

test('the signing algorithm is the API\'s choice: RS256 and EdDSA tokens verify with the JWKS', async (t) => {
  for (const signingAlg of ['RS256', 'EdDSA'] as const) {
    const api = await registerApi({ signingAlg });
    const service = await registerService('orders:read');
    const tokens = await clientCredentials(service, { resource: api.identifier, scope: 'orders:read' });
    t.is(decodeProtectedHeader(tokens.access_token).alg, signingAlg);
    const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
    t.is(payload.scope, 'orders:read', signingAlg);
  }
});

test('an opaque-format API gets opaque tokens; a client with a default API gets tokens for it without naming it', async (t) => {
  const opaque = await registerApi({ accessTokenFormat: 'opaque' });
  const service = await registerService('orders:read');
  const tokens = await clientCredentials(service, { resource: opaque.identifier, scope: 'orders:read' });
  t.false(tokens.access_token.includes('.'), 'not a JWT');

  const api = await registerApi();
  const withDefault = await registerService('orders:read', { defaultApi: api.identifier });
  const defaulted = await clientCredentials(withDefault, { scope: 'orders:read' });
  const { payload } = await jwtVerify(defaulted.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
  t.is(payload.scope, 'orders:read');
});

test('once its default API is deleted, a client asks as one without a default: another API that defines its scope serves it, named', async (t) => {
  const api = await registerApi();
  const other = await registerApi();
  const service = await registerService('orders:read', { defaultApi: api.identifier });
  await server.runtime.apis.delete(api.identifier);
  const error = await t.throwsAsync(clientCredentials(service, { scope: 'orders:read' }), { instanceOf: oauth.ResponseBodyError });
  t.like(error, { error: 'invalid_scope', error_description: 'the scope "orders:read" is not about the person: if an API defines it, name the API with the resource parameter' });
  const tokens = await clientCredentials(service, { resource: other.identifier, scope: 'orders:read' });
  const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: other.identifier });
  t.is(payload.scope, 'orders:read');
});

test('refused in the protocol\'s words, saying what is wrong: an unknown API, a scope the client may not have, a scope the API does not define, an API scope without the API', async (t) => {
  const api = await registerApi();
  const service = await registerService('orders:read');
  const refusal = async (parameters: Record<string, string>) => {
    const error = await t.throwsAsync(clientCredentials(service, parameters), { instanceOf: oauth.ResponseBodyError });
    return { error: error.error, description: error.error_description };
  };
  t.like(await refusal({ resource: 'https://unknown.example/api', scope: 'orders:read' }), { error: 'invalid_target', description: 'no API is registered as https://unknown.example/api' });
  t.like(await refusal({ resource: api.identifier, scope: 'orders:write' }), { error: 'invalid_scope', description: 'this client may not ask for the scope "orders:write"' });
  t.like(await refusal({ resource: api.identifier, scope: 'invoices:read' }), { error: 'invalid_scope', description: `the scope "invoices:read" is not one of ${api.identifier}` });
  t.like(await refusal({ scope: 'orders:read' }), { error: 'invalid_scope', description: 'the scope "orders:read" is not about the person: if an API defines it, name the API with the resource parameter' });
  // No identifier holds U+0000 (PostgreSQL's text cannot): looking one up must not reach the database.
  t.like(await refusal({ resource: `${api.identifier}\u0000`, scope: 'orders:read' }), { error: 'invalid_target' });
  await t.throwsAsync(registerApi({ identifier: 'https://orders.example/api v2' }), { message: /no spaces or control characters/ });

  const unrelated = await registerApi({ scopes: [{ name: 'billing:read' }] });
  t.like(await refusal({ resource: unrelated.identifier }), { error: 'invalid_target', description: `this client may not use the API ${unrelated.identifier}: none of its scopes is allowed to the client` });
});

for (const accessTokenFormat of ['jwt', 'opaque'] as const) {
  test(`${accessTokenFormat}: a token for an API lasts the API's own lifetime, not ACCESS_TOKEN_TTL`, async (t) => {
    const api = await registerApi({ accessTokenFormat, accessTokenTtl: 90 });
    t.not(server.runtime.config.ttl.accessToken, 90);
    const tokens = await clientCredentials(await registerService('orders:read'), { resource: api.identifier, scope: 'orders:read' });
    t.is(tokens.expires_in, 90);
    const metadata = await server.runtime.clients.create({ name: 'Orders API', type: 'service', resourceServer: api.identifier });
    const resourceServer: oauth.Client = { client_id: metadata.client_id };
    const answer = await oauth.processIntrospectionResponse(as, resourceServer, await oauth.introspectionRequest(as, resourceServer,
      oauth.ClientSecretBasic(String(metadata.client_secret)), tokens.access_token, insecure));
    t.true(answer.active);
    t.is(answer.exp! - answer.iat!, 90);
  });
}

test('a person signs in to a web app asking for an API: the consent page says what in the API\'s words, the code exchange gets a JWT for it (with or without naming it again), and a sign-in naming no API a token for userinfo', async (t) => {
  const api = await registerApi({ accessTokenTtl: 120 });
  const registered = await server.runtime.clients.create({ name: 'Orders app', type: 'web', redirectUris: [REDIRECT_URI], apiScopes: ['orders:read'] });
  const client: oauth.Client = { client_id: registered.client_id };
  const authentication = oauth.ClientSecretBasic(String(registered.client_secret));
  const user = await createUser(server);
  // People are granted an API's scopes as far as their roles permit (the next test).
  const role = `customer-${apiCount}`;
  await server.runtime.roles.create(role, undefined);
  await server.runtime.roles.grant(role, api.identifier, ['orders:read', 'orders:write']);
  await server.runtime.flows.roleAssignment.add(user.email, role, { type: 'admin', id: 'test' });
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });

  // The sign-in, then the consent page, as the person sees it: the API's scope in its own words.
  let { response, url } = await agent.follow(request.url);
  const login = await response.text();
  ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(login, 'csrf'), email: user.email, password: PASSWORD }));
  const consent = await response.text();
  t.regex(consent, /See your orders/);
  t.false(consent.includes('orders:write'), 'only what the app asked');
  ({ response, url } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(consent, 'csrf') }));
  const callback = url;

  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const exchange = await oauth.authorizationCodeGrantRequest(as, client, authentication, parameters, REDIRECT_URI, request.codeVerifier, {
    ...insecure, additionalParameters: { resource: api.identifier },
  });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, exchange, { expectedNonce: request.nonce, requireIdToken: true });
  const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier, typ: 'at+jwt' });
  t.like(payload, { sub: user.id, client_id: client.client_id, scope: 'orders:read' });
  t.is(tokens.expires_in, 120, 'the API\'s own lifetime');
  t.is(payload.exp! - payload.iat!, 120);

  // Consent to the API's scope is remembered past signing out: the next sign-in asks only the password.
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  const remembered = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const fresh = new UserAgent();
  ({ response, url } = await fresh.follow(remembered.url));
  const secondLogin = await response.text();
  ({ response, url } = await fresh.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(secondLogin, 'csrf'), email: user.email, password: PASSWORD }));
  t.is(`${url.origin}${url.pathname}`, REDIRECT_URI, 'no consent page');
  t.truthy(url.searchParams.get('code'));

  // "Apps with access" on /account says what the app may do at the API, in the API's words.
  const { html } = await signInToAccount(server, new UserAgent(), { email: user.email, password: PASSWORD }, '/account/applications');
  t.regex(html, /Orders app/);
  t.regex(html, /See your orders/);

  // A second sign-in's code exchanged without the resource, as oidc-client-ts's `resource` setting does it (it sends
  // the resource on the authorization request alone): a token for the API the authorization named, as Auth0 does.
  const again = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const secondCallback = await signIn(agent, again.url, { email: user.email, password: PASSWORD });
  const secondParameters = oauth.validateAuthResponse(as, client, secondCallback, again.state);
  const withoutResource = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, authentication, secondParameters, REDIRECT_URI, again.codeVerifier, insecure),
    { expectedNonce: again.nonce, requireIdToken: true });
  t.like((await jwtVerify(withoutResource.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload, { sub: user.id, scope: 'orders:read' });

  // An authorization that named no API: an opaque token for userinfo, as before APIs.
  const plain = await authorizationRequest(as, client.client_id, { scope: 'openid' });
  const plainCallback = await signIn(agent, plain.url, { email: user.email, password: PASSWORD });
  const forUserinfo = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, authentication, oauth.validateAuthResponse(as, client, plainCallback, plain.state), REDIRECT_URI, plain.codeVerifier, insecure),
    { expectedNonce: plain.nonce, requireIdToken: true });
  t.false(forUserinfo.access_token.includes('.'));
  t.is(forUserinfo.expires_in, server.runtime.config.ttl.accessToken, 'a token for userinfo lasts ACCESS_TOKEN_TTL');
  const info = await oauth.processUserInfoResponse(as, client, user.id, await oauth.userInfoRequest(as, client, forUserinfo.access_token, insecure));
  t.is(info.sub, user.id);
});

test('a person is granted an API\'s scopes only as far as their roles permit; with the roles scope, the roles are in the ID token, userinfo and the JWT access token', async (t) => {
  const api = await registerApi();
  const role = `orders-reader-${apiCount}`;
  await server.runtime.roles.create(role, 'Reads orders');
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  const registered = await server.runtime.clients.create({
    name: 'Orders app', type: 'web', redirectUris: [REDIRECT_URI], scope: 'openid roles', apiScopes: ['orders:read', 'orders:write'],
  });
  const client: oauth.Client = { client_id: registered.client_id };
  const authentication = oauth.ClientSecretBasic(String(registered.client_secret));

  // With the role: orders:read, and the role named everywhere the roles scope reaches.
  const reader = await createUser(server);
  t.like(await server.runtime.flows.roleAssignment.add(reader.email, role, { type: 'admin', id: 'test' }), { ok: true, changed: true });
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid roles orders:read', resource: api.identifier });
  const callback = await signIn(new UserAgent(), request.url, { email: reader.email, password: PASSWORD });
  const exchange = (resource?: string) => oauth.authorizationCodeGrantRequest(as, client, authentication, oauth.validateAuthResponse(as, client, callback, request.state),
    REDIRECT_URI, request.codeVerifier, { ...insecure, ...(resource ? { additionalParameters: { resource } } : {}) });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await exchange(api.identifier), { expectedNonce: request.nonce, requireIdToken: true });
  const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
  t.is(payload.scope, 'orders:read');
  t.deepEqual(payload.roles, [role]);
  t.deepEqual(oauth.getValidatedIdTokenClaims(tokens)!.roles, [role]);

  // A later request without the roles scope: no roles in its tokens, though the person's grant holds the scope.
  const withoutRoles = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const withoutRolesCallback = await signIn(new UserAgent(), withoutRoles.url, { email: reader.email, password: PASSWORD });
  const narrower = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, authentication,
    oauth.validateAuthResponse(as, client, withoutRolesCallback, withoutRoles.state), REDIRECT_URI, withoutRoles.codeVerifier, { ...insecure, additionalParameters: { resource: api.identifier } }),
  { expectedNonce: withoutRoles.nonce, requireIdToken: true });
  t.false('roles' in oauth.getValidatedIdTokenClaims(narrower)!);
  t.false('roles' in (await jwtVerify(narrower.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload, 'nor in the access token');

  // Without it: asking for the scope is refused, saying why.
  const other = await createUser(server);
  const refused = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const back = await signIn(new UserAgent(), refused.url, { email: other.email, password: PASSWORD });
  t.is(back.searchParams.get('error'), 'invalid_scope');
  t.is(back.searchParams.get('error_description'), 'the person signing in has no role that permits the scope "orders:read"');

  // The role taken away: the next sign-in cannot have the scope either.
  t.like(await server.runtime.flows.roleAssignment.remove(reader.email, role, { type: 'admin', id: 'test' }), { ok: true, changed: true });
  const again = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const backAgain = await signIn(new UserAgent(), again.url, { email: reader.email, password: PASSWORD });
  t.is(backAgain.searchParams.get('error'), 'invalid_scope');
});

test('userinfo names the person\'s roles when the roles scope is granted, and not otherwise', async (t) => {
  const role = `support-${crypto.randomUUID().slice(0, 8)}`;
  await server.runtime.roles.create(role, undefined);
  const registered = await server.runtime.clients.create({ name: 'Support app', type: 'web', redirectUris: [REDIRECT_URI], scope: 'openid roles email' });
  const client: oauth.Client = { client_id: registered.client_id };
  const authentication = oauth.ClientSecretBasic(String(registered.client_secret));
  const user = await createUser(server);
  await server.runtime.flows.roleAssignment.add(user.email, role, { type: 'admin', id: 'test' });
  for (const scope of ['openid roles', 'openid email']) {
    const request = await authorizationRequest(as, client.client_id, { scope });
    const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
    const tokens = await oauth.processAuthorizationCodeResponse(as, client,
      await oauth.authorizationCodeGrantRequest(as, client, authentication, oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure),
      { expectedNonce: request.nonce, requireIdToken: true });
    const info = await oauth.processUserInfoResponse(as, client, user.id, await oauth.userInfoRequest(as, client, tokens.access_token, insecure));
    if (scope.includes('roles')) t.deepEqual(info.roles, [role]);
    else t.false('roles' in info, scope);
  }
});

test('a first-party app asking for an API skips the consent page and still gets only what the person\'s roles permit', async (t) => {
  const api = await registerApi();
  const role = `staff-${apiCount}`;
  await server.runtime.roles.create(role, undefined);
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  const registered = await server.runtime.clients.create({
    name: 'Back office', type: 'web', redirectUris: [REDIRECT_URI], apiScopes: ['orders:read', 'orders:write'], firstParty: true,
  });
  const client: oauth.Client = { client_id: registered.client_id };
  const user = await createUser(server);
  await server.runtime.flows.roleAssignment.add(user.email, role, { type: 'admin', id: 'test' });
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const agent = new UserAgent();
  let { response, url } = await agent.follow(request.url);
  const login = await response.text();
  ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(login, 'csrf'), email: user.email, password: PASSWORD }));
  t.is(`${url.origin}${url.pathname}`, REDIRECT_URI, 'no consent page');
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.ClientSecretBasic(String(registered.client_secret)), oauth.validateAuthResponse(as, client, url, request.state),
      REDIRECT_URI, request.codeVerifier, { ...insecure, additionalParameters: { resource: api.identifier } }),
    { expectedNonce: request.nonce, requireIdToken: true });
  const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
  t.is(payload.scope, 'orders:read');
});

test('a refresh refused for its API (one not granted, a scope no longer permitted) leaves the refresh token unspent: the retry with it works', async (t) => {
  const api = await registerApi();
  const role = `orders-refresher-${apiCount}`;
  const administrator = { type: 'admin', id: 'test' } as const;
  await server.runtime.roles.create(role, 'Refreshes orders');
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  const registered = await server.runtime.clients.create({ name: 'Orders SPA', type: 'spa', redirectUris: [REDIRECT_URI], scope: 'openid', apiScopes: ['orders:read'] });
  const client: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: 'none' };
  const person = await createUser(server);
  await server.runtime.flows.roleAssignment.add(person.email, role, administrator);
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const callback = await signIn(new UserAgent(), request.url, { email: person.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(),
    oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, { ...insecure, additionalParameters: { resource: api.identifier } }),
  { expectedNonce: request.nonce, requireIdToken: true });
  const refresh = (parameters: Record<string, string>) => oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, { ...insecure, additionalParameters: parameters });

  const elsewhere = await refresh({ resource: 'https://elsewhere.example/api' });
  t.is(elsewhere.status, 400);
  t.like(await elsewhere.json(), { error: 'invalid_target', error_description: 'the API https://elsewhere.example/api was not granted to this refresh token: sign in again asking for it' });

  t.like(await server.runtime.flows.roleAssignment.remove(person.email, role, administrator), { ok: true, changed: true });
  const notPermitted = await refresh({ resource: api.identifier, scope: 'orders:read' });
  t.is(notPermitted.status, 400);
  t.like(await notPermitted.json(), { error: 'invalid_scope', error_description: 'the person signing in has no role that permits the scope "orders:read"' });

  // Neither refusal spent the refresh token (its next use would otherwise revoke the grant as a reuse).
  t.like(await server.runtime.flows.roleAssignment.add(person.email, role, administrator), { ok: true, changed: true });
  const rotated = await oauth.processRefreshTokenResponse(as, client, await refresh({ resource: api.identifier }));
  t.not(rotated.refresh_token, tokens.refresh_token);
  const { payload } = await jwtVerify(rotated.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
  t.is(payload.scope, 'orders:read');
});

test('an app with a default API signs a person in without naming it: the code exchange and the refresh get tokens for it', async (t) => {
  const api = await registerApi();
  const role = `orders-default-${apiCount}`;
  await server.runtime.roles.create(role, undefined);
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  const registered = await server.runtime.clients.create({
    name: 'Orders SPA', type: 'spa', redirectUris: [REDIRECT_URI], scope: 'openid', apiScopes: ['orders:read'], defaultApi: api.identifier,
  });
  const client: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: 'none' };
  const person = await createUser(server);
  await server.runtime.flows.roleAssignment.add(person.email, role, { type: 'admin', id: 'test' });
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read' });
  const callback = await signIn(new UserAgent(), request.url, { email: person.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(),
    oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure), { expectedNonce: request.nonce, requireIdToken: true });
  const { payload } = await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier });
  t.like(payload, { scope: 'orders:read', sub: person.id, client_id: client.client_id });

  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.is((await jwtVerify(refreshed.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload.scope, 'orders:read');
  // oidc-client-ts sends the scope the last answer named, and no resource (RFC 6749 §6): the API is the one granted.
  const asOidcClientTs = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.refresh_token!, {
    ...insecure, additionalParameters: { scope: refreshed.scope! },
  }));
  t.is((await jwtVerify(asOidcClientTs.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload.scope, 'orders:read');
});

test('a refresh naming the granted API\'s scope and no resource gets a token for that API (RFC 8707 §2.2), as when the code exchange named it', async (t) => {
  const api = await registerApi();
  const role = `orders-named-${apiCount}`;
  await server.runtime.roles.create(role, undefined);
  await server.runtime.roles.grant(role, api.identifier, ['orders:read']);
  const registered = await server.runtime.clients.create({ name: 'Orders SPA', type: 'spa', redirectUris: [REDIRECT_URI], scope: 'openid', apiScopes: ['orders:read'] });
  const client: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: 'none' };
  const person = await createUser(server);
  await server.runtime.flows.roleAssignment.add(person.email, role, { type: 'admin', id: 'test' });
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid orders:read', resource: api.identifier });
  const callback = await signIn(new UserAgent(), request.url, { email: person.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(),
    oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, { ...insecure, additionalParameters: { resource: api.identifier } }),
  { expectedNonce: request.nonce, requireIdToken: true });
  t.is((await jwtVerify(tokens.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload.scope, 'orders:read');

  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, {
    ...insecure, additionalParameters: { scope: 'orders:read' },
  }));
  t.is((await jwtVerify(refreshed.access_token, jwks(), { issuer: as.issuer, audience: api.identifier })).payload.scope, 'orders:read');
});

test('OpenID Connect\'s address and phone scopes, which many apps ask for by default, are ignored as OIDC says, never refused; a made-up scope is refused for what it is', async (t) => {
  const registered = await server.runtime.clients.create({ name: 'Everyday SPA', type: 'spa', redirectUris: [REDIRECT_URI] });
  const client: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: 'none' };
  const user = await createUser(server);
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid email address phone' });
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce, requireIdToken: true });
  t.deepEqual(tokens.scope?.split(' ').sort(), ['email', 'openid'], 'granted what Gatehouse has: no address, no phone');

  await registerApi();
  const service = await registerService('orders:read');
  const error = await t.throwsAsync(clientCredentials(service, { scope: 'made-up' }), { instanceOf: oauth.ResponseBodyError });
  t.like(error, { error: 'invalid_scope', error_description: 'the scope "made-up" is not about the person: if an API defines it, name the API with the resource parameter' });
});

test('an authorization request for an unknown API goes back to the app with invalid_target, saying which; discovery offers the roles scope and claim', async (t) => {
  const registered = await server.runtime.clients.create({ name: 'Orders SPA', type: 'spa', redirectUris: [REDIRECT_URI], scope: 'openid' });
  const request = await authorizationRequest(as, registered.client_id, { scope: 'openid', resource: 'https://unknown.example/api' });
  const { url } = await new UserAgent().follow(request.url);
  t.is(url.origin + url.pathname, REDIRECT_URI);
  t.is(url.searchParams.get('error'), 'invalid_target');
  t.is(url.searchParams.get('error_description'), 'no API is registered as https://unknown.example/api');
  t.is(url.searchParams.get('state'), request.state);
  const withNul = await authorizationRequest(as, registered.client_id, { scope: 'openid', resource: 'https://unknown.example/api\u0000' });
  const answered = (await new UserAgent().follow(withNul.url)).url;
  t.is(answered.searchParams.get('error'), 'invalid_target', 'a resource holding U+0000 is an unknown API, not a server error');
  t.true(as.scopes_supported?.includes('roles'));
  t.true(as.claims_supported?.includes('roles'));
});
