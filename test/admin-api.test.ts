// The admin API (/admin/v1) as an admin tool or a script calls it, over HTTP with fetch: tokens from Gatehouse's
// own token endpoint (oauth4webapi), every answer — success or problem — checked against the OpenAPI document the
// server publishes (ajv), and every operation of the document called at least once.
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { decodeJwt } from 'jose';
import * as oauth from 'oauth4webapi';
import { generate } from 'otplib';
import type { User } from '../src/accounts/users.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { withSecondFactor } from './helpers/runtime.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formField, isRedirect } from './helpers/user-agent.ts';

let server: TestServer;
let as: oauth.AuthorizationServer;
let admin: string;
let document: OpenApi;
/** A person who holds the admin role throughout: the tests that give it to others and take it back are never refused as the last administrator. */
let administrator: User;
test.before(async () => {
  // The admin role asks for a second factor by default; these tests sign an administrator in with a password alone.
  server = await startTestServer({ SECOND_FACTOR_REQUIRED_ROLES: 'auditors' });
  as = await discover(server);
  admin = `${server.issuer}/admin/v1`;
  document = await (await fetch(`${admin}/openapi.json`)).json() as OpenApi;
  administrator = await server.runtime.users.create({ email: `administrator-${crypto.randomUUID()}@example.com`, password: PASSWORD, emailVerified: true, roles: ['admin'] });
});
test.after.always(async () => {
  await server?.close();
});

interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { operationId: string; responses: Record<string, { content?: Record<string, { schema: object }> }> }>>;
  components: { schemas: Record<string, object> };
}

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
const called = new Set<string>();

