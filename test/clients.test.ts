// Changing and removing clients: new redirect URIs take effect at once, a removed client's tokens stop
// working, both are audited; and the CLI's `clients update`, `delete`, `show` and `list`.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';
import { cleanEnvironment, runNode } from './helpers/process.ts';
import { ClientError } from '../src/clients/clients.ts';

let server: TestServer;
test.before(async () => { server = await startTestServer(); });
test.after.always(async () => { await server?.close(); });

/** The CLI on the test server's database, as an administrator runs it beside a running server. */
function gatehouse(args: string[]) {
  const environment = cleanEnvironment({
    DATA_DIR: server.runtime.config.dataDir, KEYS_DIR: server.runtime.config.keysDir,
    DATABASE_URL: server.runtime.config.databaseUrl, LOG_LEVEL: 'warn',
  });
  return runNode(['bin/gatehouse.js', ...args], environment, 180_000);
}

async function authorizationPageStatus(clientId: string, redirectUri: string): Promise<number> {
  const { url } = await authorizationRequest(await discover(server), clientId, { redirect_uri: redirectUri });
  const { response } = await new UserAgent().follow(url);
  return response.status;
}

test('client ids are 128 random bits in hex: none begins with "-", which a command line would take for an option', async (t) => {
  const ids = await Promise.all(Array.from({ length: 20 }, async () => (await registerSpa(server)).client.client_id));
  for (const id of ids) t.regex(id, /^[0-9a-f]{32}$/);
  t.is(new Set(ids).size, ids.length);
});

test('an updated client is read with its new redirect URIs and name at once, and the change is audited', async (t) => {
  const { client } = await registerSpa(server);
  const newRedirect = 'http://127.0.0.1:4999/new-callback';
  t.is(await authorizationPageStatus(client.client_id, REDIRECT_URI), 200);
  t.is(await authorizationPageStatus(client.client_id, newRedirect), 400);

  const updated = await server.runtime.clients.update(client.client_id, { name: 'Renamed', redirectUris: [newRedirect] });
  t.like(updated, { client_name: 'Renamed', redirect_uris: [newRedirect], token_endpoint_auth_method: 'none' });
  t.is(await authorizationPageStatus(client.client_id, newRedirect), 200);
  t.is(await authorizationPageStatus(client.client_id, REDIRECT_URI), 400, 'the old redirect URI is refused');

  const [event] = await server.runtime.auditTrail.list({ action: 'client.updated', clientId: client.client_id, limit: 1 });
  t.like(event, { action: 'client.updated', clientId: client.client_id, actorType: 'admin' });
  t.deepEqual(event!.detail.changed, ['name', 'redirectUris']);
});

test('a redirect URI removed while a person is signing in gets no code: the sign-in stops on a page, and resumes if the URI comes back', async (t) => {
  const { client } = await registerSpa(server);
  const person = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(await discover(server), client.client_id);
  const { response, url: loginPage } = await agent.follow(request.url);
  const csrf = formField(await response.text(), 'csrf');
  // Its domain lost, say: the administrator takes the URI away while the login page is open.
  await server.runtime.clients.update(client.client_id, { redirectUris: ['http://127.0.0.1:4999/new-callback'] });

  const { response: refused, url } = await agent.submit(new URL(`${loginPage.pathname}/login`, loginPage), { csrf, email: person.email, password: PASSWORD });
  t.is(url.origin, new URL(server.issuer).origin, `no code sent to ${url.href}`);
  t.is(refused.status, 400);
  t.regex(await refused.text(), /redirect_uri did not match any of the client&#39;s registered redirect_uris/);
  const head = await agent.request(url, { method: 'HEAD' });
  t.is(head.status, 400, `HEAD resumed too: ${head.headers.get('location')}`);
  // The engine's router takes a trailing slash (and the browser sends the resume cookie with it).
  const slashed = await agent.request(new URL(`${url.pathname}/`, url));
  t.is(slashed.status, 400, `resumed with a trailing slash: ${slashed.headers.get('location')}`);

  await server.runtime.clients.update(client.client_id, { redirectUris: [REDIRECT_URI] });
  // On to the consent page, then the application.
  const callback = await signIn(agent, url, { email: person.email, password: PASSWORD });
  t.is(`${callback.origin}${callback.pathname}`, REDIRECT_URI);
  t.truthy(callback.searchParams.get('code'));
});

test('an update the engine would refuse, or one that does not fit the kind of client, changes nothing', async (t) => {
  const { client } = await registerSpa(server);
  await t.throwsAsync(server.runtime.clients.update(client.client_id, { redirectUris: ['javascript:alert(1)'] }));
  await t.throwsAsync(server.runtime.clients.update(client.client_id, { redirectUris: [] }), { instanceOf: ClientError });
  await t.throwsAsync(server.runtime.clients.update(client.client_id, { name: '  ' }), { instanceOf: ClientError });
  const service = await registerConfidential(server, 'service');
  await t.throwsAsync(server.runtime.clients.update(service.client.client_id, { redirectUris: [REDIRECT_URI] }), { instanceOf: ClientError });
  t.like(await server.runtime.clients.find(client.client_id), { redirect_uris: [REDIRECT_URI] });
  t.is(await server.runtime.clients.update('no-such-client', { name: 'X' }), undefined);
});

test('a deleted client is gone: its refresh token and access token stop working, and the removal is audited', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  const service = await registerConfidential(server, 'service');
  const introspect = async (token: string) => oauth.processIntrospectionResponse(
    as, service.client, await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), token, insecure),
  );
  t.true((await introspect(tokens.access_token)).active);

  t.true(await server.runtime.clients.delete(client.client_id));
  t.false(await server.runtime.clients.delete(client.client_id), 'a second delete finds nothing');
  t.is(await server.runtime.clients.find(client.client_id), undefined);

  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_client');
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 401);
  t.false((await introspect(tokens.access_token)).active, 'resource servers are told the token is no longer active');
  t.is(await authorizationPageStatus(client.client_id, REDIRECT_URI), 400);

  const [event] = await server.runtime.auditTrail.list({ action: 'client.deleted', limit: 1 });
  t.like(event, { action: 'client.deleted', clientId: client.client_id, outcome: 'success' });
});

