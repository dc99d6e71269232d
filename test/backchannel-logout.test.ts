// Back-channel logout (OpenID Connect Back-Channel Logout 1.0) as an application sees it: a web app signed in
// through openid-client gets a logout token on its loopback listener whenever the person's session ends — signing
// out through the app, the sessions page, sign out everywhere, disabling the account, withdrawing its access —
// and verifies it with jose against Gatehouse's JWKS. Deliveries are queued: retried while the app is down,
// given up (and audited) when it refuses, and never waited for by the person signing out.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose';
import * as client from 'openid-client';
import { auditEvents, about } from './helpers/runtime.ts';
import { PASSWORD, POST_LOGOUT_REDIRECT_URI, REDIRECT_URI, createUser, signIn } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formAction, formField } from './helpers/user-agent.ts';
import { until } from './helpers/wait.ts';

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

let server: TestServer;
test.before(async () => {
  // Retries come fast here; production waits seconds, then minutes.
  server = await startTestServer({}, { runtime: { logoutNotices: { firstRetryDelayMs: 20, maxRetryDelayMs: 20, pollIntervalMs: 50 } } });
});
test.after.always(async () => {
  await server?.close();
});

interface Delivery {
  contentType: string | undefined;
  logoutToken: string | null;
  /** Answers the request (when the listener holds it). */
  answer(status: number): void;
}

/**
 * The application's back-channel logout endpoint, on a free loopback port: it records each POST and answers with
 * the next of `statuses` (then 200), or holds it for the test to answer ('hold'); and counts the connections made to it.
 */
async function logoutEndpoint(t: ExecutionContext, statuses: Array<number | 'hold'> = []) {
  const deliveries: Delivery[] = [];
  let connections = 0;
  const listener = createServer((request: IncomingMessage, response: ServerResponse) => {
    let body = '';
    request.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    request.on('end', () => {
      const answer = (status: number) => { response.writeHead(status).end(); };
      deliveries.push({ contentType: request.headers['content-type'], logoutToken: new URLSearchParams(body).get('logout_token'), answer });
      const status = statuses.shift() ?? 200;
      if (status !== 'hold') answer(status);
    });
  });
  listener.on('connection', () => { connections += 1; });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    listener.closeAllConnections();
    listener.close(() => resolve());
  }));
  const { port } = listener.address() as AddressInfo;
  return { uri: `http://127.0.0.1:${port}/backchannel-logout`, port, deliveries, connections: () => connections };
}

async function webApp(backchannelLogoutUri: string, name = 'Web app with back-channel logout') {
  const registered = await server.runtime.clients.create({
    name, type: 'web', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_REDIRECT_URI], backchannelLogoutUri,
  });
  const secret = String(registered.client_secret);
  const config = await client.discovery(new URL(server.issuer), registered.client_id, secret, client.ClientSecretBasic(secret), { execute: [client.allowInsecureRequests] });
  return { registered, config };
}

/** Signs a person in through the app the way openid-client does; the ID token's sid names the session to the app. */
async function signInThroughApp(config: client.Configuration, person?: { id: string; email: string }, agent = new UserAgent()) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI, scope: 'openid email', state,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
  });
  const user = person ?? await createUser(server);
  const callback = await signIn(agent, url, { email: user.email, password: PASSWORD });
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: codeVerifier, expectedState: state });
  const sid = tokens.claims()?.sid;
  if (typeof sid !== 'string') throw new Error('the ID token names no session (sid)');
  return { user, agent, tokens, sid };
}

/** Verifies a logout token as the app must (Back-Channel Logout 1.0 §2.6), with jose and the JWKS. */
async function verifyLogoutToken(config: client.Configuration, token: string | null): Promise<JWTPayload> {
  if (!token) throw new Error('no logout_token was POSTed');
  const metadata = config.serverMetadata();
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(metadata.jwks_uri!)), {
    issuer: metadata.issuer, audience: config.clientMetadata().client_id, typ: 'logout+jwt', maxTokenAge: '2 minutes',
  });
  return payload;
}

/** RP-initiated logout as openid-client builds it, confirmed on Gatehouse's page ("Sign out", or only this app). */
async function signOutThroughApp(agent: UserAgent, config: client.Configuration, idToken: string, everywhere = true) {
  const { response } = await agent.follow(client.buildEndSessionUrl(config, { id_token_hint: idToken, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI }));
  const confirmation = await response.text();
  return agent.submit(formAction(confirmation, /session\/end\/confirm/), { xsrf: formField(confirmation, 'xsrf'), ...(everywhere ? { logout: 'yes' } : {}) });
}

