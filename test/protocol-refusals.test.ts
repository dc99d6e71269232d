// What the server must refuse, each checked the way a real client would see it: missing or plain
// PKCE, a wrong verifier, an unknown redirect URI, a code used twice or too late, a wrong client
// secret, a disabled user, and malformed input at every endpoint.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestServer, type TestServer } from './helpers/server.ts';
import {
  PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, registerSpa, signIn,
} from './helpers/oauth.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';
import { cleanEnvironment, runNode } from './helpers/process.ts';
import path from 'node:path';
import { ClientError } from '../src/clients/clients.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer({ AUTHORIZATION_CODE_TTL: '2' });
});
test.after.always(async () => {
  await server?.close();
});

async function spaWithUser() {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  return { as, client, user, agent: new UserAgent() };
}

async function codeFor(overrides: Record<string, string | undefined> = {}) {
  const context = await spaWithUser();
  const request = await authorizationRequest(context.as, context.client.client_id, overrides);
  const callback = await signIn(context.agent, request.url, { email: context.user.email, password: PASSWORD });
  return { ...context, request, parameters: oauth.validateAuthResponse(context.as, context.client, callback, request.state) };
}

async function expectRedirectError(t: import('ava').ExecutionContext, overrides: Record<string, string | undefined>, description: RegExp) {
  const { as, client, agent } = await spaWithUser();
  const request = await authorizationRequest(as, client.client_id, overrides);
  const { response, url } = await agent.follow(request.url);
  t.is(response.status, 303);
  t.is(url.origin + url.pathname, REDIRECT_URI, 'the error goes back to the registered redirect URI');
  const error = t.throws(() => oauth.validateAuthResponse(as, client, url, request.state), { instanceOf: oauth.AuthorizationResponseError });
  t.is(error?.error, 'invalid_request');
  t.regex(error?.error_description ?? '', description);
}

test('an authorization request without PKCE is refused with invalid_request', async (t) => {
  await expectRedirectError(t, { code_challenge: undefined, code_challenge_method: undefined }, /PKCE/);
});

test('PKCE with the plain method is refused with invalid_request', async (t) => {
  await expectRedirectError(t, { code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' }, /code_challenge_method/);
});

test('implicit and hybrid response types are refused', async (t) => {
  const { as, client, agent } = await spaWithUser();
  for (const responseType of ['token', 'id_token', 'code id_token']) {
    const request = await authorizationRequest(as, client.client_id, { response_type: responseType });
    const { response, url } = await agent.follow(request.url);
    t.is(response.status, 303, responseType);
    // Implicit and hybrid answer in the fragment by default; either way, no token may appear.
    const answer = new URLSearchParams(url.hash.slice(1) || url.search);
    t.is(answer.get('error'), 'unsupported_response_type', responseType);
    t.is(answer.get('access_token'), null);
    t.is(answer.get('id_token'), null);
  }
});

test('a code exchanged with the wrong verifier is refused with invalid_grant', async (t) => {
  const { as, client, parameters } = await codeFor();
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, oauth.generateRandomCodeVerifier(), insecure);
  const error = await t.throwsAsync(oauth.processAuthorizationCodeResponse(as, client, response), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');
});

test('an unregistered redirect URI is shown as an error page, never redirected to', async (t) => {
  const { as, client, agent } = await spaWithUser();
  const request = await authorizationRequest(as, client.client_id, { redirect_uri: 'https://attacker.example/callback' });
  const { response, url } = await agent.follow(request.url);
  t.is(response.status, 400);
  t.is(url.origin, server.issuer, 'stayed on Gatehouse');
  t.regex(response.headers.get('content-type') ?? '', /text\/html/);
  const page = await response.text();
  t.regex(page, /redirect_uri/);
  t.notRegex(page, /attacker\.example\/callback"/);
});

test('a redirect URI that differs only by a trailing slash or query is refused', async (t) => {
  const { as, client, agent } = await spaWithUser();
  for (const redirectUri of [`${REDIRECT_URI}/`, `${REDIRECT_URI}?next=1`, REDIRECT_URI.toUpperCase()]) {
    const request = await authorizationRequest(as, client.client_id, { redirect_uri: redirectUri });
    const { response } = await agent.follow(request.url);
    t.is(response.status, 400, redirectUri);
  }
});

test('an unknown client gets an error page', async (t) => {
  const as = await discover(server);
  const request = await authorizationRequest(as, 'no-such-client');
  const { response } = await new UserAgent().follow(request.url);
  t.is(response.status, 400);
  t.regex(await response.text(), /invalid_client/);
});

test('a code used twice is refused and the grant of the first exchange is revoked', async (t) => {
  const { as, client, parameters, request } = await codeFor();
  const exchange = () => oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await exchange(), { expectedNonce: request.nonce });
  const error = await t.throwsAsync(oauth.processAuthorizationCodeResponse(as, client, await exchange()), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');
  const userinfo = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
  t.is(userinfo.status, 401, 'tokens from the first exchange are revoked');
});

test('of concurrent exchanges of one code exactly one wins', async (t) => {
  const { as, client, parameters, request } = await codeFor();
  const results = await Promise.allSettled(Array.from({ length: 5 }, async () => oauth.processAuthorizationCodeResponse(
    as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce },
  )));
  t.is(results.filter((result) => result.status === 'fulfilled').length, 1);
});

test('an expired code is refused with invalid_grant', async (t) => {
  const { as, client, parameters, request } = await codeFor();
  // A real wait: the engine (oidc-provider) dates codes by the system clock, in whole seconds, and takes no
  // clock of ours. Issued by now, the code ends at the latest when this second plus its 2 s TTL begins.
  await sleep((Math.floor(Date.now() / 1000) + 2) * 1000 - Date.now() + 20);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const error = await t.throwsAsync(oauth.processAuthorizationCodeResponse(as, client, response), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');
});

test('client_credentials refuses the scopes about a person (openid, profile, email, offline_access): a service acts for no one', async (t) => {
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  for (const scope of ['openid', 'openid email offline_access', 'profile', 'offline_access']) {
    const response = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), { scope }, insecure);
    const error = await t.throwsAsync(oauth.processClientCredentialsResponse(as, service.client, response), { instanceOf: oauth.ResponseBodyError }, scope);
    t.is(error?.error, 'invalid_scope', scope);
    t.regex(error?.error_description ?? '', /acts for no person/);
  }
  const plain = await oauth.processClientCredentialsResponse(as, service.client,
    await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure));
  t.truthy(plain.access_token, 'without such scopes it gets its token');
  t.is(plain.scope, undefined);
  const registration = await t.throwsAsync(server.runtime.clients.create({ name: 'Reporting', type: 'service', scope: 'openid email' }), { instanceOf: ClientError });
  t.regex(registration!.message, /acts for no person.*openid, email/);
  const { client: spa } = await registerSpa(server, 'openid email');
  t.truthy(spa.client_id, 'a client that signs people in may have them');
});