/** The operation of the document a request is for. */
function operationFor(method: string, path: string) {
  for (const [template, operations] of Object.entries(document.paths)) {
    if (!new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`).test(path)) continue;
    const found = operations[method.toLowerCase()];
    if (found) return found;
  }
  return undefined;
}

/** A call to the admin API; its answer is checked against the document (the operation's schema for its status). */
async function call(method: string, path: string, options: { token?: string | undefined; body?: unknown; headers?: Record<string, string> } = {}) {
  const response = await fetch(`${admin}${path}`, {
    method,
    headers: {
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...options.headers,
    },
    body: options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) as Record<string, unknown> : undefined;
  const operation = operationFor(method, path.split('?')[0]!);
  if (operation) {
    called.add(operation.operationId);
    const answer = operation.responses[String(response.status)];
    if (!answer) throw new Error(`${method} ${path}: ${response.status} is not an answer the document lists (${text})`);
    const [type, content] = Object.entries(answer.content ?? {})[0] ?? [];
    if (type) {
      if (!response.headers.get('content-type')?.startsWith(type)) throw new Error(`${method} ${path}: ${response.headers.get('content-type')} is not ${type}`);
      const schema = '$ref' in content!.schema ? document.components.schemas.Problem! : content!.schema;
      const validate = ajv.compile(schema);
      if (!validate(body)) throw new Error(`${method} ${path} → ${response.status}: ${ajv.errorsText(validate.errors)} in ${text}`);
    } else if (text) {
      throw new Error(`${method} ${path} → ${response.status}: the document says no body, got ${text}`);
    }
  }
  return { status: response.status, headers: response.headers, body: body as Record<string, any> };
}

/** A service client's token for the admin API, with these scopes. */
async function serviceToken(scope: string): Promise<string> {
  const metadata = await server.runtime.clients.create({ name: 'Admin script', type: 'service', apiScopes: scope.split(' ') });
  const client = { client_id: metadata.client_id };
  const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(String(metadata.client_secret)), new URLSearchParams({ resource: admin, scope }), insecure);
  return (await oauth.processClientCredentialsResponse(as, client, response)).access_token;
}

/** A person's token for the admin API, through the sign-in and consent pages of an admin tool (an SPA). */
async function personToken(email: string): Promise<string> {
  const metadata = await server.runtime.clients.create({ name: 'Admin console', type: 'spa', redirectUris: [REDIRECT_URI], apiScopes: ['admin:read', 'admin:write'] });
  const client: oauth.Client = { client_id: metadata.client_id, token_endpoint_auth_method: 'none' };
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid admin:read admin:write', resource: admin });
  const callback = await signIn(new UserAgent(), request.url, { email, password: PASSWORD });
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, {
    ...insecure, additionalParameters: { resource: admin },
  });
  return (await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true })).access_token;
}

const uniqueEmail = (tag = 'person') => `${tag}-${crypto.randomUUID()}@example.com`;

test('the OpenAPI 3.1 document is published, every schema in it compiles, and every operation names its scope', async (t) => {
  t.is(document.openapi, '3.1.0');
  const operations = Object.values(document.paths).flatMap((methods) => Object.values(methods));
  t.true(operations.length >= 15);
  for (const operation of operations) {
    for (const answer of Object.values(operation.responses)) {
      for (const content of Object.values(answer.content ?? {})) t.notThrows(() => ajv.compile('$ref' in content.schema ? document.components.schemas.Problem! : content.schema), operation.operationId);
    }
  }
});

test('without a valid token for the admin API: 401 with WWW-Authenticate; without the scope or the admin role: 403', async (t) => {
  const missing = await call('GET', '/users');
  t.is(missing.status, 401);
  t.is(missing.headers.get('www-authenticate'), 'Bearer realm="gatehouse-admin"');
  t.is(missing.body.type, 'urn:gatehouse:problem:unauthorized');

  const garbage = await call('GET', '/users', { token: 'not-a-token' });
  t.is(garbage.status, 401);
  t.regex(garbage.headers.get('www-authenticate')!, /error="invalid_token"/);

  // A token for another API is refused here, though Gatehouse signed it.
  await server.runtime.apis.create({ identifier: 'http://127.0.0.1:9901/orders', name: 'Orders', scopes: [{ name: 'orders:read', description: 'See orders' }] });
  const metadata = await server.runtime.clients.create({ name: 'Orders script', type: 'service', apiScopes: ['orders:read'] });
  const other = await oauth.processClientCredentialsResponse(as, { client_id: metadata.client_id }, await oauth.clientCredentialsGrantRequest(as, { client_id: metadata.client_id },
    oauth.ClientSecretBasic(String(metadata.client_secret)), new URLSearchParams({ resource: 'http://127.0.0.1:9901/orders' }), insecure));
  const wrongAudience = await call('GET', '/users', { token: other.access_token });
  t.is(wrongAudience.status, 401);
  t.regex(wrongAudience.body.detail, /not for the admin API/);

  const reader = await serviceToken('admin:read');
  t.is((await call('GET', '/users', { token: reader })).status, 200);
  const write = await call('POST', '/users', { token: reader, body: { email: uniqueEmail(), password: PASSWORD } });
  t.is(write.status, 403);
  t.is(write.headers.get('www-authenticate'), 'Bearer realm="gatehouse-admin", error="insufficient_scope", scope="admin:write"');

  // A person needs the admin role (now, not when the token was issued).
  const person = await createUser(server);
  await server.runtime.flows.roleAssignment.add(person.email, 'admin', { type: 'admin', id: 'test' });
  const token = await personToken(person.email);
  t.is((await call('GET', `/users/${person.id}`, { token })).status, 200);
  await server.runtime.flows.roleAssignment.remove(person.email, 'admin', { type: 'admin', id: 'test' });
  const demoted = await call('GET', `/users/${person.id}`, { token });
  t.is(demoted.status, 403);
  t.regex(demoted.body.detail, /admin role/);
});

test('a person\'s token that ends with their browser session stops working once the session has run out, as at introspection', async (t) => {
  const sessionSeconds = 3;
  const short = await startTestServer({ SESSION_TTL: String(sessionSeconds), SECOND_FACTOR_REQUIRED_ROLES: 'auditors' });
  t.teardown(() => short.close());
  const shortAs = await discover(short);
  const shortAdmin = `${short.issuer}/admin/v1`;
  const person = await short.runtime.users.create({ email: uniqueEmail(), password: PASSWORD, emailVerified: true, roles: ['admin'] });
  // An admin tool (a single-page app): its tokens end with the session.
  const metadata = await short.runtime.clients.create({ name: 'Admin console', type: 'spa', redirectUris: [REDIRECT_URI], apiScopes: ['admin:read'] });
  const client: oauth.Client = { client_id: metadata.client_id, token_endpoint_auth_method: 'none' };
  const request = await authorizationRequest(shortAs, client.client_id, { scope: 'openid admin:read', resource: shortAdmin });
  const callback = await signIn(new UserAgent(), request.url, { email: person.email, password: PASSWORD });
  const { access_token: token } = await oauth.processAuthorizationCodeResponse(shortAs, client, await oauth.authorizationCodeGrantRequest(
    shortAs, client, oauth.None(), oauth.validateAuthResponse(shortAs, client, callback, request.state), REDIRECT_URI, request.codeVerifier,
    { ...insecure, additionalParameters: { resource: shortAdmin } },
  ), { expectedNonce: request.nonce, requireIdToken: true });
  const read = () => fetch(`${shortAdmin}/users/${person.id}`, { headers: { authorization: `Bearer ${token}` } });
  t.is((await read()).status, 200);
  // The session runs out; the access token (ACCESS_TOKEN_TTL) would not yet.
  await sleep((sessionSeconds + 2) * 1000);
  const ended = await read();
  t.is(ended.status, 401);
  t.regex(ended.headers.get('www-authenticate')!, /error="invalid_token", error_description="The session the access token was issued in has ended"/);
});

test('a token stops working with its client: deleted, a person\'s app as much as a service; a scope taken from the client is gone at once', async (t) => {
  const person = await createUser(server);
  await server.runtime.flows.roleAssignment.add(person.email, 'admin', { type: 'admin', id: 'test' });
  const token = await personToken(person.email);
  t.is((await call('GET', `/users/${person.id}`, { token })).status, 200);
  t.true(await server.runtime.clients.delete(String(decodeJwt(token).client_id)));
  const appDeleted = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD } });
  t.is(appDeleted.status, 401);
  t.regex(appDeleted.headers.get('www-authenticate')!, /error="invalid_token"/);
  t.regex(appDeleted.body.detail, /client .* no longer exists/);

  const writer = await serviceToken('admin:read admin:write');
  const serviceId = String(decodeJwt(writer).client_id);
  t.is((await call('POST', '/roles', { token: writer, body: { name: `role-${crypto.randomUUID().slice(0, 8)}` } })).status, 201);
  await server.runtime.clients.update(serviceId, { apiScopes: ['admin:read'] });
  const withdrawn = await call('POST', '/roles', { token: writer, body: { name: `role-${crypto.randomUUID().slice(0, 8)}` } });
  t.is(withdrawn.status, 403);
  t.is(withdrawn.headers.get('www-authenticate'), 'Bearer realm="gatehouse-admin", error="insufficient_scope", scope="admin:write"');
  t.is((await call('GET', '/roles', { token: writer })).status, 200);
  t.true(await server.runtime.clients.delete(serviceId));
  t.is((await call('GET', '/roles', { token: writer })).status, 401);
});

test('a DPoP-bound token is refused as a bearer token: whoever copied it has no proof of its key', async (t) => {
  const metadata = await server.runtime.clients.create({ name: 'Provisioning', type: 'service', apiScopes: ['admin:read'] });
  const client: oauth.Client = { client_id: metadata.client_id };
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'));
  const request = () => oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(String(metadata.client_secret)),
    new URLSearchParams({ resource: admin, scope: 'admin:read' }), { ...insecure, DPoP });
  const tokens = await oauth.processClientCredentialsResponse(as, client, await request()).catch(async (error: unknown) => {
    if (!oauth.isDPoPNonceError(error)) throw error;
    return oauth.processClientCredentialsResponse(as, client, await request());
  });
  t.is(tokens.token_type, 'dpop');
  const stolen = await call('GET', '/users?limit=1', { token: tokens.access_token });
  t.is(stolen.status, 401);
  t.regex(stolen.headers.get('www-authenticate')!, /error="invalid_token"/);
  t.regex(stolen.body.detail, /bound to a DPoP key/);
});

test('users: create, read, list a page at a time with filters, change with If-Match, and problems for each mistake', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const tag = `page-${crypto.randomUUID().slice(0, 8)}`;
  const created = [];
  for (let index = 0; index < 3; index += 1) {
    const answer = await call('POST', '/users', { token, body: { email: uniqueEmail(tag), password: PASSWORD, name: `Ada ${index}`, email_verified: true } });
    t.is(answer.status, 201);
    t.is(answer.headers.get('location'), `/admin/v1/users/${answer.body.id}`);
    t.truthy(answer.headers.get('etag'));
    created.push(answer.body);
  }
  t.like(created[0], { email_verified: true, disabled: false, roles: [], second_factor_enabled: false, name: 'Ada 0' });

  const first = await call('GET', `/users?email=${tag}&limit=2`, { token });
  t.is(first.status, 200);
  t.deepEqual(first.body.items.map((user: { id: string }) => user.id), [created[0]!.id, created[1]!.id]);
  t.truthy(first.body.next_cursor);
  const second = await call('GET', `/users?email=${tag}&limit=2&cursor=${first.body.next_cursor}`, { token });
  t.deepEqual(second.body.items.map((user: { id: string }) => user.id), [created[2]!.id]);
  t.is(second.body.next_cursor, null);
  t.is((await call('GET', `/users?email=${tag}&disabled=true`, { token })).body.items.length, 0);
  t.deepEqual((await call('GET', `/users/count?email=${tag}`, { token })).body, { count: 3 }, 'counted by the same filters');
  t.deepEqual((await call('GET', `/users/count?email=${tag}&name=ada%202`, { token })).body, { count: 1 });
  t.deepEqual((await call('GET', `/users/count?email=${tag}&disabled=true`, { token })).body, { count: 0 });
  t.true((await call('GET', '/users/count', { token })).body.count >= 3);
  t.is((await call('GET', '/users/count?limit=2', { token })).status, 422, 'a count takes no page');
  t.is((await call('GET', `/users?cursor=nonsense`, { token })).status, 422);
  t.is((await call('GET', '/users?email=%20', { token })).status, 422, 'a blank filter is refused, not taken as none');
  t.is((await call('GET', `/users?limit=500`, { token })).status, 422);
  t.is((await call('GET', `/users?colour=blue`, { token })).status, 422, 'unknown query parameters are refused');

  const read = await call('GET', `/users/${created[0]!.id}`, { token });
  const etag = read.headers.get('etag')!;
  t.is((await call('PATCH', `/users/${created[0]!.id}`, { token, body: { name: 'Ada Lovelace' } })).status, 428);
  const changed = await call('PATCH', `/users/${created[0]!.id}`, { token, body: { name: 'Ada Lovelace' }, headers: { 'if-match': etag } });
  t.is(changed.status, 200);
  t.is(changed.body.name, 'Ada Lovelace');
  t.not(changed.headers.get('etag'), etag);
  // The other administrator, still holding the old version, is refused rather than undoing the change.
  const stale = await call('PATCH', `/users/${created[0]!.id}`, { token, body: { name: 'Someone else' }, headers: { 'if-match': etag } });
  t.is(stale.status, 412);
  t.is((await call('GET', `/users/${created[0]!.id}`, { token })).body.name, 'Ada Lovelace');
  const [updated] = await server.runtime.auditTrail.list({ userId: created[0]!.id, action: 'account.updated', limit: 5 });
  t.like(updated, { actorType: 'client', detail: { changed: ['name'] } });

  const taken = await call('POST', '/users', { token, body: { email: created[1]!.email, password: PASSWORD } });
  t.is(taken.status, 409);
  t.is(taken.body.type, 'urn:gatehouse:problem:conflict');
  const weak = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: 'password' } });
  t.is(weak.status, 422);
  t.is(weak.body.invalid_parameters[0].pointer, '/password');
  // Addresses are checked as at sign-up and by the CLI: an internationalized domain is taken, kept as mail uses it.
  const local = `jurgen-${crypto.randomUUID().slice(0, 8)}`;
  const international = await call('POST', '/users', { token, body: { email: `${local}@bücher.example`, password: PASSWORD } });
  t.is(international.status, 201);
  t.is(international.body.email, `${local}@xn--bcher-kva.example`);
  const notAnAddress = await call('POST', '/users', { token, body: { email: 'not an address', password: PASSWORD } });
  t.is(notAnAddress.status, 422);
  t.is(notAnAddress.body.invalid_parameters[0].pointer, '/email');
  const unknownField = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, is_admin: true } });
  t.is(unknownField.status, 422);
  t.true(unknownField.body.invalid_parameters.some((parameter: { in: string }) => parameter.in === 'body'));
  t.is((await call('POST', '/users', { token, body: '{"email": ' })).status, 400);
  const tooLarge = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, name: 'x'.repeat(70_000) } });
  t.like(tooLarge, { status: 413, body: { type: 'urn:gatehouse:problem:payload-too-large' } });
  t.is((await call('POST', '/users', { token, body: 'email=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } })).status, 415);
  t.is((await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, roles: ['no-such-role'] } })).status, 422);
  t.is((await call('GET', '/users/6f1c1c1e-0000-4000-8000-000000000000', { token })).status, 404);
  const nowhere = await call('GET', '/nowhere', { token });
  t.is(nowhere.status, 404);
  t.is(nowhere.body.type, 'urn:gatehouse:problem:not-found');
  const wrongMethod = await call('PUT', `/users/${created[0]!.id}`, { token, body: {} });
  t.is(wrongMethod.status, 405);
  t.is(wrongMethod.headers.get('allow'), 'GET, PATCH, DELETE');

  // Audited, with the service client as the actor.
  const [audited] = await server.runtime.auditTrail.list({ userEmail: created[2]!.email, action: 'account.created', limit: 1 });
  t.like(audited, { actorType: 'client', outcome: 'success' });
});

test('a name is refused by the admin API as by the sign-up page, and no text holding NUL reaches the database: 422s naming the field, never a 500', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const multiLine = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, name: 'Eve\r\nBcc: someone' } });
  t.like(multiLine, { status: 422, body: { invalid_parameters: [{ in: 'body', pointer: '/name' }] } });
  const person = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, name: 'Eve' } });
  const renamed = await call('PATCH', `/users/${person.body.id}`, { token, body: { name: 'Eve\u202e\u0007' }, headers: { 'if-match': person.headers.get('etag')! } });
  t.like(renamed, { status: 422, body: { invalid_parameters: [{ pointer: '/name' }] } });
  t.is((await call('GET', `/users/${person.body.id}`, { token })).body.name, 'Eve');

  const nul = '\u0000';
  const refusals: Array<[string, string, unknown, string, string]> = [
    ['GET', `/users?email=${encodeURIComponent(nul)}`, undefined, 'query', '/email'],
    ['GET', `/users/count?name=a${encodeURIComponent(nul)}`, undefined, 'query', '/name'],
    ['GET', `/audit-events?user_email=${encodeURIComponent(nul)}`, undefined, 'query', '/user_email'],
    ['GET', `/audit-events?client_id=${encodeURIComponent(nul)}`, undefined, 'query', '/client_id'],
    ['GET', `/apis/${encodeURIComponent(nul)}`, undefined, 'path', '/identifier'],
    ['POST', '/users', { email: uniqueEmail(), password: PASSWORD, name: `x${nul}y` }, 'body', '/name'],
    ['POST', '/roles', { name: `role-${crypto.randomUUID().slice(0, 8)}`, description: `x${nul}` }, 'body', '/description'],
    ['POST', '/clients', { name: `x${nul}`, type: 'web', redirect_uris: ['https://app.example/cb'] }, 'body', '/name'],
    ['POST', '/clients', { name: 'App', type: 'web', redirect_uris: [`https://app.example/cb${nul}`] }, 'body', '/redirect_uris/0'],
    // An unpaired surrogate: jsonb refuses it, and a text column would keep U+FFFD instead of what was sent.
    ['POST', '/clients', { name: '\ud800', type: 'service' }, 'body', '/name'],
    ['POST', '/apis', { identifier: 'https://api-surrogate.example', name: 'A', scopes: [{ name: 'read', description: 'x\udfff' }] }, 'body', '/scopes/0/description'],
    ['POST', '/roles', { name: `role-${crypto.randomUUID().slice(0, 8)}`, description: '\ud83d' }, 'body', '/description'],
  ];
  for (const [method, path, body, part, pointer] of refusals) {
    const answer = await call(method, path, { token, body });
    t.like(answer, { status: 422, body: { type: 'urn:gatehouse:problem:validation-failed', invalid_parameters: [{ in: part, pointer }] } }, `${method} ${path}`);
  }
  // A small body nested thousands of levels deep: a client error, not a stack overflow.
  const deep = `{"name":"x","extra":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
  const nested = await fetch(`${server.issuer}/admin/v1/roles`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: deep });
  t.is(nested.status, 422, await nested.text());
});

test('users: roles, unlock, password reset, second factor, sessions, disable and enable, delete — through the same flows as the CLI', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const { user, tokens } = await signInToNewSpa(server);
  const path = `/users/${user.id}`;

  t.deepEqual((await call('PUT', `${path}/roles/admin`, { token })).body.roles, ['admin']);
  t.is((await call('PUT', `${path}/roles/nobody`, { token })).status, 404);
  t.deepEqual((await call('DELETE', `${path}/roles/admin`, { token })).body.roles, []);

  t.is((await call('POST', `${path}/unlock`, { token })).status, 204);
  t.is((await call('POST', `${path}/password-reset`, { token })).status, 202);
  await server.settled();
  t.like((await call('DELETE', `${path}/second-factor`, { token })).body, { removed: 'nothing' });

  const sessions = await call('GET', `${path}/sessions`, { token });
  t.is(sessions.body.items.length, 1);
  t.true(sessions.body.items[0].applications.length === 1);
  t.is((await call('DELETE', `${path}/sessions/no-such-session`, { token })).status, 404);

  // Disabling ends the sessions and the tokens stop working at once.
  const disabled = await call('POST', `${path}/disable`, { token });
  t.is(disabled.body.disabled, true);
  t.is((await call('GET', `${path}/sessions`, { token })).body.items.length, 0);
  const client: oauth.Client = { client_id: oauth.getValidatedIdTokenClaims(tokens)!.aud as string };
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 401);
  t.is((await call('POST', `${path}/password-reset`, { token })).status, 409);
  t.is((await call('POST', `${path}/enable`, { token })).body.disabled, false);

  const again = await signInToNewSpa(server);
  t.is((await call('DELETE', `/users/${again.user.id}/sessions`, { token })).body.sessions_ended, 1);
  const [signedOut] = await server.runtime.auditTrail.list({ userId: again.user.id, action: 'sessions.ended_all', limit: 1 });
  t.like(signedOut, { actorType: 'client', detail: { reason: 'ended_by_administrator' } });
  const third = await signInToNewSpa(server);
  const [session] = (await call('GET', `/users/${third.user.id}/sessions`, { token })).body.items;
  t.is((await call('DELETE', `/users/${third.user.id}/sessions/${session.id}`, { token })).status, 204);

  t.is((await call('DELETE', path, { token })).status, 204);
  t.is((await call('GET', path, { token })).status, 404);
  t.is((await call('DELETE', path, { token })).status, 404);
  const [deleted] = await server.runtime.auditTrail.list({ action: 'account.deleted', userId: user.id, limit: 1 });
  t.like(deleted, { subjectUserId: user.id, actorType: 'client' });
});

test('users: the applications a person allowed are listed as their account page shows them, and withdrawing one revokes its tokens, through the same flow', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const { user, client, tokens } = await signInToNewSpa(server);
  const path = `/users/${user.id}/applications`;
  const listed = await call('GET', path, { token });
  t.is(listed.status, 200);
  t.is(listed.body.items.length, 1);
  t.like(listed.body.items[0], { client_id: client.client_id, name: 'Test SPA', resources: {} });
  t.true(listed.body.items[0].scopes.includes('openid'));
  t.deepEqual(listed.body.items, (await server.runtime.flows.applicationAccess.list(user)).map((application) => ({
    client_id: application.clientId, name: application.name, scopes: application.scopes, claims: application.claims, resources: application.resources,
    allowed_at: application.grantedAt.toISOString(),
  })));
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 200);

  const withdrawn = await call('DELETE', `${path}/${client.client_id}`, { token });
  t.like(withdrawn, { status: 200, body: { grants_revoked: 1 } });
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 401, 'its access token stops working at once');
  const refreshed = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.like(await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refreshed), { instanceOf: oauth.ResponseBodyError }), { error: 'invalid_grant' }, 'nor its refresh token');
  t.deepEqual((await call('GET', path, { token })).body.items, []);
  t.is((await call('DELETE', `${path}/${client.client_id}`, { token })).status, 404, 'nothing left to withdraw');
  t.is((await call('GET', `/users/${crypto.randomUUID()}/applications`, { token })).status, 404);
  const [audited] = await server.runtime.auditTrail.list({ userId: user.id, action: 'consent.withdrawn', limit: 1 });
  t.like(audited, { actorType: 'client', clientId: client.client_id, detail: { grantsRevoked: 1 } });
  const [revoked] = await server.runtime.auditTrail.list({ userId: user.id, action: 'grant.revoked', limit: 1 });
  t.like(revoked, { actorType: 'client', detail: { reason: 'access_withdrawn' } });
});

test('deleting a role takes it from everyone who has it, in one audited event: no list or role made again with the name gives it back', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const [role, kept] = ['temp', 'kept'].map((tag) => `${tag}-${crypto.randomUUID().slice(0, 8)}`);
  for (const name of [role, kept]) t.is((await call('POST', '/roles', { token, body: { name } })).status, 201);
  const people = [];
  for (const roles of [[role, kept], [role]]) {
    const created = await call('POST', '/users', { token, body: { email: uniqueEmail('temp'), password: PASSWORD, roles } });
    t.is(created.status, 201);
    people.push(created.body);
  }
  const holders = async () => (await call('GET', `/users?role=${role}`, { token })).body.items.map((item: { id: string }) => item.id);
  t.deepEqual(await holders(), people.map((person) => person.id));

  t.is((await call('DELETE', `/roles/${role}`, { token })).status, 204);
  t.deepEqual(await holders(), []);
  t.deepEqual((await call('GET', `/users/${people[0]!.id}`, { token })).body.roles, [kept], 'the other roles stay');
  t.deepEqual((await call('GET', `/users/${people[1]!.id}`, { token })).body.roles, []);
  await server.runtime.auditTrail.flush();
  const deleted = (await server.runtime.auditTrail.list({ action: 'role.deleted', limit: 100 })).filter((event) => event.detail.role === role);
  t.is(deleted.length, 1);
  t.like(deleted[0], { actorType: 'client', outcome: 'success', detail: { people: 2 } });

  t.is((await call('POST', '/roles', { token, body: { name: role } })).status, 201);
  t.deepEqual(await holders(), [], 'a role made again with the name gives nobody anything back');
});

/** A sign-in through the login page, up to the second-factor page it leads to. */
async function codePage(agent: UserAgent, clientId: string, email: string): Promise<{ url: URL; html: string }> {
  const login = await agent.follow((await authorizationRequest(as, clientId)).url);
  const reached = await agent.submit(new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(await login.response.text(), 'csrf'), email, password: PASSWORD });
  if (!reached.url.pathname.endsWith('/second-factor')) throw new Error(`expected the second-factor page, got ${reached.url.pathname} ${reached.response.status}`);
  return { url: reached.url, html: await reached.response.text() };
}

/** Sends a code from the second-factor page (and the consent a new client asks for once); where the browser ends up. */
async function enterCode(agent: UserAgent, page: { url: URL; html: string }, code: string): Promise<{ status: number; url: URL; html: string }> {
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  let reached = await agent.submit(new URL(`/interaction/${uid}/second-factor`, page.url), { csrf: formField(page.html, 'csrf'), method: 'totp', code });
  let html = isRedirect(reached.response.status) ? '' : await reached.response.text();
  if (reached.url.pathname.startsWith('/interaction/') && html.includes('/confirm"')) {
    reached = await agent.submit(new URL(`${reached.url.pathname}/confirm`, reached.url), { csrf: formField(html, 'csrf') });
    html = isRedirect(reached.response.status) ? '' : await reached.response.text();
  }
  return { status: reached.response.status, url: reached.url, html };
}

test('unlock lifts the second factor\'s lockout too: the person locked out by wrong codes can enter a code again', async (t) => {
  t.timeout(120_000);
  const token = await serviceToken('admin:read admin:write');
  const user = await createUser(server);
  const { secret } = await withSecondFactor(server.runtime, user);
  // The enrollment used this 30-second step's code: the next step's is accepted from now on, this one's never again.
  const step = Math.floor(Date.now() / 30_000);
  const codeAt = (offset: number) => generate({ secret, epoch: (step + offset) * 30 + 1 });
  const right = await codeAt(1);
  const near = new Set(await Promise.all([-2, -1, 0, 1, 2, 3].map(codeAt)));
  const wrong = ['000000', '111111', '222222', '333333', '444444', '555555', '666666'].find((code) => !near.has(code))!;
  const { client } = await registerSpa(server);

  const agent = new UserAgent();
  let page = await codePage(agent, client.client_id, user.email);
  const { threshold } = server.runtime.config.limits.lockout;
  for (let attempt = 1; attempt < threshold; attempt += 1) {
    const answer = await enterCode(agent, page, wrong);
    t.is(answer.status, 401, `attempt ${attempt}`);
    page = answer;
  }
  t.is((await enterCode(agent, page, wrong)).status, 429);
  const locked = new UserAgent();
  t.is((await enterCode(locked, await codePage(locked, client.client_id, user.email), right)).status, 429, 'locked: even the right code is refused');

  t.is((await call('POST', `/users/${user.id}/unlock`, { token })).status, 204);
  const unlocked = new UserAgent();
  const done = await enterCode(unlocked, await codePage(unlocked, client.client_id, user.email), right);
  t.is(`${done.url.origin}${done.url.pathname}`, REDIRECT_URI, `ended at ${done.url} (${done.status})`);
  t.truthy(done.url.searchParams.get('code'));
});

test('an administrator\'s acts are theirs in the audit trail: the reset link they send, and each session and grant that disabling, deleting and the second-factor reset end', async (t) => {
  t.timeout(120_000);
  const token = await personToken(administrator.email);
  const actor = { actorType: 'admin', actorId: administrator.id };
  const endedBy = async (userId: string, reason: string) => {
    await server.runtime.auditTrail.flush();
    const events = (await server.runtime.auditTrail.list({ userId, limit: 100 })).filter((event) => ['sessions.ended_all', 'session.ended', 'grant.revoked'].includes(event.action));
    t.deepEqual(events.map((event) => event.action).sort(), ['grant.revoked', 'session.ended', 'sessions.ended_all'], reason);
    for (const event of events) t.like(event, { ...actor, detail: { reason } }, `${event.action} (${reason})`);
  };

  const disabled = await signInToNewSpa(server);
  t.is((await call('POST', `/users/${disabled.user.id}/disable`, { token })).status, 200);
  await endedBy(disabled.user.id, 'account_disabled');

  const reset = await signInToNewSpa(server);
  await withSecondFactor(server.runtime, reset.user);
  t.deepEqual((await call('DELETE', `/users/${reset.user.id}/second-factor`, { token })).body, { removed: 'second_factor', notified: true });
  await endedBy(reset.user.id, 'ended_by_administrator');

  t.is((await call('POST', `/users/${reset.user.id}/password-reset`, { token })).status, 202);
  await server.settled();
  await server.runtime.auditTrail.flush();
  const [requested] = await server.runtime.auditTrail.list({ userId: reset.user.id, action: 'password_reset.requested', limit: 1 });
  t.like(requested, { ...actor, outcome: 'success' });

  const deleted = await signInToNewSpa(server);
  t.is((await call('DELETE', `/users/${deleted.user.id}`, { token })).status, 204);
  await endedBy(deleted.user.id, 'account_deleted');
});

// Serial, so that it runs before the others (ava starts the concurrent tests once the serial ones are done): the
// administrator made in test.before is then the only one, and no other test gives or takes the role meanwhile.
test.serial('the last administrator is kept: disabling, deleting or taking admin from the last enabled person with it is refused with 409, even two at once', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const administrators = async () => (await call('GET', '/users?role=admin&disabled=false', { token })).body.items.map((item: { id: string }) => item.id);
  t.deepEqual(await administrators(), [administrator.id], 'one administrator to begin with');
  const last = administrator.id;
  for (const [method, path] of [['POST', `/users/${last}/disable`], ['DELETE', `/users/${last}`], ['DELETE', `/users/${last}/roles/admin`]]) {
    const refused = await call(method!, path!, { token });
    t.is(refused.status, 409, `${method} ${path}`);
    t.is(refused.body.type, 'urn:gatehouse:problem:last-administrator');
  }
  t.like((await call('GET', `/users/${last}`, { token })).body, { disabled: false, roles: ['admin'] });
  await server.runtime.auditTrail.flush();
  const [refusal] = await server.runtime.auditTrail.list({ userId: last, action: 'account.disabled', limit: 1 });
  t.like(refusal, { outcome: 'failure', actorType: 'client', detail: { reason: 'last_administrator' } });

  // With a second administrator either may lose the role, or be disabled; a disabled one does not count.
  const second = (await call('POST', '/users', { token, body: { email: uniqueEmail('admin'), password: PASSWORD, roles: ['admin'] } })).body.id as string;
  t.deepEqual((await call('DELETE', `/users/${second}/roles/admin`, { token })).body.roles, []);
  t.is((await call('POST', `/users/${last}/disable`, { token })).status, 409);
  t.is((await call('PUT', `/users/${second}/roles/admin`, { token })).status, 200);
  t.is((await call('POST', `/users/${second}/disable`, { token })).status, 200);
  t.is((await call('POST', `/users/${last}/disable`, { token })).status, 409);
  t.is((await call('POST', `/users/${second}/enable`, { token })).status, 200);

  // Two administrators disabling each other at the same moment: one of them stays.
  const answers = await Promise.all([last, second].map((id) => call('POST', `/users/${id}/disable`, { token })));
  t.deepEqual(answers.map((answer) => answer.status).sort(), [200, 409]);
  t.deepEqual(await administrators(), [answers[0]!.status === 200 ? second : last]);
  // As it was: the test.before administrator alone.
  t.is((await call('POST', `/users/${last}/enable`, { token })).status, 200);
  t.is((await call('DELETE', `/users/${second}`, { token })).status, 204);
  t.deepEqual(await administrators(), [last]);
});

test('clients: register each type (the secret shown once), read, list by type a page at a time, change with If-Match, refuse what the rules refuse, delete', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const spa = await call('POST', '/clients', { token, body: { name: 'Shop', type: 'spa', redirect_uris: ['https://shop.example/callback'] } });
  t.is(spa.status, 201);
  t.like(spa.body, { type: 'spa', client_name: 'Shop', token_endpoint_auth_method: 'none', redirect_uris: ['https://shop.example/callback'] });
  t.false('client_secret' in spa.body);
  const web = await call('POST', '/clients', { token, body: { name: 'Intranet', type: 'web', redirect_uris: ['https://intranet.example/cb'], backchannel_logout_uri: 'https://intranet.example/logout' } });
  t.is(web.status, 201);
  t.regex(web.body.client_secret, /^[\w-]{32,}$/);
  const read = await call('GET', `/clients/${web.body.client_id}`, { token });
  t.false('client_secret' in read.body, 'never shown again');
  t.is(read.body.backchannel_logout_uri, 'https://intranet.example/logout');

  const services: Array<{ client_id: string }> = [];
  for (let index = 0; index < 3; index += 1) services.push((await call('POST', '/clients', { token, body: { name: `Job ${index}`, type: 'service' } })).body as { client_id: string });
  const listed: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await call('GET', `/clients?type=service&limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token });
    t.true(page.body.items.length <= 2);
    t.true(page.body.items.every((item: { type: string }) => item.type === 'service'));
    listed.push(...page.body.items.map((item: { client_id: string }) => item.client_id));
    cursor = page.body.next_cursor;
  } while (cursor);
  for (const service of services) t.true(listed.includes(service.client_id));
  t.false(listed.includes(spa.body.client_id));
  const named = await call('GET', `/clients?name=${encodeURIComponent(' 1')}&type=service&limit=100`, { token });
  t.true(named.body.items.some((item: { client_id: string }) => item.client_id === services[1]!.client_id));
  t.true(named.body.items.every((item: { client_name: string; type: string }) => item.client_name.includes(' 1') && item.type === 'service'));
  const caseAside = await call('GET', '/clients?name=INTRANET&limit=100', { token });
  t.true(caseAside.body.items.some((item: { client_id: string }) => item.client_id === web.body.client_id));
  t.false(caseAside.body.items.some((item: { client_id: string }) => item.client_id === spa.body.client_id));

  const etag = spa.headers.get('etag')!;
  t.is((await call('PATCH', `/clients/${spa.body.client_id}`, { token, body: { name: 'Shop 2' } })).status, 428);
  const renamed = await call('PATCH', `/clients/${spa.body.client_id}`, {
    token, body: { name: 'Shop 2', redirect_uris: ['https://shop.example/callback', 'https://shop.example/other'], require_second_factor: true, refresh_token_grace_period: 5 }, headers: { 'if-match': etag },
  });
  t.is(renamed.status, 200);
  t.like(renamed.body, { client_name: 'Shop 2', redirect_uris: ['https://shop.example/callback', 'https://shop.example/other'], require_second_factor: true, refresh_token_grace_period: 5 });
  t.is((await call('PATCH', `/clients/${spa.body.client_id}`, { token, body: { name: 'Shop 3' }, headers: { 'if-match': etag } })).status, 412);

  const insecure = await call('POST', '/clients', { token, body: { name: 'Plain', type: 'spa', redirect_uris: ['http://shop.example/callback'] } });
  t.is(insecure.status, 422);
  t.regex(insecure.body.detail, /https/);
  t.is((await call('POST', '/clients', { token, body: { name: 'Job', type: 'service', first_party: true } })).status, 422);
  t.is((await call('POST', '/clients', { token, body: { name: 'Job', type: 'robot' } })).status, 422);
  t.is((await call('POST', '/clients', { token, body: { name: 'Job', type: 'service', refresh_token_grace_period: 5 } })).status, 422, 'no refresh tokens');
  t.is((await call('POST', '/clients', { token, body: { name: 'Tabs', type: 'spa', redirect_uris: ['https://shop.example/callback'], refresh_token_grace_period: 61 } })).status, 422);

  t.is((await call('DELETE', `/clients/${web.body.client_id}`, { token })).status, 204);
  t.is((await call('GET', `/clients/${web.body.client_id}`, { token })).status, 404);
  t.is((await call('DELETE', `/clients/${web.body.client_id}`, { token })).status, 404);
});

