// The admin API (/admin/v1) as an admin tool or a script calls it, over HTTP with fetch: tokens from Gatehouse's
// own token endpoint (oauth4webapi), every answer — success or problem — checked against the OpenAPI document the
// server publishes (ajv), and every operation of the document called at least once.
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import * as oauth from 'oauth4webapi';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent } from './helpers/user-agent.ts';

let server: TestServer;
let as: oauth.AuthorizationServer;
let admin: string;
let document: OpenApi;
test.before(async () => {
  // The admin role asks for a second factor by default; these tests sign an administrator in with a password alone.
  server = await startTestServer({ SECOND_FACTOR_REQUIRED_ROLES: 'auditors' });
  as = await discover(server);
  admin = `${server.issuer}/admin/v1`;
  document = await (await fetch(`${admin}/openapi.json`)).json() as OpenApi;
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
  t.is((await call('GET', `/users?cursor=nonsense`, { token })).status, 422);
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

  const taken = await call('POST', '/users', { token, body: { email: created[1]!.email, password: PASSWORD } });
  t.is(taken.status, 409);
  t.is(taken.body.type, 'urn:gatehouse:problem:conflict');
  const weak = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: 'password' } });
  t.is(weak.status, 422);
  t.is(weak.body.invalid_parameters[0].pointer, '/password');
  const unknownField = await call('POST', '/users', { token, body: { email: uniqueEmail(), password: PASSWORD, is_admin: true } });
  t.is(unknownField.status, 422);
  t.true(unknownField.body.invalid_parameters.some((parameter: { in: string }) => parameter.in === 'body'));
  t.is((await call('POST', '/users', { token, body: '{"email": ' })).status, 400);
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
  const third = await signInToNewSpa(server);
  const [session] = (await call('GET', `/users/${third.user.id}/sessions`, { token })).body.items;
  t.is((await call('DELETE', `/users/${third.user.id}/sessions/${session.id}`, { token })).status, 204);

  t.is((await call('DELETE', path, { token })).status, 204);
  t.is((await call('GET', path, { token })).status, 404);
  t.is((await call('DELETE', path, { token })).status, 404);
  const [deleted] = await server.runtime.auditTrail.list({ action: 'account.deleted', limit: 1 });
  t.like(deleted, { subjectUserId: user.id, actorType: 'client' });
});

test.after('every operation of the document was called', (t) => {
  const all = Object.values(document.paths).flatMap((methods) => Object.values(methods).map((operation) => operation.operationId));
  t.deepEqual(all.filter((id) => !called.has(id)), []);
});
