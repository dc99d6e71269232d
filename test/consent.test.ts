// Consent that is remembered: signing out ends sessions and tokens, not what the person allowed an app; an app
// that asks for more is asked for what is new alone; withdrawing an app's access on /account forgets it and
// ends its tokens while the person stays signed in; first-party apps are allowed what they ask.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { signInToAccount } from './helpers/account.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formField, isRedirect } from './helpers/user-agent.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

/** Goes through the sign-in as a person would, saying which pages were shown (and what consent listed). */
async function authorize(
  agent: UserAgent, client: oauth.Client, user: { email: string }, scope: string,
  options: { prompt?: string; authentication?: oauth.ClientAuth } = {},
) {
  const as = await discover(server);
  const request = await authorizationRequest(as, client.client_id, { scope, prompt: options.prompt });
  const shown: string[] = [];
  let consentAsked: string[] = [];
  let { response, url } = await agent.follow(request.url);
  for (let step = 0; step < 4 && !isRedirect(response.status); step += 1) {
    const page = await response.text();
    if (page.includes('name="password"')) {
      shown.push('login');
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(page, 'csrf'), email: user.email, password: PASSWORD }));
    } else if (page.includes('/confirm"')) {
      shown.push('consent');
      consentAsked = [...page.matchAll(/<li>([^<]+)<\/li>/g)].map((match) => match[1]!.trim());
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(page, 'csrf') }));
    } else {
      throw new Error(`stopped on ${url.pathname} (${response.status})`);
    }
  }
  const parameters = oauth.validateAuthResponse(as, client, url, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, options.authentication ?? oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce, requireIdToken: true });
  return { shown, consentAsked, tokens };
}

async function isActive(client: oauth.Client, token: string): Promise<boolean> {
  const as = await discover(server);
  return (await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, oauth.None(), token, insecure))).active;
}

test('signing out everywhere ends the tokens, not the consent: the next sign-in asks only the password', async (t) => {
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const first = await authorize(new UserAgent(), client, user, 'openid email');
  t.deepEqual(first.shown, ['login', 'consent']);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  t.false(await isActive(client, first.tokens.access_token), 'the tokens ended with the sessions');

  const again = await authorize(new UserAgent(), client, user, 'openid email');
  t.deepEqual(again.shown, ['login'], 'no consent page: it was remembered');
  t.is(again.tokens.scope, 'openid email');
  t.true(await isActive(client, again.tokens.access_token));
});

test('an app that asks for more is asked consent for what is new alone, and remembers the whole', async (t) => {
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  await authorize(new UserAgent(), client, user, 'openid email');
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  const more = await authorize(new UserAgent(), client, user, 'openid email profile');
  t.deepEqual(more.shown, ['login', 'consent']);
  t.deepEqual(more.consentAsked, ['See your name'], 'only the new scope is asked');
  t.is(more.tokens.scope, 'openid email profile');
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  t.deepEqual((await authorize(new UserAgent(), client, user, 'openid profile email')).shown, ['login']);
});