test('a client secret rotated with an overlap: old and new both work until it ends; without one, the old stops at once', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const created = (await call('POST', '/clients', { token, body: { name: 'Nightly job', type: 'service' } })).body;
  const client: oauth.Client = { client_id: created.client_id };
  const tokenWith = async (secret: string) => (await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), {}, insecure)).status;
  t.is(await tokenWith(created.client_secret), 200);

  const rotated = await call('POST', `/clients/${created.client_id}/secret`, { token, body: { overlap_seconds: 600 } });
  t.is(rotated.status, 200);
  t.not(rotated.body.client_secret, created.client_secret);
  t.false('previous_client_secret' in rotated.body);
  t.is(await tokenWith(rotated.body.client_secret), 200);
  t.is(await tokenWith(created.client_secret), 200, 'the old secret works during the overlap');
  t.is(await tokenWith('a-guess'), 401);

  const again = await call('POST', `/clients/${created.client_id}/secret`, { token, body: { overlap_seconds: 0 } });
  t.is(await tokenWith(again.body.client_secret), 200);
  t.is(await tokenWith(rotated.body.client_secret), 401, 'no overlap: the secret before stops at once');
  t.is(await tokenWith(created.client_secret), 401);

  const spa = (await call('POST', '/clients', { token, body: { name: 'Shop', type: 'spa', redirect_uris: ['https://shop.example/callback'] } })).body;
  t.is((await call('POST', `/clients/${spa.client_id}/secret`, { token, body: {} })).status, 422, 'a browser app has no secret');
  t.is((await call('POST', '/clients/nobody/secret', { token, body: {} })).status, 404);
  const [audited] = await server.runtime.auditTrail.list({ action: 'client.secret_rotated', limit: 1 });
  t.like(audited, { clientId: created.client_id, actorType: 'client' });
});