test('discovery says back-channel and front-channel logout are supported, each with the session id', async (t) => {
  const metadata = (await client.discovery(new URL(server.issuer), 'any', undefined, undefined, { execute: [client.allowInsecureRequests] })).serverMetadata();
  t.like(metadata, {
    backchannel_logout_supported: true, backchannel_logout_session_supported: true,
    frontchannel_logout_supported: true, frontchannel_logout_session_supported: true,
  });
});

test('signing out through the app POSTs it a logout token that jose verifies: typ logout+jwt, the logout event, sub, sid, jti, no nonce', async (t) => {
  const endpoint = await logoutEndpoint(t);
  const { config, registered } = await webApp(endpoint.uri);
  const { user, agent, tokens, sid } = await signInThroughApp(config);
  const { url } = await signOutThroughApp(agent, config, tokens.id_token!);
  t.is(`${url.origin}${url.pathname}`, POST_LOGOUT_REDIRECT_URI, 'the person is back at the app');

  await server.settled();
  t.is(endpoint.deliveries.length, 1);
  const [delivery] = endpoint.deliveries;
  t.is(delivery!.contentType, 'application/x-www-form-urlencoded');
  const claims = await verifyLogoutToken(config, delivery!.logoutToken);
  t.is(claims.sub, user.id);
  t.is(claims.sid, sid, 'the session the ID token named');
  t.deepEqual(claims.events, { [BACKCHANNEL_EVENT]: {} });
  t.regex(String(claims.jti), /^[\w-]{16,}$/);
  t.false('nonce' in claims, 'a logout token must not carry a nonce');
  t.is(decodeProtectedHeader(delivery!.logoutToken!).typ, 'logout+jwt');

  const delivered = await auditEvents(server.runtime, 'logout.delivered', about(user));
  t.is(delivered.length, 1);
  t.like(delivered[0], { outcome: 'success', clientId: registered.client_id, detail: { reason: 'signed_out', attempts: 1 } });
});

test('signing out of one app only tells that app; signing out of Gatehouse then tells the other', async (t) => {
  const first = await logoutEndpoint(t);
  const second = await logoutEndpoint(t);
  const firstApp = await webApp(first.uri, 'First app');
  const secondApp = await webApp(second.uri, 'Second app');
  const { user, agent, tokens, sid: firstSid } = await signInThroughApp(firstApp.config);
  const { tokens: secondTokens, sid: secondSid } = await signInThroughApp(secondApp.config, user, agent);
  t.not(firstSid, secondSid, 'each app knows the session by a sid of its own');

  await signOutThroughApp(agent, firstApp.config, tokens.id_token!, false);
  await server.settled();
  t.is(first.deliveries.length, 1);
  t.is(second.deliveries.length, 0, 'the other app stays signed in');
  t.is((await verifyLogoutToken(firstApp.config, first.deliveries[0]!.logoutToken)).sid, firstSid);

  await signOutThroughApp(agent, secondApp.config, secondTokens.id_token!);
  await server.settled();
  t.is(first.deliveries.length, 1, 'told once');
  t.is(second.deliveries.length, 1);
  t.is((await verifyLogoutToken(secondApp.config, second.deliveries[0]!.logoutToken)).sid, secondSid);
});

