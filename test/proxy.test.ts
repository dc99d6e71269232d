// Behind a TLS-terminating proxy: the client's address is read from the right of X-Forwarded-For (as many
// entries as there are trusted proxies), every URL Gatehouse writes comes from ISSUER whatever the Host or
// X-Forwarded-Host says, discovery and the JWKS are cacheable on purpose, and with an https ISSUER a
// plain-HTTP request gets neither a page nor a cookie.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import test from 'ava';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, registerSpa, signIn } from './helpers/oauth.ts';
import { UserAgent, formField, page, post } from './helpers/user-agent.ts';
import { DISCOVERY_MAX_AGE_SECONDS } from '../src/oidc/provider.ts';

const HTTPS_ISSUER = 'https://id.example.test';

let oneProxy: TestServer;
let twoProxies: TestServer;
let httpsOnly: TestServer;
test.before(async () => {
  // One after another: embedded databases starting at once hold the event loop for seconds.
  oneProxy = await startTestServer({ TRUST_PROXY: 'true', RESET_LIMIT_PER_IP: '3/600' });
  twoProxies = await startTestServer({ TRUST_PROXY: 'true', TRUSTED_PROXY_HOPS: '2' });
  httpsOnly = await startTestServer({ TRUST_PROXY: 'true', ISSUER: HTTPS_ISSUER });
});
test.after.always(async () => {
  await Promise.all([oneProxy?.close(), twoProxies?.close(), httpsOnly?.close()]);
});

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request with headers fetch() will not send as given (Host), straight to the test server's port. */
function rawRequest(server: TestServer, path: string, headers: Record<string, string>, method = 'GET'): Promise<RawResponse> {
  const { hostname, port } = new URL(server.issuer);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest({ host: hostname, port, path, method, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, body }));
    });
    outgoing.on('error', reject);
    outgoing.end();
  });
}

/** A wrong password at the login page, from the proxy's point of view; the address the audit trail recorded. */
async function failedSignInRecordedAs(server: TestServer, forwardedFor: string): Promise<string | null | undefined> {
  const { client } = await registerSpa(server);
  const agent = new UserAgent({ headers: { 'x-forwarded-for': forwardedFor } });
  const login = await agent.follow((await authorizationRequest(await discover(server), client.client_id)).url);
  const html = await login.response.text();
  const email = `nobody-${crypto.randomUUID()}@example.com`;
  const refused = await post(agent, new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(html, 'csrf'), email, password: 'not the password at all' });
  if (refused.status !== 401) throw new Error(`expected 401, got ${refused.status}`);
  await server.runtime.auditTrail.flush();
  const [event] = await server.runtime.auditTrail.list({ action: 'login.failed', limit: 1000 }).then((events) => events.filter((candidate) => candidate.subjectEmail === email));
  return event?.ip;
}

test('per-IP limits count the address the proxy saw (the rightmost entry), not what the client wrote in front of it', async (t) => {
  const statuses: number[] = [];
  for (let attempt = 1; attempt <= 4; attempt += 1) {
    const agent = new UserAgent({ headers: { 'x-forwarded-for': `203.0.113.${attempt}, 198.51.100.7` } });
    const form = await page(agent, `${oneProxy.issuer}/password/forgot`);
    const sent = await post(agent, `${oneProxy.issuer}/password/forgot`, { csrf: formField(form.html, 'csrf'), email: `someone-${attempt}@example.com` });
    statuses.push(sent.status);
  }
  t.deepEqual(statuses, [200, 200, 200, 429], 'RESET_LIMIT_PER_IP=3 holds for 198.51.100.7');
  const other = new UserAgent({ headers: { 'x-forwarded-for': '198.51.100.8' } });
  const form = await page(other, `${oneProxy.issuer}/password/forgot`);
  t.is((await post(other, `${oneProxy.issuer}/password/forgot`, { csrf: formField(form.html, 'csrf'), email: 'someone@example.com' })).status, 200, 'another client is not limited');
});

test('the audit trail records the address the proxy saw; with TRUSTED_PROXY_HOPS=2 (a CDN in front of the proxy), the one the CDN saw', async (t) => {
  t.is(await failedSignInRecordedAs(oneProxy, '6.6.6.6, 198.51.100.7'), '198.51.100.7');
  t.is(await failedSignInRecordedAs(twoProxies, '6.6.6.6, 192.0.2.9, 10.0.0.1'), '192.0.2.9');
  t.is(await failedSignInRecordedAs(twoProxies, '192.0.2.10, 10.0.0.1'), '192.0.2.10');
});