test('APIs and roles: register, read, page, change with If-Match, grant and revoke permissions, delete; the admin API itself stays', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const identifier = `https://api-${crypto.randomUUID().slice(0, 8)}.example/v1`;
  const path = `/apis/${encodeURIComponent(identifier)}`;
  const created = await call('POST', '/apis', { token, body: { identifier, name: 'Billing', scopes: [{ name: 'invoices:read', description: 'See your invoices' }], access_token_ttl: 300 } });
  t.is(created.status, 201);
  t.like(created.body, { identifier, access_token_format: 'jwt', access_token_ttl: 300, signing_alg: 'ES256' });
  t.is(created.headers.get('location'), `/admin/v1${path}`);
  t.is((await call('POST', '/apis', { token, body: { identifier, name: 'Again' } })).status, 409);
  t.is((await call('POST', '/apis', { token, body: { identifier: 'http://api.example', name: 'Plain' } })).status, 422);

  const read = await call('GET', path, { token });
  t.is(read.body.name, 'Billing');
  const changed = await call('PATCH', path, { token, body: { scopes: [{ name: 'invoices:read' }, { name: 'invoices:pay', description: 'Pay your invoices' }] }, headers: { 'if-match': read.headers.get('etag')! } });
  t.is(changed.status, 200);
  t.deepEqual(changed.body.scopes.map((scope: { name: string }) => scope.name), ['invoices:read', 'invoices:pay']);
  t.is((await call('PATCH', path, { token, body: { name: 'Stale' }, headers: { 'if-match': read.headers.get('etag')! } })).status, 412);

  const listed: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await call('GET', `/apis?limit=1${cursor ? `&cursor=${cursor}` : ''}`, { token });
    listed.push(...page.body.items.map((item: { identifier: string }) => item.identifier));
    cursor = page.body.next_cursor;
  } while (cursor);
  t.true(listed.includes(identifier));
  t.true(listed.includes(admin), 'the admin API is an API like any other');
  t.is((await call('DELETE', `/apis/${encodeURIComponent(admin)}`, { token })).status, 422, 'but it cannot be deleted');
  const adminApi = await call('GET', `/apis/${encodeURIComponent(admin)}`, { token });
  const opaque = await call('PATCH', `/apis/${encodeURIComponent(admin)}`, { token, body: { access_token_format: 'opaque' }, headers: { 'if-match': adminApi.headers.get('etag')! } });
  t.is(opaque.status, 422, 'nor its tokens made ones it cannot check');

  const roleName = `billing-${crypto.randomUUID().slice(0, 8)}`;
  t.is((await call('POST', '/roles', { token, body: { name: roleName, description: 'Billing clerks' } })).status, 201);
  t.is((await call('POST', '/roles', { token, body: { name: roleName } })).status, 409);
  const rolePath = `/roles/${roleName}`;
  const firstVersion = (await call('GET', rolePath, { token })).headers.get('etag')!;
  const granted = await call('POST', `/roles/${roleName}/permissions`, { token, body: { api: identifier, scopes: ['invoices:read', 'invoices:pay'] } });
  t.deepEqual(granted.body.permissions, [{ api: identifier, scopes: ['invoices:pay', 'invoices:read'] }]);
  t.is((await call('POST', `/roles/${roleName}/permissions`, { token, body: { api: identifier, scopes: ['invoices:burn'] } })).status, 422);
  const revoked = await call('DELETE', `/roles/${roleName}/permissions?api=${encodeURIComponent(identifier)}&scope=invoices:pay`, { token });
  t.deepEqual(revoked.body.permissions, [{ api: identifier, scopes: ['invoices:read'] }]);
  const current = await call('GET', rolePath, { token });
  t.is(current.body.description, 'Billing clerks');
  t.not(current.headers.get('etag'), firstVersion, 'what it permits is part of its version');
  t.is((await call('PATCH', rolePath, { token, body: { description: 'Stale' }, headers: { 'if-match': firstVersion } })).status, 412);
  t.is((await call('PATCH', rolePath, { token, body: { description: 'Unversioned' } })).status, 428);
  t.is((await call('PATCH', rolePath, { token, body: { name: 'renamed' }, headers: { 'if-match': current.headers.get('etag')! } })).status, 422, 'its name stays');
  const reworded = await call('PATCH', rolePath, { token, body: { description: ' Billing clerks and managers ' }, headers: { 'if-match': current.headers.get('etag')! } });
  t.like(reworded, { status: 200, body: { name: roleName, description: 'Billing clerks and managers', permissions: [{ api: identifier, scopes: ['invoices:read'] }] } });
  const cleared = await call('PATCH', rolePath, { token, body: { description: null }, headers: { 'if-match': reworded.headers.get('etag')! } });
  t.is(cleared.body.description, null);
  t.is((await call('PATCH', '/roles/nobody-here', { token, body: { description: 'x' }, headers: { 'if-match': reworded.headers.get('etag')! } })).status, 404);
  const [audited] = await server.runtime.auditTrail.list({ action: 'role.updated', limit: 1 });
  t.like(audited, { actorType: 'client', detail: { role: roleName, changed: 'description' } });
  const roles = await call('GET', '/roles?limit=100', { token });
  t.true(roles.body.items.some((entry: { name: string; permissions: Array<{ api: string }> }) => entry.name === 'admin' && entry.permissions.some((granted) => granted.api === admin)));
  t.is((await call('DELETE', '/roles/admin', { token })).status, 422);
  t.is((await call('DELETE', `/roles/${roleName}`, { token })).status, 204);
  t.is((await call('GET', `/roles/${roleName}`, { token })).status, 404);
  t.is((await call('DELETE', `/roles/${roleName}`, { token })).status, 404);

  t.is((await call('DELETE', path, { token })).status, 204);
  t.is((await call('GET', path, { token })).status, 404);
});