test('removing an app\'s access on /account forgets the consent and ends its tokens, while the person stays signed in', async (t) => {
  const { client, metadata } = await registerSpa(server);
  const user = await createUser(server);
  const browser = new UserAgent();
  const signedIn = await authorize(browser, client, user, 'openid email');
  t.true(await isActive(client, signedIn.tokens.access_token));

  const console = new UserAgent();
  const { html } = await signInToAccount(server, console, { email: user.email, password: PASSWORD }, '/account/applications');
  t.regex(html, /<h1 id="page-title">Apps with access<\/h1>/);
  t.true(html.includes(String(metadata.client_name)));
  t.true(html.includes('See your email address and whether it is verified'));
  const removed = await console.request(`${server.issuer}/account/applications/${client.client_id}/remove`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: formField(html, 'csrf') }).toString(),
  });
  t.is(removed.status, 303);
  t.is(removed.headers.get('location'), '/account/applications?removed=1');
  t.false(await isActive(client, signedIn.tokens.access_token), 'its tokens stopped working');
  t.false(await isActive(client, signedIn.tokens.refresh_token!));
  const after = await (await console.request(`${server.issuer}${removed.headers.get('location')}`)).text();
  t.regex(after, /That application no longer has access/);
  t.regex(after, /No application has access to your account/);
  t.false(after.includes(`/account/applications/${client.client_id}/remove`));
  const [event] = await server.runtime.auditTrail.list({ action: 'consent.withdrawn', limit: 10 });
  t.like(event, { subjectUserId: user.id, clientId: client.client_id, detail: { grantsRevoked: 1 } });

  // Still signed in to Gatehouse: the app's next sign-in asks no password, but asks consent again.
  t.deepEqual((await authorize(browser, client, user, 'openid email')).shown, ['consent']);
  const again = await console.request(`${server.issuer}/account/applications/${client.client_id}/remove`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: formField(html, 'csrf') }).toString(),
  });
  t.is(again.status, 303, 'allowed again, so it can be removed again');
  const unknown = await console.request(`${server.issuer}/account/applications/not-a-client/remove`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: formField(html, 'csrf') }).toString(),
  });
  t.is(unknown.status, 404);
});

test('offline access is consented to each time it is asked (prompt=consent): never remembered, and the page always says what it grants', async (t) => {
  const registered = await server.runtime.clients.create({ name: 'Offline web app', type: 'web', redirectUris: [REDIRECT_URI] });
  const client: oauth.Client = { client_id: registered.client_id };
  const authentication = oauth.ClientSecretBasic(String(registered.client_secret));
  const user = await createUser(server);
  const offline = { prompt: 'consent', authentication };
  const first = await authorize(new UserAgent(), client, user, 'openid email offline_access', offline);
  t.deepEqual(first.shown, ['login', 'consent']);
  t.true(first.consentAsked.includes('Keep access while you are away'), first.consentAsked.join(' | '));
  t.truthy(first.tokens.refresh_token);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });

  const again = await authorize(new UserAgent(), client, user, 'openid email offline_access', offline);
  t.deepEqual(again.shown, ['login', 'consent'], 'asked again');
  t.is(again.consentAsked.length, first.consentAsked.length, 'the whole of it, not an empty list');
  t.truthy(again.tokens.refresh_token);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });

  const online = await authorize(new UserAgent(), client, user, 'openid email', { authentication });
  t.deepEqual(online.shown, ['login'], 'the rest is remembered');
  t.is(online.tokens.refresh_token, undefined);
  const [remembered] = await server.runtime.consents.list(user.id);
  t.false(remembered!.scopes.includes('offline_access'));
});

test('a first-party app asking for more in the same session gets it without a page', async (t) => {
  const metadata = await server.runtime.clients.create({ name: 'Our growing app', type: 'spa', redirectUris: [REDIRECT_URI], firstParty: true });
  const client: oauth.Client = { client_id: metadata.client_id, token_endpoint_auth_method: 'none' };
  const user = await createUser(server);
  const agent = new UserAgent();
  t.deepEqual((await authorize(agent, client, user, 'openid')).shown, ['login']);
  const more = await authorize(agent, client, user, 'openid email profile');
  t.deepEqual(more.shown, []);
  t.is(more.tokens.scope, 'openid email profile');
  t.deepEqual(await server.runtime.consents.list(user.id), [], 'nothing to remember for a first-party app');
});

test('a first-party app is allowed what it asks with no consent page, but a browser app never gets offline access', async (t) => {
  const metadata = await server.runtime.clients.create({ name: 'Our own app', type: 'spa', redirectUris: [REDIRECT_URI], firstParty: true });
  const client: oauth.Client = { client_id: metadata.client_id, token_endpoint_auth_method: 'none' };
  const user = await createUser(server);
  const signedIn = await authorize(new UserAgent(), client, user, 'openid email profile offline_access');
  t.deepEqual(signedIn.shown, ['login']);
  t.is(signedIn.tokens.scope, 'openid email profile');
  await t.throwsAsync(server.runtime.clients.create({ name: 'A service', type: 'service', firstParty: true }), { message: /no consent to skip/ });
});