const OTHER_ENDINGS = [
  {
    how: 'the sessions page ends the session',
    reason: 'session_ended',
    end: async (user: { id: string; email: string }) => {
      const [session] = await server.runtime.accountSessions.list(user.id);
      await server.runtime.accountSessions.end(user.id, session!.uid, { reason: 'session_ended' });
    },
  },
  {
    how: 'the person signs out everywhere',
    reason: 'signed_out_everywhere',
    end: async (user: { id: string }) => { await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' }); },
  },
  {
    how: 'an administrator disables the account',
    reason: 'account_disabled',
    end: async (user: { email: string }) => { await server.runtime.flows.accountAdministration.disable(user.email, { type: 'admin', id: 'cli:test' }); },
  },
  {
    how: 'the person withdraws the app\'s access',
    reason: 'access_withdrawn',
    end: async (user: { id: string }, clientId: string) => { await server.runtime.accountSessions.revokeApplication(user.id, clientId, { reason: 'access_withdrawn' }); },
  },
] as const;

for (const ending of OTHER_ENDINGS) {
  test(`when ${ending.how}, the app gets a logout token for that session`, async (t) => {
    const endpoint = await logoutEndpoint(t);
    const { config, registered } = await webApp(endpoint.uri);
    const { user, sid } = await signInThroughApp(config);
    await ending.end(user, registered.client_id);
    await server.settled();
    t.is(endpoint.deliveries.length, 1);
    const claims = await verifyLogoutToken(config, endpoint.deliveries[0]!.logoutToken);
    t.like(claims, { sub: user.id, sid });
    const [delivered] = await auditEvents(server.runtime, 'logout.delivered', about(user));
    t.like(delivered, { clientId: registered.client_id, detail: { reason: ending.reason } });
  });
}

test('an app that is down is told again until it takes the logout token, and the delivery is audited once', async (t) => {
  const endpoint = await logoutEndpoint(t, [503, 503]);
  const { config, registered } = await webApp(endpoint.uri);
  const { user, agent, tokens } = await signInThroughApp(config);
  await signOutThroughApp(agent, config, tokens.id_token!);
  await until(async () => endpoint.deliveries.length === 3 && (await auditEvents(server.runtime, 'logout.delivered', about(user))).length === 1, 'the third attempt to be taken');
  // Each attempt is a new token (a new jti, a fresh expiry), each verifies.
  const jtis = await Promise.all(endpoint.deliveries.map(async (delivery) => (await verifyLogoutToken(config, delivery.logoutToken)).jti));
  t.is(new Set(jtis).size, 3);
  // Taken: no pass tries it again.
  for (let pass = 0; pass < 3; pass++) await server.runtime.logoutNotices.deliveries.retryDue();
  t.is(endpoint.deliveries.length, 3);
  t.like((await auditEvents(server.runtime, 'logout.delivered', about(user)))[0], { clientId: registered.client_id, detail: { attempts: 3 } });
  t.deepEqual(await auditEvents(server.runtime, 'logout.failed', about(user)), []);
});

test('an app that refuses the logout token (a 4xx) is not asked again, and the failure is audited', async (t) => {
  const endpoint = await logoutEndpoint(t, [400]);
  const { config, registered } = await webApp(endpoint.uri);
  const { user, agent, tokens } = await signInThroughApp(config);
  await signOutThroughApp(agent, config, tokens.id_token!);
  await server.settled();
  for (let pass = 0; pass < 3; pass++) await server.runtime.logoutNotices.deliveries.retryDue();
  t.is(endpoint.deliveries.length, 1);
  const failed = await auditEvents(server.runtime, 'logout.failed', about(user));
  t.is(failed.length, 1);
  t.like(failed[0], { outcome: 'failure', clientId: registered.client_id, detail: { reason: 'signed_out', failure: 'HTTP 400', attempts: 1 } });
});

test('the person\'s logout never waits for the app: it is back at the app while the app has yet to answer', async (t) => {
  const endpoint = await logoutEndpoint(t, ['hold']);
  const { config } = await webApp(endpoint.uri);
  const { agent, tokens } = await signInThroughApp(config);
  const { url } = await signOutThroughApp(agent, config, tokens.id_token!);
  t.is(`${url.origin}${url.pathname}`, POST_LOGOUT_REDIRECT_URI);
  await until(() => endpoint.deliveries.length === 1, 'the logout token to arrive');
  endpoint.deliveries[0]!.answer(200);
  await server.settled();
});

/** What a refused registration says: the engine's error_description, or the message of Gatehouse's own refusal. */
function explanation(error: Error | undefined): string {
  return (error as { error_description?: string } | undefined)?.error_description ?? error?.message ?? '';
}

test('logout URIs: back-channel for web apps only, front-channel for web apps and SPAs on their own origin, https or loopback', async (t) => {
  const base = { redirectUris: [REDIRECT_URI] };
  const refused = async (input: Parameters<typeof server.runtime.clients.create>[0], expected: RegExp) => {
    const error = await t.throwsAsync(server.runtime.clients.create(input));
    t.regex(explanation(error), expected, JSON.stringify(input));
  };
  await refused({ name: 'SPA', type: 'spa', ...base, backchannelLogoutUri: 'http://127.0.0.1:4999/logout' }, /only a web client takes a back-channel logout URI/);
  await refused({ name: 'App', type: 'native', redirectUris: ['com.example.app:/callback'], frontchannelLogoutUri: 'https://app.example/logout' }, /only web and spa clients take a front-channel logout URI/);
  await refused({ name: 'Service', type: 'service', backchannelLogoutUri: 'https://api.example/logout' }, /only a web client/);
  await refused({ name: 'Web', type: 'web', ...base, backchannelLogoutUri: 'http://app.example/logout' }, /backchannel_logout_uri must use https/);
  await refused({ name: 'Web', type: 'web', ...base, frontchannelLogoutUri: 'https://elsewhere.example/logout' }, /frontchannel_logout_uri must be on the origin of one of the redirect URIs/);
  await refused({ name: 'Web', type: 'web', ...base, frontchannelLogoutUri: 'http://127.0.0.1:4999/logout#x' }, /must not have a fragment/);

  const created = await server.runtime.clients.create({
    name: 'Web', type: 'web', redirectUris: ['https://app.example/callback'],
    backchannelLogoutUri: 'https://app.example/backchannel-logout', frontchannelLogoutUri: 'https://app.example/frontchannel-logout',
  });
  t.like(created, {
    backchannel_logout_uri: 'https://app.example/backchannel-logout', backchannel_logout_session_required: true,
    frontchannel_logout_uri: 'https://app.example/frontchannel-logout', frontchannel_logout_session_required: true,
  });
  const updated = await server.runtime.clients.update(created.client_id, { backchannelLogoutUri: null });
  t.false('backchannel_logout_uri' in updated!);
  t.false('backchannel_logout_session_required' in updated!);
  t.is(updated!.frontchannel_logout_uri, 'https://app.example/frontchannel-logout', 'the other stays');
  const error = await t.throwsAsync(server.runtime.clients.update(created.client_id, { redirectUris: ['https://other.example/callback'] }));
  t.regex(explanation(error), /frontchannel_logout_uri must be on the origin/, 'a front-channel URI cannot be left on an origin the app no longer has');
});

test('an app that registered itself is never called inside the network, whatever its URI\'s name resolves to: refused as Gatehouse connects, audited, not retried', async (t) => {
  const endpoint = await logoutEndpoint(t);
  const { token } = await server.runtime.initialAccessTokens.issue({ uses: 1, expiresInSeconds: 600, actor: { type: 'admin', id: 'test' } });
  const config = await client.dynamicClientRegistration(new URL(server.issuer), {
    client_name: 'Registered web app', redirect_uris: [REDIRECT_URI], grant_types: ['authorization_code'], response_types: ['code'],
    backchannel_logout_uri: 'https://app.example/backchannel-logout',
  }, undefined, { initialAccessToken: token, execute: [client.allowInsecureRequests] });
  const clientId = config.clientMetadata().client_id;
  // Registration judges a name by its text; where it resolves is the registrant's to choose, and may change. No
  // public name can be relied on to resolve to this machine in a test, and registration refuses `localhost` by
  // its text: an administrator puts it there, to stand for any name that resolves to the loopback interface.
  await server.runtime.clients.update(clientId, { backchannelLogoutUri: `http://localhost:${endpoint.port}/backchannel-logout` });
  const { user } = await signInThroughApp(config);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  await server.settled();
  // An address literal is connected to without a lookup: it is checked before.
  await server.runtime.clients.update(clientId, { backchannelLogoutUri: endpoint.uri });
  await signInThroughApp(config, user);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });

  await server.settled();
  for (let pass = 0; pass < 3; pass++) await server.runtime.logoutNotices.deliveries.retryDue();
  t.is(endpoint.connections(), 0, 'nothing reached the listener');
  t.deepEqual(await auditEvents(server.runtime, 'logout.delivered', about(user)), []);
  const failures = (await auditEvents(server.runtime, 'logout.failed', about(user))).map((event) => event.detail as { failure: string; attempts: number });
  t.is(failures.length, 2);
  t.true(failures.every(({ attempts }) => attempts === 1), 'neither was tried again');
  t.true(failures.some(({ failure }) => /^refused: localhost resolves to (127\.0\.0\.1|::1), not a public address$/.test(failure)), JSON.stringify(failures));
  t.true(failures.some(({ failure }) => failure === 'refused: 127.0.0.1 is not a public address'), JSON.stringify(failures));
});