test.serial('keys: listed with their states; a rotation publishes new keys and a second one waits', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const before = await call('GET', '/keys', { token });
  t.deepEqual(before.body.items.map((entry: { state: string }) => entry.state), ['signing', 'signing', 'signing']);
  const rotated = await call('POST', '/keys/rotate', { token });
  t.is(rotated.status, 202);
  t.deepEqual(rotated.body.items.map((entry: { alg: string }) => entry.alg).sort(), ['ES256', 'EdDSA', 'RS256']);
  t.is((await call('POST', '/keys/rotate', { token })).status, 409);
  const after = await call('GET', '/keys', { token });
  t.is(after.body.items.filter((entry: { state: string }) => entry.state === 'next').length, 3);
  const paged: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await call('GET', `/keys?limit=4${cursor ? `&cursor=${cursor}` : ''}`, { token });
    t.true(page.body.items.length <= 4);
    paged.push(...page.body.items.map((entry: { kid: string }) => entry.kid));
    cursor = page.body.next_cursor;
  } while (cursor);
  t.deepEqual(paged, after.body.items.map((entry: { kid: string }) => entry.kid), 'the same keys, a page at a time, in the same order');
  const [audited] = await server.runtime.auditTrail.list({ action: 'keys.rotated', limit: 1 });
  t.is(audited!.actorType, 'client');
});

