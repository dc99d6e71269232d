// HTTP-level guarantees around the protocol: CORS only for a single-page app's own origins and only
// on the endpoints a browser app calls, security headers and cookie flags on pages, pushed
// authorization requests and DPoP (both kept on, so both tested), and the health endpoints.
import test, { type ExecutionContext } from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { UserAgent, formField, isRedirect } from './helpers/user-agent.ts';
import { PATHS, pathTo, type PathName } from '../src/web/paths.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

const SPA_ORIGIN = new URL(REDIRECT_URI).origin;

async function tokenRequestFrom(origin: string, clientId: string) {
  return fetch(`${server.issuer}/token`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'refresh_token', client_id: clientId, refresh_token: 'unknown' }),
  });
}

test('the token endpoint answers CORS requests from the SPA’s redirect URI origin only', async (t) => {
  const { client } = await registerSpa(server);
  const allowed = await tokenRequestFrom(SPA_ORIGIN, client.client_id);
  t.is(allowed.headers.get('access-control-allow-origin'), SPA_ORIGIN);
  t.is((await allowed.json() as { error: string }).error, 'invalid_grant', 'the request itself was processed');

  const foreign = await tokenRequestFrom('https://evil.example', client.client_id);
  t.is(foreign.headers.get('access-control-allow-origin'), null);
  t.is(foreign.status, 400);
});

test('userinfo and revocation allow the SPA origin; introspection allows no browser origin', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);

  const userinfo = await fetch(as.userinfo_endpoint!, { headers: { origin: SPA_ORIGIN, authorization: `Bearer ${tokens.access_token}` } });
  t.is(userinfo.status, 200);
  t.is(userinfo.headers.get('access-control-allow-origin'), SPA_ORIGIN);

  const form = (token: string) => ({
    method: 'POST',
    headers: { origin: SPA_ORIGIN, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ token, client_id: client.client_id }),
  });
  const introspection = await fetch(as.introspection_endpoint!, form(tokens.access_token));
  t.is(introspection.headers.get('access-control-allow-origin'), null);
  t.is(introspection.status, 400);

  const revocation = await fetch(as.revocation_endpoint!, form(tokens.refresh_token!));
  t.is(revocation.status, 200);
  t.is(revocation.headers.get('access-control-allow-origin'), SPA_ORIGIN);
});

/** A browser's preflight before a cross-origin POST with a JSON Accept and a DPoP proof. */
async function preflight(path: string, origin: string, method = 'POST') {
  const response = await fetch(`${server.issuer}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type,dpop' },
  });
  await response.arrayBuffer();
  return response;
}

function accessControlHeaders(response: Response): string[] {
  return [...response.headers.keys()].filter((name) => name.startsWith('access-control-'));
}

test('CORS preflights succeed only from a registered SPA’s origin: not before it is registered, nor after it is deleted', async (t) => {
  // An origin of this test's own: other tests register SPAs at REDIRECT_URI's origin.
  const origin = `https://spa-${crypto.randomUUID()}.example`;
  const refused = await preflight('/token', origin);
  t.is(refused.headers.get('access-control-allow-origin'), null, 'an origin no client has is refused');
  t.deepEqual(accessControlHeaders(refused), []);
  t.is(refused.status, 403);

  const metadata = await server.runtime.clients.create({ name: 'Preflight SPA', type: 'spa', redirectUris: [`${origin}/callback`] });
  for (const path of ['/token', '/me', '/token/revocation', '/request']) {
    const allowed = await preflight(path, origin);
    t.is(allowed.status, 204, path);
    t.is(allowed.headers.get('access-control-allow-origin'), origin, path);
    t.regex(allowed.headers.get('access-control-allow-methods') ?? '', /POST/, path);
    t.is(allowed.headers.get('access-control-allow-headers'), 'content-type,dpop', path);
  }
  const foreign = await preflight('/token', 'https://evil.example');
  t.deepEqual(accessControlHeaders(foreign), [], 'the SPA’s registration opens nothing to other origins');
  t.deepEqual(accessControlHeaders(await preflight('/token/introspection', origin)), [], 'introspection is for no browser app');

  t.true(await server.runtime.clients.delete(metadata.client_id));
  const deleted = await preflight('/token', origin);
  t.is(deleted.headers.get('access-control-allow-origin'), null, 'the deleted SPA’s origin is refused at once');
  t.is(deleted.status, 403);
});

test('discovery and the JWKS answer CORS preflights from every origin; real requests are untouched by the preflight check', async (t) => {
  for (const path of ['/.well-known/openid-configuration', '/jwks']) {
    const response = await preflight(path, 'https://anyone.example', 'GET');
    t.is(response.status, 204, path);
    t.is(response.headers.get('access-control-allow-origin'), 'https://anyone.example', path);
  }
  const jwks = await fetch(`${server.issuer}/jwks`, { headers: { origin: 'https://anyone.example' } });
  t.is(jwks.headers.get('access-control-allow-origin'), 'https://anyone.example');
  // Not a preflight (no Access-Control-Request-Method): the engine's own answer, no CORS headers.
  const plain = await fetch(`${server.issuer}/token`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } });
  t.is(plain.headers.get('access-control-allow-origin'), null);
});

