// A bounded fuzzing run: thousands of malformed requests against every endpoint and page (wrong content
// types, oversized bodies, repeated and missing parameters, broken base64 and JWTs, Unicode, injection
// strings) get a 4xx or an answer, never a 5xx, and the server stays healthy. The run is seeded: a failure
// names its seed and request, so it can be replayed with FUZZ_SEED.
import test, { type ExecutionContext } from 'ava';
import { startTestServer, type TestServer } from './helpers/server.ts';
import * as oauth from 'oauth4webapi';
import { discover, insecure, registerSpa } from './helpers/oauth.ts';

const REQUESTS = 3000;
const CONCURRENCY = 8;
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

let server: TestServer;
let clientId: string;
/** What a real caller holds, so that requests get past authentication into the handlers: an admin API token and a service's credentials. */
let adminToken: string;
let serviceBasic: string;

test.before(async () => {
  // Limits stay on (a refusal is a fine answer), but high enough for the run to reach every handler.
  server = await startTestServer({
    TOKEN_LIMIT_PER_IP: '100000/60', LOGIN_LIMIT_PER_IP: '100000/60', SIGNUP_LIMIT_PER_IP: '100000/60',
    RESET_LIMIT_PER_IP: '100000/60', EMAILED_LINK_LIMIT_PER_IP: '100000/60', ADMIN_API_LIMIT_PER_IP: '100000/60',
  });
  clientId = (await registerSpa(server)).metadata.client_id;
  const admin = `${server.issuer}/admin/v1`;
  const service = await server.runtime.clients.create({ name: 'Fuzzing script', type: 'service', apiScopes: ['admin:read', 'admin:write'] });
  serviceBasic = `Basic ${Buffer.from(`${service.client_id}:${String(service.client_secret)}`).toString('base64')}`;
  const as = await discover(server);
  const client = { client_id: service.client_id };
  const answer = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(String(service.client_secret)), new URLSearchParams({ resource: admin, scope: 'admin:read admin:write' }), insecure);
  adminToken = (await oauth.processClientCredentialsResponse(as, client, answer)).access_token;
});
test.after.always(async () => {
  await server?.close();
});

/** mulberry32: small, seeded, good enough to pick inputs. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

const PATHS = [
  '/auth', '/auth/x', '/token', '/token/introspection', '/token/revocation', '/me', '/jwks', '/reg', '/reg/nobody', '/request',
  '/session/end', '/session/end/confirm', '/session/end/success', '/.well-known/openid-configuration',
  '/interaction/x', '/interaction/x/login', '/interaction/x/confirm', '/interaction/x/abort', '/interaction/x/second-factor',
  '/interaction/x/second-factor/enroll', '/interaction/x/sign-up', '/interaction/x/password/forgot',
  '/password/forgot', '/password/reset', '/verify-email', '/verify-email/resend', '/email/confirm-change', '/email/restore',
  '/account', '/account/callback', '/account/email', '/account/password', '/account/two-factor/start', '/account/sessions/end-all',
  '/account/applications/x/remove', '/admin/v1/users', '/admin/v1/users/x', '/admin/v1/clients', '/admin/v1/audit-events',
  '/admin/v1/openapi.json', '/metrics', '/healthz', '/readyz', '/assets/x', '/', '/favicon.ico', '/nowhere',
  '/admin/v1/users/count', '/admin/v1/users/x/roles/x', '/admin/v1/users/x/sessions/x', '/admin/v1/users/x/applications/x',
  '/admin/v1/users/x/unlock', '/admin/v1/apis', '/admin/v1/apis/x', '/admin/v1/roles', '/admin/v1/roles/x', '/admin/v1/roles/x/permissions',
  '/admin/v1/clients/x', '/admin/v1/clients/x/secret', '/admin/v1/initial-access-tokens', '/admin/v1/initial-access-tokens/x',
];
const METHODS = ['GET', 'POST', 'POST', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'];
const PARAMETERS = [
  'grant_type', 'code', 'redirect_uri', 'client_id', 'client_secret', 'refresh_token', 'code_verifier', 'scope', 'resource',
  'token', 'token_type_hint', 'response_type', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'prompt',
  'id_token_hint', 'post_logout_redirect_uri', 'request', 'request_uri', 'client_assertion', 'client_assertion_type',
  'email', 'password', 'name', 'totp', 'xsrf', 'csrf', 'logout', 'uid', 'limit', 'cursor', 'max_age', 'acr_values', 'ui_locales',
  'description', 'identifier', 'type', 'role', 'user_email', 'action', 'outcome', 'since', 'until', 'client_name', 'redirect_uris',
];
const JWT_LIKE = [
  'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA', 'a.b.c', '...', 'eyJ.eyJ.eyJ', 'eyJhbGciOiJSUzI1NiIsImtpZCI6Ii4uLy4uIn0.e30.x',
  `${Buffer.from('{"alg":"ES256","typ":"at+jwt"}').toString('base64url')}.${Buffer.from('{"exp":"soon","aud":[1,2]}').toString('base64url')}.sig`,
];
const NASTY = [
  '', ' ', '\u0000', '%00', '%ED%A0%80', '\uD800', '😀'.repeat(50), 'ﷺ', '\u202Eevil', 'ä'.repeat(300), '\r\nSet-Cookie: x=1',
  "' OR 1=1--", '"; DROP TABLE users; --', '<script>alert(1)</script>', '${jndi:ldap://x}', '{{7*7}}', '<%= 7*7 %>', '../../../../etc/passwd',
  'javascript:alert(1)', 'http://169.254.169.254/', 'https://evil.example/cb', 'openid openid openid', '-1', '1e309', 'NaN', '[]', '{}',
  'null', 'true', 'x'.repeat(5000), '%', '%%', '%zz', '+', '&', '=', 'a=b&c', '__proto__', 'constructor', 'S256', 'plain',
  ...JWT_LIKE,
];
const CONTENT_TYPES = [
  'application/x-www-form-urlencoded', 'application/json', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml',
  'application/x-www-form-urlencoded; charset=utf-16', 'application/json; charset=latin1', '', 'garbage', '*/*',
];

interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
}

function pick<T>(next: () => number, items: readonly T[]): T {
  return items[Math.floor(next() * items.length)]!;
}

/** A value as a path segment; a lone surrogate (no URL can hold it) as the bytes a broken client would send. */
function pathSegment(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return '%ED%A0%80';
  }
}

/** Where requests go and what they carry: every endpoint and page, or the admin API with a valid token. */
interface Surface {
  paths: readonly string[];
  methods: readonly string[];
  parameters: readonly string[];
  contentTypes: readonly string[];
  /** The share of admin API requests that carry a valid admin token (so that they reach the handlers). */
  adminTokenShare: number;
}

const EVERYWHERE: Surface = { paths: PATHS, methods: METHODS, parameters: PARAMETERS, contentTypes: CONTENT_TYPES, adminTokenShare: 0.6 };
const ADMIN_API: Surface = {
  paths: PATHS.filter((path) => path.startsWith('/admin/')),
  methods: ['GET', 'GET', 'GET', 'POST', 'POST', 'PATCH', 'PUT', 'DELETE'],
  parameters: [
    'email', 'name', 'role', 'disabled', 'limit', 'cursor', 'user_email', 'client_id', 'action', 'outcome', 'since', 'until', 'type',
    'description', 'identifier', 'password', 'redirect_uris', 'scopes', 'email_verified', 'roles', 'access_token_format', 'uses',
  ],
  contentTypes: ['application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'text/plain', ''],
  adminTokenShare: 0.95,
};

function fuzzRequest(next: () => number, surface: Surface = EVERYWHERE): FuzzRequest {
  const method = pick(next, surface.methods);
  const path = pick(next, surface.paths).replace(/\/x/g, () => `/${pathSegment(pick(next, NASTY)) || 'x'}`);
  const fields: Array<[string, string]> = [];
  for (let count = Math.floor(next() * 6); count > 0; count -= 1) {
    const name = next() < 0.9 ? pick(next, surface.parameters) : pick(next, NASTY);
    const value = next() < 0.15 ? clientId : pick(next, NASTY);
    fields.push([name, value]);
    if (next() < 0.2) fields.push([name, pick(next, NASTY)]); // the same parameter again
  }
  const encoded = next() < 0.1
    ? fields.map(([name, value]) => `${name}=${value}`).join('&') // not encoded at all
    : new URLSearchParams(fields).toString();
  const headers: Record<string, string> = {};
  const contentType = pick(next, surface.contentTypes);
  if (contentType) headers['content-type'] = contentType;
  const authorization = next();
  if (path.startsWith('/admin/') && next() < surface.adminTokenShare) headers.authorization = `Bearer ${adminToken}`;
  else if (next() < 0.1) headers.authorization = serviceBasic;
  else if (authorization < 0.15) headers.authorization = `Basic ${pick(next, ['!!!', 'Og==', Buffer.from(`${clientId}:${pick(next, NASTY)}`).toString('base64'), Buffer.from('%ZZ:%').toString('base64'), 'YQ'])}`;
  else if (authorization < 0.3) headers.authorization = `Bearer ${pick(next, [...JWT_LIKE, 'x'.repeat(3000), '', '\u00e9'])}`;
  else if (authorization < 0.35) headers.authorization = pick(next, ['Basic', 'Bearer', 'DPoP x', 'Negotiate x', 'basic   ']);
  if (next() < 0.1) headers.dpop = pick(next, JWT_LIKE);
  if (next() < 0.1) headers.cookie = `_session=${pick(next, NASTY).replace(/[\r\n;]/g, '')}; _interaction=x; gatehouse.sid=${'y'.repeat(100)}`;
  if (next() < 0.1) headers.origin = pick(next, ['null', 'https://evil.example', 'http://127.0.0.1:4999']);
  if (next() < 0.05) headers['x-forwarded-for'] = pick(next, ['1.1.1.1, 2.2.2.2', 'garbage', '::1']);
  const query = method === 'GET' || next() < 0.3 ? `?${encoded}` : '';
  let body: string | Uint8Array<ArrayBuffer> | undefined;
  if (method !== 'GET' && method !== 'HEAD') {
    const shape = next();
    if (shape < 0.5) body = encoded;
    else if (shape < 0.65) body = JSON.stringify(Object.fromEntries(fields));
    else if (shape < 0.75) body = `{"grant_type": ${pick(next, ['[', '{', '"x', 'null'])}`;
    else if (shape < 0.85) body = 'a='.padEnd(200_000 + Math.floor(next() * 900_000), 'x'); // oversized
    else if (shape < 0.95) body = new Uint8Array(Array.from({ length: 256 }, () => Math.floor(next() * 256))); // binary
  }
  // Headers with characters no HTTP client may send are left out (fetch would refuse them itself).
  for (const [name, value] of Object.entries(headers)) if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) delete headers[name];
  return { method, path: `${path}${query}`.slice(0, 7000), headers, body };
}