test('audit events: newest first, filtered by person, client, action, outcome and time, a page at a time', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const email = uniqueEmail('audited');
  const created = await call('POST', '/users', { token, body: { email, password: PASSWORD } });
  await call('POST', `/users/${created.body.id}/disable`, { token });
  await call('POST', `/users/${created.body.id}/enable`, { token });
  await server.runtime.auditTrail.flush();
  const byUser = await call('GET', `/audit-events?user_id=${created.body.id}`, { token });
  t.deepEqual(byUser.body.items.map((event: { action: string }) => event.action), ['account.enabled', 'account.disabled', 'sessions.ended_all', 'account.created']);
  t.like(byUser.body.items[0], { actor_type: 'client', subject_email: email, outcome: 'success' });
  t.deepEqual((await call('GET', `/audit-events?user_email=${email}&action=account.dis*`, { token })).body.items.map((event: { action: string }) => event.action), ['account.disabled']);
  const first = await call('GET', `/audit-events?user_id=${created.body.id}&limit=2`, { token });
  t.is(first.body.items.length, 2);
  const rest = await call('GET', `/audit-events?user_id=${created.body.id}&limit=2&cursor=${first.body.next_cursor}`, { token });
  t.deepEqual(rest.body.items.map((event: { action: string }) => event.action), ['sessions.ended_all', 'account.created']);
  t.is(rest.body.next_cursor, null);
  const since = encodeURIComponent(new Date(Date.now() + 60_000).toISOString());
  t.is((await call('GET', `/audit-events?user_id=${created.body.id}&since=${since}`, { token })).body.items.length, 0);
  t.is((await call('GET', `/audit-events?user_id=${created.body.id}&outcome=failure`, { token })).body.items.length, 0);
  t.is((await call('GET', `/audit-events?client_id=nobody`, { token })).body.items.length, 0);
  t.is((await call('GET', '/audit-events?since=yesterday', { token })).status, 422);
});