test('pages carry CSP and the other security headers; cookies are HttpOnly and SameSite', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const request = await authorizationRequest(as, client.client_id);
  const agent = new UserAgent();
  const first = await agent.request(request.url);
  const cookies = first.headers.getSetCookie();
  t.true(cookies.length > 0);
  for (const cookie of cookies) {
    t.regex(cookie, /httponly/i, cookie.split('=')[0]);
    t.regex(cookie, /samesite=lax/i, cookie.split('=')[0]);
  }
  const { response } = await agent.follow(request.url);
  t.is(response.status, 200);
  const csp = response.headers.get('content-security-policy') ?? '';
  t.regex(csp, /default-src 'none'/);
  t.regex(csp, /frame-ancestors 'none'/);
  t.regex(csp, new RegExp(`form-action 'self' ${SPA_ORIGIN.replaceAll('.', '\\.')}`), 'the redirect back to the client is allowed');
  t.is(response.headers.get('x-frame-options'), 'DENY');
  t.is(response.headers.get('x-content-type-options'), 'nosniff');
  t.is(response.headers.get('referrer-policy'), 'no-referrer');
  t.is(response.headers.get('cache-control'), 'no-store');
  const page = await response.text();
  t.regex(page, /<label for="email">Email<\/label>/);
  t.regex(page, /<label for="password">Password<\/label>/);
  t.regex(page, /name="viewport"/);
});

test('template output is escaped: a hostile client name cannot inject markup', async (t) => {
  const as = await discover(server);
  const metadata = await server.runtime.clients.create({ name: '<script>alert(1)</script>', type: 'spa', redirectUris: [REDIRECT_URI] });
  const request = await authorizationRequest(as, metadata.client_id);
  const { response } = await new UserAgent().follow(request.url);
  const page = await response.text();
  t.false(page.includes('<script>alert(1)</script>'));
  t.true(page.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
});

test('pushed authorization requests (PAR) work with PKCE', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const request = await authorizationRequest(as, client.client_id);
  const pushed = await oauth.processPushedAuthorizationResponse(as, client, await oauth.pushedAuthorizationRequest(
    as, client, oauth.None(), request.url.searchParams, insecure,
  ));
  const url = new URL(as.authorization_endpoint!);
  url.searchParams.set('client_id', client.client_id);
  url.searchParams.set('request_uri', pushed.request_uri);
  const callback = await signIn(new UserAgent(), url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  t.truthy(tokens.access_token);

  // From the single-page app itself, in the browser (a simple POST: no preflight): its origin may read the answer.
  const fromBrowser = await fetch(as.pushed_authorization_request_endpoint!, {
    method: 'POST', headers: { origin: new URL(REDIRECT_URI).origin, 'content-type': 'application/x-www-form-urlencoded' }, body: (await authorizationRequest(as, client.client_id)).url.searchParams,
  });
  t.is(fromBrowser.status, 201);
  t.is(fromBrowser.headers.get('access-control-allow-origin'), new URL(REDIRECT_URI).origin);

  const withoutPkce = await oauth.pushedAuthorizationRequest(as, client, oauth.None(), { redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid' }, insecure);
  const error = await t.throwsAsync(oauth.processPushedAuthorizationResponse(as, client, withoutPkce), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_request');
});

async function pushAuthorizationRequest(as: oauth.AuthorizationServer, client: oauth.Client) {
  const request = await authorizationRequest(as, client.client_id);
  const pushed = await oauth.processPushedAuthorizationResponse(as, client, await oauth.pushedAuthorizationRequest(
    as, client, oauth.None(), request.url.searchParams, insecure,
  ));
  const url = new URL(as.authorization_endpoint!);
  url.searchParams.set('client_id', String(client.client_id));
  url.searchParams.set('request_uri', pushed.request_uri);
  return { request, url };
}

async function expectRequestUriRefused(t: ExecutionContext, url: URL, agent = new UserAgent()): Promise<void> {
  const { response } = await agent.follow(url);
  const page = await response.text();
  t.is(response.status, 400);
  t.true(page.includes('invalid_request_uri'), page.slice(0, 500));
}

test('a PAR request_uri serves one authorization request: used again it is refused, while the first sign-in completes', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const { request, url } = await pushAuthorizationRequest(as, client);
  const agent = new UserAgent();
  const first = await agent.follow(url);
  await first.response.arrayBuffer();
  t.true(first.url.pathname.startsWith('/interaction/'), 'the first use starts a sign-in');

  await expectRequestUriRefused(t, url);
  await expectRequestUriRefused(t, url, agent);

  // The first sign-in goes on from its login page (it resumes at /auth/:uid after login and consent).
  const callback = await signIn(agent, first.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  t.truthy(tokens.access_token);
  await expectRequestUriRefused(t, url, agent);

  // Signed in already: the next request_uri is answered at once (no sign-in pages), and once only.
  const next = await pushAuthorizationRequest(as, client);
  const { response, url: nextCallback } = await agent.follow(next.url);
  t.true(isRedirect(response.status));
  t.truthy(oauth.validateAuthResponse(as, client, nextCallback, next.request.state).get('code'));
  await expectRequestUriRefused(t, next.url, agent);
});

test('DPoP binds tokens to the client’s key: without a proof the access token is refused', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const dpop = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const exchange = () => oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, { ...insecure, DPoP: dpop });
  let response = await exchange();
  // The server may ask for a nonce first; oauth4webapi remembers it, so one retry is what a client does.
  if (response.status === 400 && response.headers.get('dpop-nonce')) response = await exchange();
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce });
  t.is(tokens.token_type, 'dpop');

  const withProof = await oauth.userInfoRequest(as, client, tokens.access_token, { ...insecure, DPoP: dpop });
  t.is(withProof.status, 200);
  const asBearer = await oauth.userInfoRequest(as, client, tokens.access_token, insecure);
  t.is(asBearer.status, 401, 'a stolen DPoP-bound token is useless without the key');
});