test('thousands of malformed requests get no 5xx, and the server stays healthy', async (t) => {
  await fuzz(t, Array.from({ length: REQUESTS }, ((next) => () => fuzzRequest(next))(random(SEED))));
});

test('the admin API, called with a valid token and malformed paths, queries and bodies, answers no 5xx', async (t) => {
  await fuzz(t, Array.from({ length: REQUESTS / 2 }, ((next) => () => fuzzRequest(next, ADMIN_API))(random(SEED + 1))));
});

/** Sends the requests, CONCURRENCY at a time: none may get a 5xx or a stack trace, and the server must stay healthy. */
async function fuzz(t: ExecutionContext, requests: readonly FuzzRequest[]): Promise<void> {
  const failures: string[] = [];
  const statuses = new Map<number, number>();
  let index = 0;
  async function worker(): Promise<void> {
    while (index < requests.length) {
      const position = index++;
      const request = requests[position]!;
      let status: number;
      try {
        const response = await fetch(`${server.issuer}${request.path}`, { method: request.method, headers: request.headers, body: request.body, redirect: 'manual' });
        status = response.status;
        const text = await response.text();
        if (/\bat .+\.(ts|js):\d+/.test(text)) failures.push(`#${position} ${request.method} ${request.path}: a stack trace in the answer`);
      } catch (error) {
        // The server refusing a request outright (431 comes as a closed connection for some clients) is fine;
        // a server that stops answering is not, and /healthz below says so.
        status = 0;
        void error;
      }
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status >= 500) failures.push(`#${position} ${request.method} ${request.path.slice(0, 200)} (${JSON.stringify(request.headers).slice(0, 300)}): ${status}`);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  t.log(`seed ${SEED}; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}`);
  t.deepEqual(failures.slice(0, 20), [], `FUZZ_SEED=${SEED}`);
  t.true((statuses.get(0) ?? 0) < REQUESTS / 100, 'nearly every request is answered');
  t.is((await fetch(`${server.issuer}/readyz`)).status, 200, 'still healthy');
  const discovery = await fetch(`${server.issuer}/.well-known/openid-configuration`);
  t.is(discovery.status, 200, 'and still serving');
}

test('headers and bodies are bounded: 431 for headers past 16 KB, a 4xx for a body past its endpoint’s limit, and the server stays up', async (t) => {
  const headers = await fetch(`${server.issuer}/jwks`, { headers: { 'x-padding': 'a'.repeat(20_000) } });
  t.is(headers.status, 431);
  const huge = `a=${'x'.repeat(2_000_000)}`;
  const bodies = [
    ['/token', 'application/x-www-form-urlencoded'], ['/token/introspection', 'application/x-www-form-urlencoded'],
    ['/interaction/x/login', 'application/x-www-form-urlencoded'], ['/password/forgot', 'application/x-www-form-urlencoded'],
    ['/admin/v1/users', 'application/json'], ['/reg', 'application/json'],
  ] as const;
  for (const [path, type] of bodies) {
    const response = await fetch(`${server.issuer}${path}`, { method: 'POST', headers: { 'content-type': type }, body: huge });
    await response.body?.cancel();
    t.true(response.status >= 400 && response.status < 500, `${path}: ${response.status}`);
  }
  t.is((await fetch(`${server.issuer}/readyz`)).status, 200);
});
