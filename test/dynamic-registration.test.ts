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

test('a token for three registrations registers three; one that expired registers none', async (t) => {
  const { token } = await initialAccessToken(3);
  for (let index = 0; index < 3; index += 1) t.truthy((await register({ ...SPA, client_name: `App ${index}` }, token)).client_id);
  t.like(await refusal(SPA, token), { status: 401, error: 'invalid_token' });

  const short = await initialAccessToken(1, 1);
  // The store's own expiry, as short as it goes.
  await new Promise((resolve) => setTimeout(resolve, 2100));
  t.like(await refusal(SPA, short.token), { status: 401, error: 'invalid_token' });
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
  ];
  for (const [what, metadata, reason] of cases) {
    const refused = await refusal(metadata, token);
    t.is(refused.status, 400, what);
    t.regex(`${refused.error}: ${refused.error_description ?? ''}`, /invalid_(client_metadata|redirect_uri)/, what);
    t.regex(refused.error_description ?? '', reason, what);
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
