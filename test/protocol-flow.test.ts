// The whole single-page-app journey through a real client library: discovery, authorize with PKCE,
// login and consent pages, code exchange, ID token, userinfo, refresh rotation and reuse detection,
// revocation, introspection and logout.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { InMemoryWebStorage, OidcClient, WebStorageStateStore } from 'oidc-client-ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import {
  POST_LOGOUT_REDIRECT_URI, PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure,
  registerConfidential, registerSpa, signIn, signInToNewSpa,
} from './helpers/oauth.ts';
import { UserAgent, formAction, formField } from './helpers/user-agent.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

const signedInSpa = () => signInToNewSpa(server);

test('discovery advertises only the code flow with S256 PKCE and the RFC 9207 iss parameter', async (t) => {
  const as = await discover(server);
  t.is(as.issuer, server.issuer);
  t.deepEqual(as.response_types_supported, ['code']);
  t.deepEqual(as.code_challenge_methods_supported, ['S256']);
  t.true(as.authorization_response_iss_parameter_supported);
  t.false((as.grant_types_supported ?? []).includes('implicit'));
  t.false((as.grant_types_supported ?? []).includes('password'));
  t.truthy(as.end_session_endpoint);
  t.truthy(as.revocation_endpoint);
  t.truthy(as.introspection_endpoint);
});

test('JWKS publishes public RS256, ES256 and EdDSA keys only', async (t) => {
  const as = await discover(server);
  const jwks = await (await fetch(as.jwks_uri!)).json() as { keys: Array<Record<string, unknown>> };
  t.deepEqual(jwks.keys.map((key) => key.alg).sort(), ['ES256', 'EdDSA', 'RS256']);
  for (const key of jwks.keys) {
    for (const privatePart of ['d', 'p', 'q', 'dp', 'dq', 'qi']) t.false(privatePart in key, `JWKS leaks ${privatePart}`);
  }
});

test('a person signs in to a single-page app with code + PKCE and gets a valid ID token', async (t) => {
  const { as, client, user, callback, tokens, request } = await signedInSpa();
  t.is(callback.searchParams.get('iss'), server.issuer, 'authorization response carries iss (RFC 9207)');
  t.truthy(tokens.access_token);
  t.truthy(tokens.refresh_token, 'single-page apps get a refresh token');
  const claims = oauth.getValidatedIdTokenClaims(tokens)!;
  t.is(claims.sub, user.id);
  t.is(claims.aud, client.client_id);
  t.like(claims, { email: user.email, email_verified: true, name: 'Ada Lovelace' }, 'the granted profile and email claims are in the ID token');
  const { protectedHeader, payload } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(as.jwks_uri!)), {
    issuer: server.issuer, audience: client.client_id,
  });
  t.is(protectedHeader.alg, 'RS256');
  t.deepEqual(payload.amr, ['pwd']);
  t.is(typeof payload.auth_time, 'number');
  t.is(payload.nonce, request.nonce);
});

test('a request whose id_token_hint names one person is never answered with another\'s sign-in (OIDC Core §3.1.2.1): the login page refuses the other account\'s password, the named one\'s works', async (t) => {
  const { as, client, user: named, tokens } = await signedInSpa();
  const other = await createUser(server);
  const signedInAsOther = new UserAgent();
  await signIn(signedInAsOther, (await authorizationRequest(as, client.client_id)).url, { email: other.email, password: PASSWORD });

  // Signed in as another account, or not at all: the login page, where only the named account's password finishes.
  for (const browser of [signedInAsOther, new UserAgent()]) {
    const hinted = await authorizationRequest(as, client.client_id, { id_token_hint: tokens.id_token! });
    const { response, url } = await browser.follow(hinted.url);
    const page = await response.text();
    t.true(page.includes('name="password"'));
    const refused = await browser.request(new URL(`${url.pathname}/login`, url), {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(page, 'csrf'), email: other.email, password: PASSWORD }).toString(),
    });
    t.is(refused.status, 403);
    t.regex(await refused.text(), /asked for another account/);
  }
  const hinted = await authorizationRequest(as, client.client_id, { id_token_hint: tokens.id_token! });
  const callback = await signIn(new UserAgent(), hinted.url, { email: named.email, password: PASSWORD });
  const exchanged = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, oauth.None(),
    oauth.validateAuthResponse(as, client, callback, hinted.state), REDIRECT_URI, hinted.codeVerifier, insecure), { expectedNonce: hinted.nonce, requireIdToken: true });
  t.is(oauth.getValidatedIdTokenClaims(exchanged)!.sub, named.id);
});