test('the sessions page shows the address the proxy saw for a sign-in', async (t) => {
  const user = await createUser(oneProxy);
  const { client } = await registerSpa(oneProxy);
  const agent = new UserAgent({ headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.7' } });
  const callback = await signIn(agent, (await authorizationRequest(await discover(oneProxy), client.client_id)).url, { email: user.email, password: PASSWORD });
  t.true(callback.href.startsWith(REDIRECT_URI));
  const sessions = await oneProxy.runtime.accountSessions.list(user.id);
  t.deepEqual(sessions.map((session) => session.ip), ['198.51.100.7']);
});

test('discovery names ISSUER\'s endpoints whatever Host and X-Forwarded-Host say, and may be cached for a while; so may the JWKS', async (t) => {
  const forged = { host: 'evil.example:8443', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' };
  const discovery = await rawRequest(httpsOnly, '/.well-known/openid-configuration', forged);
  t.is(discovery.status, 200);
  const metadata = JSON.parse(discovery.body) as Record<string, unknown>;
  t.is(metadata.issuer, HTTPS_ISSUER);
  const urls = Object.entries(metadata).filter(([name, value]) => typeof value === 'string' && (name.endsWith('_endpoint') || name.endsWith('_uri')));
  t.true(urls.length >= 6);
  for (const [name, value] of urls) t.true(String(value).startsWith(`${HTTPS_ISSUER}/`), `${name}: ${String(value)}`);
  t.is(discovery.headers['cache-control'], `public, max-age=${DISCOVERY_MAX_AGE_SECONDS}`);

  const jwks = await rawRequest(httpsOnly, '/jwks', forged);
  t.is(jwks.status, 200);
  // A quarter of the default rotation delay (an hour) would be 900: five minutes at most.
  t.is(jwks.headers['cache-control'], 'public, max-age=300');
});

test('the redirect after the password (to resume the authorization) is built from ISSUER, not from X-Forwarded-Host', async (t) => {
  const user = await createUser(httpsOnly);
  const { client } = await registerSpa(httpsOnly);
  const request = await authorizationRequest({ issuer: HTTPS_ISSUER, authorization_endpoint: `${HTTPS_ISSUER}/auth` }, client.client_id);
  const agent = new UserAgent({ headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' } });
  const login = await agent.follow(`${httpsOnly.issuer}${request.url.pathname}${request.url.search}`);
  t.is(login.url.origin, httpsOnly.issuer, 'the login page is on this server');
  const html = await login.response.text();
  const resumed = await agent.submit(new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(html, 'csrf'), email: user.email, password: PASSWORD });
  t.is(resumed.url.origin, HTTPS_ISSUER);
  t.regex(resumed.url.pathname, /^\/auth\/[\w-]+$/);
});

test('plain HTTP to a path that reads as another host (//host/, /\\host/) is still redirected to ISSUER, never away', async (t) => {
  for (const path of ['//evil.example/path?x=1', '/\\evil.example/path', '///evil.example/', '/%2F%2Fevil.example/']) {
    const answer = await rawRequest(httpsOnly, path, {}, path.endsWith('/') ? 'HEAD' : 'GET');
    t.is(answer.status, 308, path);
    t.is(new URL(answer.headers.location!).origin, HTTPS_ISSUER, `${path} → ${answer.headers.location}`);
  }
  const withQuery = await rawRequest(httpsOnly, '//evil.example/path?x=1', {});
  t.is(withQuery.headers.location, `${HTTPS_ISSUER}//evil.example/path?x=1`, 'the path and query are kept, on ISSUER');
});

test('with an https ISSUER, plain HTTP gets a redirect to ISSUER (GET) or a refusal, never a cookie; over HTTPS cookies are Secure', async (t) => {
  const plain = await rawRequest(httpsOnly, '/account?x=1', { host: 'evil.example' });
  t.is(plain.status, 308);
  t.is(plain.headers.location, `${HTTPS_ISSUER}/account?x=1`);
  t.is(plain.headers['set-cookie'], undefined);

  const { client } = await registerSpa(httpsOnly);
  const request = await authorizationRequest({ issuer: HTTPS_ISSUER, authorization_endpoint: `${HTTPS_ISSUER}/auth` }, client.client_id);
  const path = `${request.url.pathname}${request.url.search}`;
  const plainAuthorization = await rawRequest(httpsOnly, path, {});
  t.is(plainAuthorization.status, 308);
  t.is(plainAuthorization.headers['set-cookie'], undefined, 'no interaction cookie over plain HTTP');

  const token = await rawRequest(httpsOnly, '/token', { 'content-type': 'application/x-www-form-urlencoded' }, 'POST');
  t.is(token.status, 403);
  t.is((JSON.parse(token.body) as { error: string }).error, 'invalid_request');

  const health = await rawRequest(httpsOnly, '/healthz', {});
  t.is(health.status, 200, 'orchestrators probe the port over plain HTTP');

  const secure = await rawRequest(httpsOnly, path, { 'x-forwarded-proto': 'https' });
  t.is(secure.status, 303);
  const cookies = secure.headers['set-cookie'] ?? [];
  t.true(cookies.length > 0);
  for (const cookie of cookies) t.regex(cookie, /;\s*secure/i, cookie.split('=')[0]);

  // The login page's CSRF cookie is __Host-: no sibling subdomain (same-site, which SameSite lets through) can plant one.
  const login = await rawRequest(httpsOnly, secure.headers.location!.replace(HTTPS_ISSUER, ''), {
    'x-forwarded-proto': 'https', cookie: cookies.map((cookie) => cookie.split(';')[0]).join('; '),
  });
  t.is(login.status, 200);
  const csrfCookies = (login.headers['set-cookie'] ?? []).filter((cookie) => cookie.includes('csrf'));
  t.true(csrfCookies.length > 0);
  for (const cookie of csrfCookies) {
    t.regex(cookie, /^__Host-gatehouse\.csrf(\.sig)?=/);
    t.regex(cookie, /;\s*path=\/;/i);
    t.regex(cookie, /;\s*secure/i);
  }
});
