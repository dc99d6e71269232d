// Dynamic client registration (RFC 7591) and management (RFC 7592) as an application does them, through
// oauth4webapi: open only with an initial access token an administrator issued (single use by default, or a
// number of uses, until it expires); what is registered obeys the same rules as other clients; the registration
// access token reads, changes and removes its own client, and no other.
import test from 'ava';
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

const SPA = { client_name: 'Registered SPA', redirect_uris: [REDIRECT_URI], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'] };

function initialAccessToken(uses = 1, expiresInSeconds = 600) {
  return server.runtime.initialAccessTokens.issue({ uses, expiresInSeconds, actor: { type: 'admin', id: 'test' } });
}

async function register(metadata: Partial<oauth.OmitSymbolProperties<oauth.Client>>, token?: string) {
  const response = await oauth.dynamicClientRegistrationRequest(as, metadata, { ...insecure, ...(token ? { initialAccessToken: token } : {}) });
  return oauth.processDynamicClientRegistrationResponse(response);
}

/** What the engine answered a refused registration: its error code and status. */
async function refusal(metadata: Record<string, unknown>, token?: string) {
  const response = await fetch(as.registration_endpoint!, {
    method: 'POST', body: JSON.stringify(metadata),
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
  });
  const body = await response.json() as { error: string; error_description?: string };
  return { status: response.status, ...body };
}

test('discovery advertises the registration endpoint; without an initial access token nothing is registered', async (t) => {
  t.is(as.registration_endpoint, `${server.issuer}/reg`);
  t.deepEqual(as.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']);
  t.like(await refusal(SPA), { status: 401, error: 'invalid_token' });
  t.like(await refusal(SPA, 'made-up'), { status: 401, error: 'invalid_token' });
});

test('a single-use initial access token registers one client, which signs a person in with PKCE like any other', async (t) => {
  const { token } = await initialAccessToken();
  const client = await register(SPA, token);
  t.regex(client.client_id, /^[0-9a-f]{32}$/);
  t.false('client_secret' in client, 'a browser app gets no secret');
  t.truthy(client.registration_access_token);
  t.is(client.registration_client_uri, `${server.issuer}/reg/${client.client_id}`);
  t.like(await refusal({ ...SPA, client_name: 'Second' }, token), { status: 401, error: 'invalid_token' }, 'spent');

  const user = await createUser(server);
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const registered: oauth.Client = { client_id: client.client_id, token_endpoint_auth_method: 'none' };
  const tokens = await oauth.processAuthorizationCodeResponse(as, registered, await oauth.authorizationCodeGrantRequest(
    as, registered, oauth.None(), oauth.validateAuthResponse(as, registered, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce, requireIdToken: true });
  t.is(oauth.getValidatedIdTokenClaims(tokens)!.sub, user.id);
  const without = await authorizationRequest(as, client.client_id, { code_challenge: undefined, code_challenge_method: undefined });
  const refused = await fetch(without.url, { redirect: 'manual' });
  const location = new URL(refused.headers.get('location')!);
  t.is(`${location.origin}${location.pathname}`, REDIRECT_URI);
  t.is(location.searchParams.get('error'), 'invalid_request', 'PKCE is required of it too');
  t.regex(location.searchParams.get('error_description') ?? '', /requires PKCE/);

  const [audited] = await server.runtime.auditTrail.list({ action: 'client.created', clientId: client.client_id, limit: 1 });
  t.like(audited, { clientId: client.client_id, actorType: 'client', detail: { registration: true } });
});

test('a registration access token does not expire (RFC 7592 gives it no lifetime): an application that only reads keeps it', async (t) => {
  const { token } = await initialAccessToken();
  const { store } = server.runtime;
  const put = store.put.bind(store);
  const written: Array<{ clientId: string; ttlSeconds: number }> = [];
  store.put = async (key, value, ttlSeconds) => {
    if (key.startsWith('RegistrationAccessToken:')) written.push({ clientId: (JSON.parse(value) as { clientId: string }).clientId, ttlSeconds });
    return put(key, value, ttlSeconds);
  };
  t.teardown(() => { store.put = put; });
  const registered = await register({ ...SPA, client_name: 'Reads only' }, token);
  t.truthy(registered.registration_access_token);
  const kept = written.filter((record) => record.clientId === registered.client_id).map((record) => record.ttlSeconds);
  t.is(kept.length, 1);
  t.true(kept[0]! >= 5 * 365 * 24 * 3600, `kept ${kept[0]} s`);
});

test('a token for three registrations registers three; one that expired registers none', async (t) => {
  const { token } = await initialAccessToken(3);
  for (let index = 0; index < 3; index += 1) t.truthy((await register({ ...SPA, client_name: `App ${index}` }, token)).client_id);
  t.like(await refusal(SPA, token), { status: 401, error: 'invalid_token' });

  const short = await initialAccessToken(1, 1);
  // The store's own expiry, as short as it goes.
  await new Promise((resolve) => setTimeout(resolve, 2100));
  t.like(await refusal(SPA, short.token), { status: 401, error: 'invalid_token' });
});

test('of registrations at once with a single-use token, one is stored and answered; the others are refused and leave no client behind', async (t) => {
  const { token } = await initialAccessToken(1);
  const names = Array.from({ length: 4 }, () => `Racing app ${crypto.randomUUID()}`);
  const answers = await Promise.all(names.map((name) => fetch(as.registration_endpoint!, {
    method: 'POST', body: JSON.stringify({ ...SPA, client_name: name }), headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  })));
  t.deepEqual(answers.map((answer) => answer.status).sort(), [201, 401, 401, 401]);
  const stored = (await server.runtime.clients.list()).filter((client) => names.includes(String(client.client_name)));
  t.is(stored.length, 1, 'the refused ones were taken away again');
  const registered = await answers.find((answer) => answer.status === 201)!.json() as { client_id: string };
  t.is(stored[0]!.client_id, registered.client_id);
});

test('registration obeys the rules of every client, and some of its own; a refused registration spends nothing', async (t) => {
  const { token } = await initialAccessToken();
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['plain http off the loopback interface', { ...SPA, redirect_uris: ['http://app.example/callback'] }, /https/],
    ['the first-party flag', { ...SPA, first_party: true }, /only an administrator/],
    ['API scopes', { ...SPA, api_scopes: 'orders:read' }, /only an administrator/],
    ['a refresh-token grace period', { ...SPA, refresh_token_grace_period: 5 }, /only an administrator/],
    ['a back-channel logout URI inside the network', {
      client_name: 'Web', redirect_uris: ['https://app.example/cb'], backchannel_logout_uri: 'https://10.0.0.7/logout',
    }, /public host/],
    ['an implicit response type', { ...SPA, response_types: ['id_token'] }, /response_types|response_type/],
    ['a name on two lines', { ...SPA, client_name: 'Registered SPA\r\nApproved by Gatehouse' }, /client_name/],
    ['text holding U+0000', { ...SPA, client_name: 'Registered\u0000SPA' }, /client_name/],
    ['text holding U+0000 further in', { ...SPA, contacts: ['ops\u0000@app.example'] }, /contacts/],
    ['an unpaired surrogate, which the database cannot keep', { ...SPA, client_name: 'Registered \ud800' }, /client_name/],
    ['client_secret_jwt (not offered: a secret rotation could not keep its key working)', { ...WEB, token_endpoint_auth_method: 'client_secret_jwt' }, /token_endpoint_auth_method/],
    // RFC 6749 §4.4: anyone knowing its id would get its tokens.
    ['client_credentials without a secret', {
      client_name: 'Public service', grant_types: ['client_credentials'], token_endpoint_auth_method: 'none', response_types: [], redirect_uris: [],
    }, /client_credentials is for a client that authenticates/],
    ['a service that signs people in too', {
      client_name: 'Both', grant_types: ['authorization_code', 'client_credentials'], redirect_uris: ['https://app.example/cb'], response_types: ['code'],
    }, /signs nobody in/],
    // Refused by a rule checked after the engine's and Gatehouse's registration rules: the token is spent by none.
    ['a service with a scope about people', {
      client_name: 'Service', grant_types: ['client_credentials'], response_types: [], redirect_uris: [], scope: 'openid',
    }, /acts for no person/],
  ];
  for (const [what, metadata, reason] of cases) {
    const refused = await refusal(metadata, token);
    t.is(refused.status, 400, what);
    t.regex(`${refused.error}: ${refused.error_description ?? ''}`, /invalid_(client_metadata|redirect_uri)/, what);
    t.regex(refused.error_description ?? '', reason, what);
  }
  // A redirect URI refused by Gatehouse's own rules is named as the RFC names it (RFC 7591 §3.2.2).
  for (const [what, metadata] of [
    ['http off the loopback interface', { ...SPA, redirect_uris: ['http://app.example/callback'] }],
    ['a native app\'s http redirect to localhost (RFC 8252: the loopback IP)', { ...SPA, application_type: 'native', redirect_uris: ['http://localhost:8080/cb'] }],
  ] as const) {
    t.like(await refusal(metadata, token), { status: 400, error: 'invalid_redirect_uri' }, what);
  }
  t.truthy((await register(SPA, token)).client_id, 'the token is still good');
});

test('the registration access token reads, changes and removes its own client and no other; a change gives a new one', async (t) => {
  const { token } = await initialAccessToken(2);
  const web = { client_name: 'Web app', redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code'], response_types: ['code'] };
  const mine = await register(web, token);
  const theirs = await register({ ...web, client_name: 'Another' }, token);
  t.truthy(mine.client_secret, 'a web app gets a secret');
  const manage = (uri: unknown, accessToken: unknown, init: RequestInit = {}) => fetch(String(uri), {
    ...init, headers: { authorization: `Bearer ${String(accessToken)}`, 'content-type': 'application/json' },
  });

  const read = await manage(mine.registration_client_uri, mine.registration_access_token);
  t.is(read.status, 200);
  t.is(((await read.json()) as { client_name: string }).client_name, 'Web app');
  // Another client's token is refused here, and spent: the engine destroys a token tried on another client.
  t.is((await manage(mine.registration_client_uri, theirs.registration_access_token)).status, 401);
  t.is((await manage(theirs.registration_client_uri, theirs.registration_access_token)).status, 401);

  const changed = await manage(mine.registration_client_uri, mine.registration_access_token, {
    method: 'PUT', body: JSON.stringify({ ...web, client_id: mine.client_id, client_name: 'Web app, renamed' }),
  });
  t.is(changed.status, 200);
  const after = await changed.json() as { client_name: string; registration_access_token: string };
  t.is(after.client_name, 'Web app, renamed');
  t.is((await server.runtime.clients.record(mine.client_id))!.metadata.client_name, 'Web app, renamed');
  t.not(after.registration_access_token, mine.registration_access_token);
  t.is((await manage(mine.registration_client_uri, mine.registration_access_token)).status, 401, 'the old one is spent');
  const firstParty = await manage(mine.registration_client_uri, after.registration_access_token, {
    method: 'PUT', body: JSON.stringify({ ...web, client_id: mine.client_id, first_party: true }),
  });
  t.is(firstParty.status, 400);

  t.is((await manage(mine.registration_client_uri, after.registration_access_token, { method: 'DELETE' })).status, 204);
  t.is(await server.runtime.clients.record(mine.client_id), undefined);
  t.truthy(await server.runtime.clients.record(theirs.client_id));
});

test('an update with the registration access token of a client deleted meanwhile (the engine still holding it) does not make it again: 401, and the token is revoked', async (t) => {
  const { token } = await initialAccessToken();
  const registered = await register({ ...WEB, client_name: 'Deleted meanwhile' }, token);
  const manage = (accessToken: unknown, init: RequestInit = {}) => fetch(String(registered.registration_client_uri), {
    ...init, headers: { authorization: `Bearer ${String(accessToken)}`, 'content-type': 'application/json' },
  });
  t.is((await manage(registered.registration_access_token)).status, 200, 'read: the engine holds the client now');
  // Deleted where this server does not hear of it (another instance, the CLI on the in-process store): its copy stays.
  await server.runtime.database.prisma.client.delete({ where: { id: registered.client_id } });
  const update = await manage(registered.registration_access_token, {
    method: 'PUT', body: JSON.stringify({ ...WEB, client_id: registered.client_id, client_name: 'Back again' }),
  });
  t.is(update.status, 401);
  t.like(await update.json(), { error: 'invalid_token' });
  t.truthy(update.headers.get('www-authenticate'));
  t.is(await server.runtime.clients.record(registered.client_id), undefined, 'not made again');
  t.deepEqual(await server.runtime.auditTrail.list({ action: 'client.created', clientId: registered.client_id, limit: 5 }).then((rows) => rows.length), 1);
  t.is(await server.runtime.provider.RegistrationAccessToken.find(String(registered.registration_access_token)), undefined, 'the token is revoked');
});

const WEB = { client_name: 'Web app', redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code'], response_types: ['code'] };

test('a back-channel logout URI inside the network is refused in every form its address or name takes; public ones are taken', async (t) => {
  const { token } = await initialAccessToken(3);
  const inside = [
    'https://10.0.0.7/logout', 'https://0x7f.1/logout', 'https://2130706433/logout', 'https://localhost./logout', 'https://intranet./logout',
    'https://intranet/logout', 'https://app.internal/logout', 'https://[::1]/logout', 'https://[::a00:7]/logout', 'https://[64:ff9b::a00:7]/logout',
    'https://[2002:a00:7::]/logout', 'https://[::ffff:10.0.0.7]/logout', 'https://[fd00::7]/logout', 'https://[fe80::7]/logout', 'https://[ff02::1]/logout',
    'https://198.18.0.7/logout', 'https://198.19.255.7/logout', 'https://192.0.0.7/logout', 'https://100.64.0.7/logout', 'https://0.0.0.7/logout',
    'https://169.254.169.254/logout', 'https://224.0.0.7/logout', 'https://240.0.0.7/logout', 'https://255.255.255.255/logout',
  ];
  for (const uri of inside) {
    const refused = await refusal({ ...WEB, backchannel_logout_uri: uri }, token);
    t.like(refused, { status: 400, error: 'invalid_client_metadata' }, uri);
    t.regex(refused.error_description ?? '', /backchannel_logout_uri must be https on a public host/, uri);
  }
  // Public addresses, IPv6 too, and a public one carried in IPv6 (an over-eager check would refuse these).
  for (const uri of ['https://app.example/logout', 'https://[2606:4700:4700::1111]/logout', 'https://[::ffff:93.184.215.14]/logout']) {
    const registered = await register({ ...WEB, backchannel_logout_uri: uri }, token);
    t.is((await server.runtime.clients.record(registered.client_id))!.metadata.backchannel_logout_uri, uri);
  }
});

test('a single-page or native app registers no back-channel logout URI: the rule administrators\' clients obey', async (t) => {
  const { token } = await initialAccessToken();
  const adminRefusal = await t.throwsAsync(server.runtime.clients.create({ name: 'SPA', type: 'spa', redirectUris: [REDIRECT_URI], backchannelLogoutUri: 'https://app.example/logout' }));
  const spa = await refusal({ ...SPA, backchannel_logout_uri: 'https://app.example/logout' }, token);
  t.like(spa, { status: 400, error: 'invalid_client_metadata', error_description: adminRefusal!.message });
  const native = await refusal({
    ...SPA, application_type: 'native', redirect_uris: ['com.example.app:/callback'], backchannel_logout_uri: 'https://app.example/logout',
  }, token);
  t.like(native, { status: 400, error: 'invalid_client_metadata' });
  t.regex(native.error_description ?? '', /a native client has no server for Gatehouse to call: only a web client takes a back-channel logout URI/);
  t.truthy((await register(SPA, token)).client_id, 'nothing was spent');
});

test('an update with the registration access token keeps what an administrator set: left out or sent back, kept; changed, refused; no read shows the previous secret', async (t) => {
  const { token } = await initialAccessToken();
  const registered = await register(WEB, token);
  const clientId = registered.client_id;
  let accessToken = String(registered.registration_access_token);
  const manage = async (method: string, body?: Record<string, unknown>) => {
    const response = await fetch(String(registered.registration_client_uri), {
      method, headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const answer = await response.json() as Record<string, unknown>;
    if (typeof answer.registration_access_token === 'string') accessToken = answer.registration_access_token;
    return { status: response.status, answer };
  };
  // What an administrator gives it, from the service behind the CLI and the admin API; and a secret rotation
  // that keeps the registered secret working for an hour.
  await server.runtime.clients.update(clientId, { requireSecondFactor: true, refreshTokenGracePeriod: 5 });
  await server.runtime.clients.rotateSecret(clientId, 3600);
  const stored = async () => (await server.runtime.clients.record(clientId))!.metadata;
  const kept = async (when: string) => {
    const metadata = await stored();
    t.like(metadata, { require_second_factor: true, refresh_token_grace_period: 5, previous_client_secret: registered.client_secret }, when);
    t.is((await server.runtime.clients.find(clientId))!.require_second_factor, true, `${when}: the engine reads it so`);
  };

  const read = await manage('GET');
  t.is(read.status, 200);
  t.like(read.answer, { require_second_factor: true, refresh_token_grace_period: 5, client_secret: (await stored()).client_secret }, 'its current secret is its own');
  t.false('previous_client_secret' in read.answer);
  t.false('previous_client_secret_expires_at' in read.answer);

  const leftOut = await manage('PUT', { ...WEB, client_id: clientId, client_name: 'Renamed' });
  t.is(leftOut.status, 200, JSON.stringify(leftOut.answer));
  t.false('previous_client_secret' in leftOut.answer);
  t.is((await stored()).client_name, 'Renamed');
  await kept('left out');

  // What the read showed, but what RFC 7592 forbids sending back (the engine refuses those).
  const { registration_access_token: _token, registration_client_uri: _uri, client_id_issued_at: _issued, client_secret_expires_at: _expires, ...echo } = read.answer;
  const sentBack = await manage('PUT', echo);
  t.is(sentBack.status, 200, JSON.stringify(sentBack.answer));
  t.false('previous_client_secret' in sentBack.answer);
  await kept('sent back');

  for (const [setting, value] of [['require_second_factor', false], ['refresh_token_grace_period', 0], ['first_party', true], ['previous_client_secret', 'chosen']] as const) {
    const changed = await manage('PUT', { ...echo, [setting]: value });
    t.like(changed, { status: 400, answer: { error: 'invalid_client_metadata' } }, setting);
    t.regex(String(changed.answer.error_description), new RegExp(`^${setting}: only an administrator sets this`), setting);
  }
  await kept('after the refused changes');
  t.false('first_party' in await stored());
});