test('a wrong client secret is refused with invalid_client', async (t) => {
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const response = await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(`${service.secret}x`), {}, insecure);
  t.is(response.status, 401);
  t.is((await response.clone().json() as { error: string }).error, 'invalid_client');
  await t.throwsAsync(oauth.processClientCredentialsResponse(as, service.client, response), { instanceOf: oauth.WWWAuthenticateChallengeError });
});

test('a disabled user cannot sign in, and loses an existing session and refresh token', async (t) => {
  const { as, client, user, agent } = await spaWithUser();
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(agent, request.url, { email: user.email, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce });

  // The account alone (no session or grant is ended here): its state must stop the tokens.
  await server.runtime.users.setDisabled(user.id, true);

  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');

  const again = await authorizationRequest(as, client.client_id);
  const { response, url } = await agent.follow(again.url);
  const page = await response.text();
  t.regex(page, /name="password"/, 'the session no longer signs the disabled user in');
  const login = await agent.submit(new URL(`${url.pathname}/login`, url), {
    csrf: formField(page, 'csrf'), email: user.email, password: PASSWORD,
  });
  t.is(login.response.status, 401);
  t.regex(await login.response.text(), /Incorrect email or password/);
});

test('gatehouse users disable: the account\'s access tokens are inactive at introspection at once, its sessions end, it is audited; users enable lets it sign in again', async (t) => {
  t.timeout(300_000);
  const { as, client, user, agent } = await spaWithUser();
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(agent, request.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  const service = await registerConfidential(server, 'service');
  const introspect = async () => oauth.processIntrospectionResponse(as, service.client,
    await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), tokens.access_token, insecure));
  t.true((await introspect()).active);

  const { config } = server.runtime;
  // The server's database and store: its Redis and key prefix (this process's in-process store is out of the CLI's reach).
  const environment = cleanEnvironment({
    DATA_DIR: config.dataDir, KEYS_DIR: config.keysDir, DATABASE_URL: config.databaseUrl, LOG_LEVEL: 'warn', NODE_ENV: 'test',
    ISSUER: server.issuer, REDIS_URL: config.redis?.url, STORE_PREFIX: config.storePrefix,
  });
  const gatehouse = (args: string[]) => runNode([path.join('bin', 'gatehouse.js'), ...args], environment, 180_000);
  const disabled = await gatehouse(['users', 'disable', '--email', user.email.toUpperCase()]);
  t.is(disabled.code, 0, disabled.stderr);
  t.regex(disabled.stdout, new RegExp(`^disabled ${user.email.replaceAll('.', '\\.')}; \\d+ sessions? ended, \\d+ grants? revoked\n$`));

  t.false((await introspect()).active, 'the access token is inactive at once');
  const userinfo = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
  t.is(userinfo.status, 401);
  const refused = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure)), { instanceOf: oauth.ResponseBodyError });
  t.is(refused?.error, 'invalid_grant');
  if (config.redis) {
    t.regex(disabled.stdout, /; 1 session ended, 1 grant revoked\n$/);
    t.deepEqual(await server.runtime.accountSessions.list(user.id), [], 'no session is left');
  } else {
    t.regex(disabled.stderr, /the store is in-process \(no REDIS_URL\)/);
  }
  await server.runtime.auditTrail.flush();
  const [event] = (await server.runtime.auditTrail.list({ action: 'account.disabled', limit: 1000 })).filter((candidate) => candidate.subjectUserId === user.id);
  t.is(event?.actorType, 'admin');
  t.regex(event?.actorId ?? '', /^cli(:.+)?$/);
  t.is(event?.detail.alreadyDisabled, false);

  const loginAgain = async () => signIn(new UserAgent(), (await authorizationRequest(as, client.client_id)).url, { email: user.email, password: PASSWORD });
  const browser = new UserAgent();
  const { response, url } = await browser.follow((await authorizationRequest(as, client.client_id)).url);
  const attempt = await browser.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(await response.text(), 'csrf'), email: user.email, password: PASSWORD });
  t.is(attempt.response.status, 401, 'a disabled account does not sign in');
  const enabled = await gatehouse(['users', 'enable', '--email', user.email]);
  t.is(enabled.code, 0, enabled.stderr);
  t.is(enabled.stdout, `enabled ${user.email}\n`);
  t.true((await loginAgain()).href.startsWith(REDIRECT_URI), 'enabled, it signs in again');
  // Revoked in the server's own store only when the CLI shares it (Redis); the CLI says so otherwise.
  if (config.redis) t.false((await introspect()).active, 'what was revoked stays revoked');

  const unknown = await gatehouse(['users', 'disable', '--email', `nobody-${crypto.randomUUID()}@example.com`]);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^gatehouse: no account has the email /);
});