test('userinfo releases the claims of the granted scopes', async (t) => {
  const { as, client, user, tokens } = await signedInSpa();
  const response = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
  const info = await oauth.processUserInfoResponse(as, client, user.id, response);
  t.is(info.email, user.email);
  t.is(info.email_verified, true);
  t.is(info.name, 'Ada Lovelace');
});

test('consent is remembered: a second sign-in for the same scopes skips the consent page', async (t) => {
  const { as, client, agent } = await signedInSpa();
  const again = await authorizationRequest(as, client.client_id, { scope: 'openid profile email' });
  const { response, url } = await agent.follow(again.url);
  t.is(response.status, 303);
  t.is(url.origin + url.pathname, REDIRECT_URI);
  t.truthy(oauth.validateAuthResponse(as, client, url, again.state).get('code'));
});

test('refresh tokens rotate, and presenting a rotated one revokes the whole grant', async (t) => {
  const { as, client, tokens } = await signedInSpa();
  const first = tokens.refresh_token!;
  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), first, insecure));
  t.truthy(refreshed.refresh_token);
  t.not(refreshed.refresh_token, first, 'the refresh token rotated');
  t.truthy(refreshed.access_token);

  const reuse = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), first, insecure);
  const reuseError = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, reuse), { instanceOf: oauth.ResponseBodyError });
  t.is(reuseError?.error, 'invalid_grant');

  const newest = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.refresh_token!, insecure);
  const newestError = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, newest), { instanceOf: oauth.ResponseBodyError });
  t.is(newestError?.error, 'invalid_grant', 'the newest refresh token died with the grant');

  const userinfo = await oauth.userInfoRequest(as, client, refreshed.access_token, insecure);
  t.is(userinfo.status, 401, 'access tokens of the grant no longer work');
});

test('two concurrent refreshes with one token: exactly one wins', async (t) => {
  const { as, client, tokens } = await signedInSpa();
  const results = await Promise.allSettled(Array.from({ length: 5 }, async () => oauth.processRefreshTokenResponse(
    as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure),
  )));
  t.is(results.filter((result) => result.status === 'fulfilled').length, 1);
  for (const result of results) {
    if (result.status === 'rejected') t.is((result.reason as oauth.ResponseBodyError).error, 'invalid_grant');
  }
});

test('revocation (RFC 7009) ends a refresh token and introspection (RFC 7662) reports it', async (t) => {
  const { as, client, tokens } = await signedInSpa();
  const service = await registerConfidential(server, 'service');
  const introspect = async (token: string) => oauth.processIntrospectionResponse(
    as, service.client, await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), token, insecure),
  );
  const active = await introspect(tokens.access_token);
  t.true(active.active);
  t.is(active.client_id, client.client_id);
  t.truthy(active.sub);

  t.false((await introspect(tokens.refresh_token!)).active, 'a resource server is never told about refresh tokens');
  const byOwner = async (token: string) => oauth.processIntrospectionResponse(
    as, client, await oauth.introspectionRequest(as, client, oauth.None(), token, insecure),
  );
  t.true((await byOwner(tokens.refresh_token!)).active, 'the client itself may introspect its refresh token');

  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.false((await byOwner(tokens.refresh_token!)).active);
  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');

  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), tokens.access_token, insecure));
  t.false((await introspect(tokens.access_token)).active);
});