test('a cursor or a time made by hand gets a 422 naming it, never a 500: only what the database can hold goes to it', async (t) => {
  const token = await serviceToken('admin:read');
  const cursor = (position: unknown) => Buffer.from(JSON.stringify(position)).toString('base64url');
  const uuid = crypto.randomUUID();
  const cursors: Array<[string, unknown]> = [
    ['/users', { createdAt: '2020-01-01T00:00:00.000Z', id: 'not-a-uuid' }],
    ['/users', { createdAt: '0000-01-01T00:00:00.000Z', id: uuid }],
    ['/clients', { createdAt: '2020-01-01T00:00:00.000Z', id: 'a\u0000b' }],
    ['/apis', { identifier: 'a\u0000b' }],
    ['/audit-events', { occurredAt: '2020-01-01T00:00:00.000Z', id: 'not-a-uuid' }],
  ];
  for (const [path, position] of cursors) {
    const answer = await call('GET', `${path}?cursor=${cursor(position)}`, { token });
    t.like(answer, { status: 422, body: { invalid_parameters: [{ in: 'query', pointer: '/cursor' }] } }, `${path} ${JSON.stringify(position)}`);
  }
  for (const name of ['since', 'until']) {
    for (const value of ['0000-01-01T00:00:00Z', '9999-12-31T23:59:59-14:00']) {
      const answer = await call('GET', `/audit-events?${name}=${encodeURIComponent(value)}`, { token });
      t.like(answer, { status: 422, body: { invalid_parameters: [{ in: 'query', pointer: `/${name}` }] } }, `${name}=${value}`);
    }
  }
  t.is((await call('GET', `/audit-events?since=${encodeURIComponent('0001-01-01T00:00:00Z')}`, { token })).status, 200);
});