test('wrong password and unknown email get the same answer', async (t) => {
  const { as, client, user, agent } = await spaWithUser();
  const answers = [];
  for (const email of [user.email, `nobody-${crypto.randomUUID()}@example.com`]) {
    const request = await authorizationRequest(as, client.client_id);
    const { response, url } = await agent.follow(request.url);
    const page = await response.text();
    const { response: answer } = await agent.submit(new URL(`${url.pathname}/login`, url), {
      csrf: formField(page, 'csrf'), email, password: 'wrong password entirely',
    });
    const body = (await answer.text()).replace(/value="[^"]*"/g, '').replace(/\/interaction\/[^/"]+/g, '');
    answers.push({ status: answer.status, body });
  }
  t.is(answers[0]!.status, 401);
  t.deepEqual(answers[0], answers[1]);
});

test('an email that cannot be an address (NUL byte, too long) gets the generic answer, not a 500', async (t) => {
  const { as, client, agent } = await spaWithUser();
  for (const email of ['a\u0000@example.com', `${'a'.repeat(400)}@example.com`]) {
    const request = await authorizationRequest(as, client.client_id);
    const { response, url } = await agent.follow(request.url);
    const page = await response.text();
    const { response: answer } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(page, 'csrf'), email, password: PASSWORD });
    t.is(answer.status, 401);
    t.regex(await answer.text(), /Incorrect email or password/);
  }
});

test('a login form without its CSRF token is refused', async (t) => {
  const { as, client, user, agent } = await spaWithUser();
  const request = await authorizationRequest(as, client.client_id);
  const { url } = await agent.follow(request.url);
  const { response } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: 'forged', email: user.email, password: PASSWORD });
  t.is(response.status, 403);
});