test('revocation answers 200 with no body and no content type: oidc-client-ts, unconfigured, revokes an access or a refresh token, and either ends the grant', async (t) => {
  const first = await signedInSpa();
  const raw = await fetch(first.as.revocation_endpoint!, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: first.client.client_id, token: 'not-a-token-of-ours' }),
  });
  t.is(raw.status, 200, 'an unknown token is answered as revoked (RFC 7009 2.2)');
  t.is(raw.headers.get('content-type'), null);
  t.is(await raw.text(), '');

  // The SPA library as an app configures it (its state store in memory, as there is no window here).
  const library = (clientId: string) => new OidcClient({
    authority: server.issuer, client_id: clientId, redirect_uri: REDIRECT_URI,
    stateStore: new WebStorageStateStore({ store: new InMemoryWebStorage() }),
  });
  const active = async ({ as, client }: typeof first, token: string) => (await oauth.processIntrospectionResponse(
    as, client, await oauth.introspectionRequest(as, client, oauth.None(), token, insecure),
  )).active;
  // Either token revokes the whole grant (README, "Revocation"): the other one stops working too.
  await library(first.client.client_id).revokeToken(first.tokens.access_token, 'access_token');
  t.false(await active(first, first.tokens.access_token));
  t.false(await active(first, first.tokens.refresh_token!));
  const second = await signedInSpa();
  await library(second.client.client_id).revokeToken(second.tokens.refresh_token!, 'refresh_token');
  t.false(await active(second, second.tokens.refresh_token!));
  t.false(await active(second, second.tokens.access_token));
});

test('introspection is refused to a client that neither owns the token nor is a service', async (t) => {
  const { as, tokens } = await signedInSpa();
  const web = await registerConfidential(server, 'web');
  const result = await oauth.processIntrospectionResponse(
    as, web.client, await oauth.introspectionRequest(as, web.client, oauth.ClientSecretBasic(web.secret), tokens.access_token, insecure),
  );
  t.false(result.active);
});

test('client_credentials gives a service client an access token', async (t) => {
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const response = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure);
  const result = await oauth.processClientCredentialsResponse(as, service.client, response);
  t.truthy(result.access_token);
  t.is(result.token_type, 'bearer');
});

test('a scope taken from the app after the person granted it stops being released at the next refresh: ID token, scope and userinfo', async (t) => {
  const { as, client, user, tokens } = await signedInSpa();
  t.like(oauth.getValidatedIdTokenClaims(tokens), { email: user.email, name: 'Ada Lovelace' });
  await server.runtime.clients.update(client.client_id, { scope: 'openid profile' });

  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, {
    ...insecure, additionalParameters: { scope: tokens.scope! },
  }));
  const claims = oauth.getValidatedIdTokenClaims(refreshed)!;
  t.is(claims.name, 'Ada Lovelace');
  t.false('email' in claims, 'no email in the new ID token');
  t.false(refreshed.scope!.split(' ').includes('email'));
  const info = await oauth.processUserInfoResponse(as, client, user.id, await oauth.userInfoRequest(as, client, refreshed.access_token, insecure));
  t.false('email' in info, 'nor at userinfo');
  // The grant was narrowed, not the app's tokens ended: the next refresh works too.
  t.truthy((await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.refresh_token!, insecure))).access_token);
});

test('RP-initiated logout asks for confirmation, ends the session and returns to the client', async (t) => {
  const { as, client, agent, tokens } = await signedInSpa();
  const logout = new URL(as.end_session_endpoint!);
  logout.searchParams.set('id_token_hint', tokens.id_token!);
  logout.searchParams.set('post_logout_redirect_uri', POST_LOGOUT_REDIRECT_URI);
  logout.searchParams.set('state', 'bye');
  const { response } = await agent.follow(logout);
  t.is(response.status, 200);
  const page = await response.text();
  t.regex(page, /Sign out of Test SPA\?/);
  const { response: after, url } = await agent.submit(formAction(page, /session\/end\/confirm/), { xsrf: formField(page, 'xsrf'), logout: 'yes' });
  t.is(after.status, 303);
  t.is(url.origin + url.pathname, POST_LOGOUT_REDIRECT_URI);
  t.is(url.searchParams.get('state'), 'bye');

  // Signed out: a new authorization request asks for the password again.
  const again = await authorizationRequest(as, client.client_id);
  const { response: loginPage } = await agent.follow(again.url);
  t.regex(await loginPage.text(), /name="password"/);
});