test('health: /healthz says the process is up, /readyz that the database and the store are', async (t) => {
  const health = await fetch(`${server.issuer}/healthz`);
  t.is(health.status, 200);
  t.deepEqual(await health.json(), { status: 'ok' });
  const ready = await fetch(`${server.issuer}/readyz`);
  t.is(ready.status, 200);
  t.deepEqual(await ready.json(), { status: 'ready', checks: { database: 'up', store: 'up' } });
});

test('discovery offers every algorithm Gatehouse signs with for ID tokens, RS256 first (the default)', async (t) => {
  const as = await discover(server);
  t.deepEqual(as.id_token_signing_alg_values_supported, ['RS256', 'ES256', 'EdDSA']);
});

test('response_mode=form_post: the engine’s auto-submitting page is allowed its script and its post to the client', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id, { response_mode: 'form_post' });
  let { response, url } = await agent.follow(request.url);
  const login = await response.text();
  ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(login, 'csrf'), email: user.email, password: PASSWORD }));
  const consent = await response.text();
  ({ response } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(consent, 'csrf') }));
  t.is(response.status, 200);
  const page = await response.text();
  t.true(page.includes(`action="${REDIRECT_URI}"`));
  t.regex(page, /name="code"/);
  const csp = response.headers.get('content-security-policy') ?? '';
  const script = /<script>([\s\S]*?)<\/script>/.exec(page)![1]!;
  const { createHash } = await import('node:crypto');
  t.true(csp.includes(`'sha256-${createHash('sha256').update(script).digest('base64')}'`), 'the inline script is allowed by its hash');
  t.notRegex(csp, /form-action/, 'the post to the (already checked) client is not blocked');
  t.regex(csp, /default-src 'none'/);
});

test('every other page keeps form-action and no inline script', async (t) => {
  const response = await fetch(`${server.issuer}/interaction/unknown`, { headers: { accept: 'text/html' } });
  const csp = response.headers.get('content-security-policy') ?? '';
  t.regex(csp, /form-action 'self'/);
  t.regex(csp, /script-src 'self'(;|$)/);
});

test('every path of the route table (src/web/paths.ts) is served by Gatehouse: none is left for the engine to refuse as unknown', async (t) => {
  const statuses = async (path: string) => Promise.all(['GET', 'POST'].map(async (method) => {
    const response = await fetch(`${server.issuer}${path}`, { method, redirect: 'manual', headers: { accept: 'text/html' } });
    await response.body?.cancel();
    return response.status;
  }));
  t.deepEqual(await statuses('/account-not-a-page'), [404, 404], 'a path no router serves is a 404 either way');
  for (const name of Object.keys(PATHS) as PathName[]) {
    const answers = await statuses(pathTo(name, { uid: 'not-a-sign-in', name: 'gatehouse.css', clientId: 'not-a-client' }));
    t.true(answers.some((status) => status !== 404), `${name} (${PATHS[name]}): ${answers.join(', ')}`);
  }
});

test('the issuer\'s own address answers a small page saying what this is, with the way to the account and to discovery', async (t) => {
  const response = await fetch(`${server.issuer}/`, { headers: { accept: 'text/html' } });
  t.is(response.status, 200);
  t.regex(response.headers.get('content-type') ?? '', /^text\/html/);
  t.is(response.headers.get('set-cookie'), null, 'no cookie for a page without a form');
  t.truthy(response.headers.get('content-security-policy'));
  const html = await response.text();
  t.regex(html, /<h1[^>]*>Gatehouse<\/h1>/);
  t.regex(html, new RegExp(`sign-in service of ${new URL(server.issuer).host.replace(/\./g, '\\.')}`));
  t.true(html.includes('href="/account"'));
  t.true(html.includes('href="/.well-known/openid-configuration"'));
  const discovery = await fetch(`${server.issuer}/.well-known/openid-configuration`);
  t.is(discovery.status, 200, 'the link leads somewhere');
});