test('two administrators creating the same role or API at once: one gets 201, the others 409, never a 500', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  for (let round = 0; round < 4; round += 1) {
    const name = `twin-${crypto.randomUUID().slice(0, 8)}`;
    const roles = (await Promise.all([0, 1, 2].map(() => call('POST', '/roles', { token, body: { name } })))).map((answer) => answer.status).sort();
    t.deepEqual(roles, [201, 409, 409]);
    const identifier = `https://twin-${crypto.randomUUID().slice(0, 8)}.example.com/api`;
    const apis = (await Promise.all([0, 1, 2].map(() => call('POST', '/apis', { token, body: { identifier, name: 'Twin' } })))).map((answer) => answer.status).sort();
    t.deepEqual(apis, [201, 409, 409]);
  }
});

test('a role deleted while an account is being made with it, or given it, is on no account afterwards', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  for (let round = 0; round < 4; round += 1) {
    const role = `fleeting-${crypto.randomUUID().slice(0, 8)}`;
    t.is((await call('POST', '/roles', { token, body: { name: role } })).status, 201);
    const holder = await createUser(server);
    // The account's password is hashed between the check that the role exists and the insert: the delete lands there.
    const creating = call('POST', '/users', { token, body: { email: uniqueEmail('fleeting'), password: PASSWORD, roles: [role] } });
    const giving = server.runtime.flows.roleAssignment.add(holder.email, role, { type: 'admin', id: 'test' });
    await sleep(5);
    t.is((await call('DELETE', `/roles/${role}`, { token })).status, 204);
    const [created, given] = await Promise.all([creating, giving]);
    t.true(created.status === 201 || (created.status === 422 && /role/.test(created.body.detail)), `${created.status} ${JSON.stringify(created.body)}`);
    t.true(given.ok || given.reason === 'unknown_role', JSON.stringify(given));
    t.deepEqual((await call('GET', `/users?role=${role}`, { token })).body.items, [], 'no account holds the deleted role');
  }
});

test('the email and name filters match % and _ as themselves, not as wildcards', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const tag = crypto.randomUUID().slice(0, 8);
  for (const local of [`axb${tag}`, `a_b${tag}`]) t.is((await call('POST', '/users', { token, body: { email: `${local}@example.com`, password: PASSWORD, name: `${local} 100%` } })).status, 201);
  const emails = async (query: string) => (await call('GET', `/users?${query}`, { token })).body.items.map((item: { email: string }) => item.email);
  t.deepEqual(await emails(`email=${encodeURIComponent(`a_b${tag}`)}`), [`a_b${tag}@example.com`]);
  t.deepEqual(await emails(`email=${encodeURIComponent(`a%${tag}`)}`), []);
  t.deepEqual(await emails(`name=${encodeURIComponent(`_b${tag} 100%`)}`), [`a_b${tag}@example.com`]);
  t.deepEqual((await call('GET', `/users/count?email=${encodeURIComponent(`%${tag}`)}`, { token })).body, { count: 0 });
});

test('an initial access token from the admin API opens dynamic client registration once', async (t) => {
  const token = await serviceToken('admin:read admin:write');
  const issued = await call('POST', '/initial-access-tokens', { token, body: { uses: 1, expires_in: 600 } });
  t.is(issued.status, 201);
  t.is(issued.body.uses, 1);
  const register = () => fetch(as.registration_endpoint!, {
    method: 'POST', headers: { authorization: `Bearer ${issued.body.initial_access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Registered', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
  });
  t.is(issued.body.uses_left, 1);
  const listed = await call('GET', '/initial-access-tokens', { token });
  t.true(listed.body.items.some((entry: { id: string }) => entry.id === issued.body.id));
  t.false(JSON.stringify(listed.body).includes(issued.body.initial_access_token), 'never the token itself');
  t.is((await register()).status, 201);
  t.is((await register()).status, 401);
  t.false((await call('GET', '/initial-access-tokens', { token })).body.items.some((entry: { id: string }) => entry.id === issued.body.id), 'used up');

  const withdrawn = await call('POST', '/initial-access-tokens', { token, body: { uses: 5 } });
  t.is((await call('DELETE', `/initial-access-tokens/${withdrawn.body.id}`, { token })).status, 204);
  const refused = await fetch(as.registration_endpoint!, {
    method: 'POST', headers: { authorization: `Bearer ${withdrawn.body.initial_access_token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Registered', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none' }),
  });
  t.is(refused.status, 401);
  t.is((await call('DELETE', `/initial-access-tokens/${withdrawn.body.id}`, { token })).status, 404);
  t.is((await call('POST', '/initial-access-tokens', { token, body: { uses: 0 } })).status, 422);
  t.is((await call('POST', '/initial-access-tokens', { token: await serviceToken('admin:read'), body: {} })).status, 403);
});

test('no browser on another origin is answered (no CORS), unless ADMIN_API_CORS_ORIGINS names it', async (t) => {
  const preflight = (base: string, origin: string) => fetch(`${base}/admin/v1/users`, {
    method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
  });
  const closed = await preflight(server.issuer, 'https://admin.example.com');
  t.is(closed.headers.get('access-control-allow-origin'), null);
  t.is(closed.status, 405);

  const consoleServer = await startTestServer({ ADMIN_API_CORS_ORIGINS: 'https://admin.example.com' });
  t.teardown(() => consoleServer.close());
  const open = await preflight(consoleServer.issuer, 'https://admin.example.com');
  t.is(open.status, 204);
  t.is(open.headers.get('access-control-allow-origin'), 'https://admin.example.com');
  t.regex(open.headers.get('access-control-allow-headers') ?? '', /Authorization/);
  t.regex(open.headers.get('access-control-allow-methods') ?? '', /PATCH/);
  const actual = await fetch(`${consoleServer.issuer}/admin/v1/users`, { headers: { origin: 'https://admin.example.com' } });
  t.is(actual.status, 401);
  t.is(actual.headers.get('access-control-allow-origin'), 'https://admin.example.com');
  t.regex(actual.headers.get('access-control-expose-headers') ?? '', /WWW-Authenticate/);
  t.is((await preflight(consoleServer.issuer, 'https://evil.example')).headers.get('access-control-allow-origin'), null);
});

test('the admin API is limited per IP: past ADMIN_API_LIMIT_PER_IP, 429 problem+json with Retry-After', async (t) => {
  const limited = await startTestServer({ ADMIN_API_LIMIT_PER_IP: '2/60' });
  t.teardown(() => limited.close());
  const statuses: number[] = [];
  let last: Response | undefined;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    last = await fetch(`${limited.issuer}/admin/v1/users`);
    statuses.push(last.status);
  }
  t.deepEqual(statuses, [401, 401, 429]);
  t.regex(last!.headers.get('content-type') ?? '', /^application\/problem\+json/);
  t.true(Number(last!.headers.get('retry-after')) > 0);
  t.like(await last!.json(), { type: 'urn:gatehouse:problem:too-many-requests', status: 429 });
});

test.after('every operation of the document was called', (t) => {
  const all = Object.values(document.paths).flatMap((methods) => Object.values(methods).map((operation) => operation.operationId));
  t.deepEqual(all.filter((id) => !called.has(id)), []);
});