test('malformed requests get a 4xx in the protocol format, never a 500', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const probes: Array<[string, RequestInit]> = [
    [as.token_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=authorization_code&code=nope' }],
    [as.token_endpoint!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":' }],
    [as.token_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=password&client_id=${client.client_id}&username=a&password=b` }],
    [as.token_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&client_id=${client.client_id}&refresh_token=${'x'.repeat(5000)}` }],
    [as.userinfo_endpoint!, { headers: { authorization: 'Bearer not-a-token' } }],
    [as.revocation_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=abc' }],
    [as.introspection_endpoint!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=abc' }],
    [`${as.authorization_endpoint}?client_id=${'%00'.repeat(3)}`, {}],
    [`${server.issuer}/interaction/does-not-exist`, {}],
    [`${server.issuer}/interaction/does-not-exist/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'email=a' }],
  ];
  for (const [url, init] of probes) {
    const response = await fetch(url, { ...init, headers: { accept: 'application/json', ...(init.headers as Record<string, string>) } });
    const label = `${init.method ?? 'GET'} ${new URL(url).pathname}`;
    t.true(response.status >= 400 && response.status < 500, `${label} answered ${response.status}`);
    const body = await response.text();
    t.notRegex(body, /at .*\.(ts|js):\d+/, `${label} leaks a stack trace`);
    if (response.headers.get('content-type')?.includes('json')) t.truthy(JSON.parse(body).error, `${label} has an error code`);
  }
});

test('a protocol endpoint asked with a method it does not answer gets 405 with Allow, in JSON or as a page; its own methods pass', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['POST', '/auth', 'GET, HEAD'], ['GET', '/token', 'POST'], ['PUT', '/me', 'GET, HEAD, POST'], ['DELETE', '/jwks', 'GET, HEAD'],
    ['POST', '/session/end', 'GET, HEAD'], ['GET', '/token/introspection', 'POST'], ['POST', '/.well-known/openid-configuration', 'GET, HEAD'],
    ['GET', '/session/end/confirm', 'POST'], ['POST', '/session/end/success', 'GET, HEAD'],
    // Routes with a parameter: resuming an authorization, a registration's management (RFC 7592).
    ['POST', '/auth/some-uid', 'GET, HEAD'], ['PATCH', '/reg/some-client', 'GET, HEAD, PUT, DELETE'],
  ];
  for (const [method, path, allow] of cases) {
    const response = await fetch(`${server.issuer}${path}`, { method, headers: { accept: 'application/json' } });
    t.is(response.status, 405, `${method} ${path}`);
    t.is(response.headers.get('allow'), allow, `${method} ${path}`);
    t.is((await response.json() as { error: string }).error, 'invalid_request', `${method} ${path}`);
  }
  const page = await fetch(`${server.issuer}/auth`, { method: 'POST', headers: { accept: 'text/html' }, body: new URLSearchParams({ client_id: 'x', response_type: 'code' }) });
  t.is(page.status, 405);
  t.regex(await page.text(), /\/auth answers GET only/);
  t.is((await fetch(`${server.issuer}/jwks`, { method: 'HEAD' })).status, 200);
  t.is((await fetch(`${server.issuer}/me`, { method: 'POST' })).status, 401, 'userinfo takes POST: refused for want of a token, not a method');
  t.is((await fetch(`${server.issuer}/token`, { method: 'POST' })).status, 400);

  // A method no router knows (WebDAV's PROPFIND here) at one of Gatehouse's own paths: 405 with what the path takes,
  // not the routers' 501, a server error; at a path nothing serves, 404.
  const unknownMethod = await fetch(`${server.issuer}/healthz`, { method: 'PROPFIND', headers: { accept: 'application/json' } });
  t.is(unknownMethod.status, 405);
  t.deepEqual(unknownMethod.headers.get('allow')?.split(', ').sort(), ['GET', 'HEAD']);
  const nowhere = await fetch(`${server.issuer}/nowhere`, { method: 'PROPFIND', headers: { accept: 'application/json' } });
  t.is(nowhere.status, 404);
  t.is(nowhere.headers.get('allow'), null);
});

test('an address nothing answers is a 404 page for people and JSON for programs, not a bare "Not Found"', async (t) => {
  for (const path of ['/nowhere', '/account/nowhere', '/interaction/x/nowhere', '/assets/nope.css']) {
    const page = await fetch(`${server.issuer}${path}`, { headers: { accept: 'text/html' } });
    t.is(page.status, 404, path);
    t.regex(page.headers.get('content-type') ?? '', /^text\/html/, path);
    t.regex(await page.text(), /Page not found/, path);
  }
  const json = await fetch(`${server.issuer}/nowhere`, { headers: { accept: 'application/json' } });
  t.is(json.status, 404);
  t.like(await json.json(), { error: 'not_found' });
});