test('the CLI updates and deletes a client, and says so when there is none', async (t) => {
  t.timeout(180_000);
  const { client_id: clientId } = await server.runtime.clients.create({ name: 'Web app', type: 'web', redirectUris: [REDIRECT_URI] });

  const updated = await gatehouse(['clients', 'update', '--client-id', clientId, '--name', 'Web app 2', '--redirect-uri', 'https://app.example.com/a', '--redirect-uri', 'https://app.example.com/b']);
  t.is(updated.code, 0, updated.stderr);
  const printed = JSON.parse(updated.stdout) as Record<string, unknown>;
  t.like(printed, { client_id: clientId, client_name: 'Web app 2', redirect_uris: ['https://app.example.com/a', 'https://app.example.com/b'] });
  t.false('client_secret' in printed, 'the secret is shown once, at creation');

  const nothing = await gatehouse(['clients', 'update', '--client-id', clientId]);
  t.is(nothing.code, 2);
  t.regex(nothing.stderr, /needs something to change/);

  const deleted = await gatehouse(['clients', 'delete', '--client-id', clientId]);
  t.is(deleted.code, 0, deleted.stderr);
  t.is(deleted.stdout, `deleted ${clientId}\n`);
  const again = await gatehouse(['clients', 'delete', '--client-id', clientId]);
  t.is(again.code, 1);
  t.regex(again.stderr, /^gatehouse: no client /);
});

test('the CLI shows a client and lists them all, as a table or JSON lines, never with a secret', async (t) => {
  t.timeout(180_000);
  const web = await server.runtime.clients.create({ name: 'Listed web app', type: 'web', redirectUris: ['https://app.example.com/listed'] });
  await t.throwsAsync(server.runtime.clients.create({ name: 'Listed\u001b[31m API', type: 'service' }), { message: 'client_name cannot contain line breaks or control characters' });
  // As a version before that rule may have stored it: the CLI must still not send the escape to the terminal.
  const api = await server.runtime.clients.create({ name: 'Listed API', type: 'service' });
  await server.runtime.database.prisma.client.update({ where: { id: api.client_id }, data: { metadata: { ...api, client_name: 'Listed\u001b[31m API' } } });

  const [shown, table, lines, unknown, bare] = await Promise.all([
    gatehouse(['clients', 'show', web.client_id]),
    gatehouse(['clients', 'list']),
    gatehouse(['clients', 'list', '--json']),
    gatehouse(['clients', 'show', 'no-such-client']),
    gatehouse(['clients', 'show']),
  ]);
  t.is(shown.code, 0, shown.stderr);
  const printed = JSON.parse(shown.stdout) as Record<string, unknown>;
  t.like(printed, { client_id: web.client_id, client_name: 'Listed web app', redirect_uris: ['https://app.example.com/listed'] });
  t.false('client_secret' in printed);

  t.is(table.code, 0, table.stderr);
  const [heading, ...rows] = table.stdout.trimEnd().split('\n');
  t.regex(heading!, /^CLIENT ID\s+TYPE\s+NAME\s+REDIRECT URIS$/);
  t.true(rows.some((row) => new RegExp(`^${web.client_id}\\s+web\\s+Listed web app\\s+https://app\\.example\\.com/listed$`).test(row)), table.stdout);
  t.true(rows.some((row) => row.startsWith(api.client_id) && /\sservice\s/.test(row) && row.includes('Listed?[31m API')), 'a control character in a name is not sent to the terminal');
  t.false(table.stdout.includes(String(web.client_secret)));

  t.is(lines.code, 0, lines.stderr);
  const listed = lines.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
  t.true(listed.some((client) => client.client_id === web.client_id && client.client_name === 'Listed web app'));
  t.true(listed.some((client) => client.client_id === api.client_id));
  t.true(listed.every((client) => !('client_secret' in client)));

  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^gatehouse: no client no-such-client\n/);
  t.is(bare.code, 2);
  t.regex(bare.stderr, /clients show takes one client id/);
});