test('a confidential web client gets a refresh token for offline_access (with prompt=consent), and not without', async (t) => {
  const as = await discover(server);
  const web = await registerConfidential(server, 'web');
  const user = await createUser(server);
  const exchange = async (scope: string, extra: Record<string, string> = {}) => {
    const request = await authorizationRequest(as, web.client.client_id, { scope, ...extra });
    const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
    const parameters = oauth.validateAuthResponse(as, web.client, callback, request.state);
    return oauth.processAuthorizationCodeResponse(as, web.client, await oauth.authorizationCodeGrantRequest(
      as, web.client, oauth.ClientSecretBasic(web.secret), parameters, REDIRECT_URI, request.codeVerifier, insecure,
    ), { expectedNonce: request.nonce });
  };
  const online = await exchange('openid email');
  t.is(online.refresh_token, undefined, 'no offline access asked, none given');
  const offline = await exchange('openid email offline_access', { prompt: 'consent' });
  t.truthy(offline.refresh_token);
  t.regex(offline.scope ?? '', /offline_access/);
  const refreshed = await oauth.processRefreshTokenResponse(as, web.client,
    await oauth.refreshTokenGrantRequest(as, web.client, oauth.ClientSecretBasic(web.secret), offline.refresh_token!, insecure));
  t.not(refreshed.refresh_token, offline.refresh_token);
});

test('a single-page app never gets offline access: offline_access asked with prompt=consent is not offered, not granted, and its refresh token ends at sign-out', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid email offline_access', prompt: 'consent' });
  const { response, url } = await agent.follow(request.url);
  const { response: consent, url: consentUrl } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(await response.text(), 'csrf'), email: user.email, password: PASSWORD });
  const consentPage = await consent.text();
  t.regex(consentPage, /See your email address/);
  t.notRegex(consentPage, /Keep access while you are away/, 'not offered');
  const { url: callback } = await agent.submit(new URL(`${consentUrl.pathname}/confirm`, consentUrl), { csrf: formField(consentPage, 'csrf') });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  t.truthy(tokens.refresh_token, 'an SPA still gets its session-bound refresh token');
  t.notRegex(tokens.scope ?? '', /offline_access/, 'not granted');

  // Signing out of Gatehouse ends it, as the README promises.
  const logout = new URL(as.end_session_endpoint!);
  logout.searchParams.set('id_token_hint', tokens.id_token!);
  logout.searchParams.set('post_logout_redirect_uri', POST_LOGOUT_REDIRECT_URI);
  const page = await (await agent.follow(logout)).response.text();
  await agent.submit(formAction(page, /session\/end\/confirm/), { xsrf: formField(page, 'xsrf'), logout: 'yes' });
  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');
});

test('the consent page names the client and words each requested scope', async (t) => {
  const as = await discover(server);
  const web = await registerConfidential(server, 'web');
  const client = web.client;
  const user = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid email offline_access', prompt: 'consent' });
  const { response, url } = await agent.follow(request.url);
  const login = await response.text();
  const { response: consent } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(login, 'csrf'), email: user.email, password: PASSWORD });
  const page = await consent.text();
  t.regex(page, /Allow Test web access\?/);
  t.regex(page, /Know who you are/);
  t.regex(page, /See your email address/);
  t.regex(page, /Keep access while you are away/);
  t.notRegex(page, /See your name/, 'profile was not asked for');
});
