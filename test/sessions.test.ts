// Sessions: the account console lists where a person is signed in, ends one session or all of them
// (revoking the grants and tokens behind them), signs this browser out, and the session identifier
// changes at every login (no session fixation). All through real browsers' flows and oauth4webapi.
import { setTimeout as sleep } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formAction, formField } from './helpers/user-agent.ts';
import {
  PASSWORD, POST_LOGOUT_REDIRECT_URI, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, registerSpa, signIn,
  signInToNewSpa,
} from './helpers/oauth.ts';

let server: TestServer;
test.before(async () => { server = await startTestServer(); });
test.after.always(async () => { await server?.close(); });

const CHROME_ON_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const FIREFOX_ON_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0';
const SESSION_COOKIE = '_session';

const browser = (userAgent: string) => new UserAgent({ headers: { 'user-agent': userAgent } });

type Person = Awaited<ReturnType<typeof createUser>>;

/** Signs a browser in to an application and exchanges the code (PKCE) for its tokens. */
async function signInToApp(
  agent: UserAgent,
  person: Person,
  app: { client: oauth.Client; auth: oauth.ClientAuth },
  parameters: Record<string, string> = {},
): Promise<oauth.TokenEndpointResponse> {
  const as = await discover(server);
  const request = await authorizationRequest(as, app.client.client_id, parameters);
  const callback = await signIn(agent, request.url, { email: person.email, password: PASSWORD });
  const code = oauth.validateAuthResponse(as, app.client, callback, request.state);
  return oauth.processAuthorizationCodeResponse(as, app.client, await oauth.authorizationCodeGrantRequest(
    as, app.client, app.auth, code, REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
}

async function newSpa() {
  const { client } = await registerSpa(server);
  return { client, auth: oauth.None() };
}

async function newWebApp() {
  const { client, secret } = await registerConfidential(server, 'web');
  return { client, auth: oauth.ClientSecretBasic(secret) };
}

/** Signs the browser out through the engine's own logout (RP-initiated, confirmed on its page). */
async function engineLogout(agent: UserAgent, idToken: string): Promise<void> {
  const as = await discover(server);
  const logout = new URL(as.end_session_endpoint!);
  logout.searchParams.set('id_token_hint', idToken);
  const page = await (await agent.follow(logout)).response.text();
  const { response } = await agent.submit(formAction(page, /session\/end\/confirm/), { xsrf: formField(page, 'xsrf'), logout: 'yes' });
  if (response.status !== 200) throw new Error(`logout ended with ${response.status}`);
}

async function refresh(app: { client: oauth.Client; auth: oauth.ClientAuth }, refreshToken: string) {
  const as = await discover(server);
  return oauth.processRefreshTokenResponse(as, app.client,
    await oauth.refreshTokenGrantRequest(as, app.client, app.auth, refreshToken, insecure));
}

/** The OAuth error a refresh with this token ends in (the test fails if it succeeds). */
async function refreshError(t: ExecutionContext, app: { client: oauth.Client; auth: oauth.ClientAuth }, refreshToken: string) {
  const error = await t.throwsAsync(refresh(app, refreshToken), { instanceOf: oauth.ResponseBodyError });
  return error?.error;
}

/** Whether a resource server's introspection says the access token is active. */
async function introspectionActive(accessToken: string): Promise<boolean> {
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const response = await oauth.introspectionRequest(as, service.client, oauth.ClientSecretBasic(service.secret), accessToken, insecure);
  return (await oauth.processIntrospectionResponse(as, service.client, response)).active;
}

async function sessionsPage(agent: UserAgent): Promise<string> {
  const { response, url } = await agent.follow(`${server.issuer}/account/sessions`);
  if (url.pathname !== '/account/sessions' || response.status !== 200) throw new Error(`expected the sessions page, got ${url.pathname} ${response.status}`);
  return response.text();
}

/** The uids the page offers a "Sign out" button for (every session but this one). */
function endableUids(html: string): string[] {
  return [...html.matchAll(/action="\/account\/sessions\/([^/"]+)\/end"/g)].map((match) => match[1]!);
}

/** Whether the browser is still signed in: an authorization request goes through without a login page. */
async function isSignedIn(agent: UserAgent, clientId: string): Promise<boolean> {
  const as = await discover(server);
  const { response, url } = await agent.follow((await authorizationRequest(as, clientId)).url);
  if (url.origin !== new URL(server.issuer).origin && url.searchParams.has('code')) return true;
  const page = await response.text();
  if (page.includes('name="password"')) return false;
  throw new Error(`unexpected answer ${url.pathname} ${response.status}`);
}

async function auditEvents(person: Person, action: string) {
  await server.runtime.auditTrail.flush();
  return server.runtime.auditTrail.list({ userEmail: person.email, action, limit: 50 });
}

test('the sessions page lists each browser with its device, IP, sign-in time and applications, and marks this device', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  const robot = browser('gatehouse-test-robot/1.0');
  await signInToApp(chrome, person, spa);
  await signInToApp(robot, person, spa);
  await signInToApp(firefox, person, spa);

  const html = await sessionsPage(firefox);
  t.regex(html, /<h1 id="page-title">/);
  t.true(html.includes('Chrome on Linux'));
  t.true(html.includes('Firefox on Windows'));
  t.true(html.includes('Unknown device'), 'a browser Bowser cannot name');
  t.is(html.match(/This device/g)?.length, 1);
  t.regex(html, /Firefox on Windows <span class="tag">This device<\/span>/);
  t.regex(html, /<time datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">\d{1,2} \w+ \d{4}/);
  t.true(html.includes('127.0.0.1'));
  t.true(html.includes('Test SPA'), 'the application signed in through each session is named');
  t.is(endableUids(html).length, 2, 'every other session has a Sign out button, this one none');
  t.truthy(formField(html, 'csrf'));
  t.is(formAction(html, /end-all/), '/account/sessions/end-all');

  const listed = await server.runtime.accountSessions.list(person.id);
  t.is(listed.length, 3);
  t.deepEqual(listed.map((session) => session.loginTs), listed.map((session) => session.loginTs).sort((a, b) => b! - a!), 'newest first');
  t.true(listed.every((session) => session.amr.includes('pwd')));

  const stranger = await createUser(server);
  t.deepEqual(await server.runtime.accountSessions.list(stranger.id), [], 'nobody sees another person\'s sessions');
});

test('ending another session revokes its tokens, offline access included, and asks that browser to sign in again; this browser keeps working', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const web = await newWebApp();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  // Perhaps an intruder's browser: it asked for offline access, a refresh token meant to outlive the session.
  const chromeTokens = await signInToApp(chrome, person, web, { scope: 'openid offline_access', prompt: 'consent' });
  t.truthy(chromeTokens.refresh_token);
  t.regex(chromeTokens.scope ?? '', /offline_access/);
  const firefoxTokens = await signInToApp(firefox, person, spa);
  t.true(await introspectionActive(chromeTokens.access_token));

  const html = await sessionsPage(firefox);
  const [chromeUid] = endableUids(html);
  const ended = await firefox.submit(`${server.issuer}/account/sessions/${chromeUid}/end`, { csrf: formField(html, 'csrf') });
  t.is(ended.url.pathname, '/account/sessions');
  const after = await ended.response.text();
  t.regex(after, /role="status">That session is signed out/);
  t.false(after.includes('Chrome on Linux'));
  t.deepEqual(endableUids(after), []);

  t.is(await refreshError(t, web, chromeTokens.refresh_token!), 'invalid_grant', 'offline access ended with the session');
  t.false(await introspectionActive(chromeTokens.access_token));
  const { provider } = server.runtime;
  t.is(await provider.RefreshToken.find(chromeTokens.refresh_token!), undefined, 'the refresh token is deleted, not just orphaned');
  t.is(await provider.AccessToken.find(chromeTokens.access_token), undefined);
  t.false(await isSignedIn(chrome, web.client.client_id), 'the ended browser is asked to log in again');

  const refreshed = await refresh(spa, firefoxTokens.refresh_token!);
  t.truthy(refreshed.access_token, 'this browser\'s refresh token still works');
  t.true(await isSignedIn(firefox, spa.client.client_id));

  const sessionEvents = await auditEvents(person, 'session.ended');
  t.is(sessionEvents.length, 1);
  t.like(sessionEvents[0]!, { outcome: 'success', subjectUserId: person.id, userAgent: FIREFOX_ON_WINDOWS, detail: { sessionUid: chromeUid, reason: 'session_ended' } });
  const grantEvents = await auditEvents(person, 'grant.revoked');
  t.is(grantEvents.length, 1);
  t.like(grantEvents[0]!, { clientId: web.client.client_id, detail: { reason: 'session_ended' } });

  const again = await firefox.submit(`${server.issuer}/account/sessions/${chromeUid}/end`, { csrf: formField(after, 'csrf') });
  t.is(again.response.status, 404, 'an ended session cannot be ended twice');
  // Listing dropped the ended session from the account's index, so the index does not grow with every login.
  t.false((await server.runtime.store.indexMembers(`account:${person.id}:sessions`)).includes(chromeUid!));
});

test('sign out everywhere ends every session, this one included, and revokes every grant, offline access too', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const web = await newWebApp();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  const laptop = browser(CHROME_ON_LINUX);
  const chromeTokens = await signInToApp(chrome, person, spa);
  const firefoxTokens = await signInToApp(firefox, person, spa);
  const offline = await signInToApp(laptop, person, web, { scope: 'openid offline_access', prompt: 'consent' });
  t.truthy(offline.refresh_token);

  // The laptop signs out through the engine's logout, which leaves offline access alone: no session holds
  // the web application's grant any more, and signing out everywhere must still reach it.
  await engineLogout(laptop, offline.id_token!);
  t.false(await isSignedIn(laptop, web.client.client_id));
  t.is((await server.runtime.accountSessions.list(person.id)).length, 2);
  const stillOffline = await refresh(web, offline.refresh_token!);
  t.truthy(stillOffline.refresh_token, 'offline access survives the engine\'s logout of one browser');

  const html = await sessionsPage(firefox);
  const { response } = await firefox.submit(`${server.issuer}/account/sessions/end-all`, { csrf: formField(html, 'csrf') });
  t.is(response.status, 200);
  const page = await response.text();
  t.regex(page, /<h1 id="page-title">You are signed out<\/h1>/);
  t.regex(page, /role="status">You are signed out on every device/);
  t.regex(page, /<a href="\/account">Sign in again<\/a>/);
  t.is(firefox.cookie(SESSION_COOKIE), undefined, 'the session cookie is cleared');

  t.deepEqual(await server.runtime.accountSessions.list(person.id), []);
  t.is(await refreshError(t, spa, chromeTokens.refresh_token!), 'invalid_grant');
  t.is(await refreshError(t, spa, firefoxTokens.refresh_token!), 'invalid_grant');
  t.is(await refreshError(t, web, stillOffline.refresh_token!), 'invalid_grant', 'offline access ended too');
  t.false(await introspectionActive(chromeTokens.access_token));
  t.false(await introspectionActive(firefoxTokens.access_token));
  t.false(await introspectionActive(stillOffline.access_token));
  t.false(await isSignedIn(chrome, spa.client.client_id));
  const account = await firefox.request(`${server.issuer}/account`);
  t.is(account.status, 302, 'this browser is signed out too');
  t.is(new URL(account.headers.get('location')!).pathname, '/auth');

  const [summary] = await auditEvents(person, 'sessions.ended_all');
  t.like(summary!, { outcome: 'success', subjectUserId: person.id, detail: { reason: 'signed_out_everywhere', sessions: 2, keptOne: false } });
  const revoked = await auditEvents(person, 'grant.revoked');
  const everywhere = revoked.filter((event) => event.detail.reason === 'signed_out_everywhere');
  t.true(everywhere.some((event) => event.clientId === web.client.client_id), 'the offline grant is audited');
  t.is(everywhere.length, Number(summary!.detail.grants));
});

test('endAll keeping one session (a password change) leaves that session and its tokens alone', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  const chromeTokens = await signInToApp(chrome, person, spa);
  const firefoxTokens = await signInToApp(firefox, person, spa);
  const sessions = await server.runtime.accountSessions.list(person.id);
  const keep = sessions.find((session) => session.device === 'Firefox on Windows')!.uid;

  const result = await server.runtime.accountSessions.endAll(person.id, { keep, reason: 'password_changed' });
  t.like(result, { sessions: 1, grants: 1 });
  t.deepEqual((await server.runtime.accountSessions.list(person.id)).map((session) => session.uid), [keep]);
  t.truthy((await refresh(spa, firefoxTokens.refresh_token!)).access_token);
  t.true(await isSignedIn(firefox, spa.client.client_id));
  t.is(await refreshError(t, spa, chromeTokens.refresh_token!), 'invalid_grant');
  t.false(await isSignedIn(chrome, spa.client.client_id));
  const [summary] = await auditEvents(person, 'sessions.ended_all');
  t.like(summary!, { detail: { reason: 'password_changed', sessions: 1, grants: 1, keptOne: true } });
});

test('signing out of this browser ends its session and its grants, clears the cookie, and leaves other browsers signed in', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  const chromeTokens = await signInToApp(chrome, person, spa);
  const firefoxTokens = await signInToApp(firefox, person, spa);

  const { response: overview } = await firefox.follow(`${server.issuer}/account`);
  const html = await overview.text();
  t.is(formAction(html, /sign-out/), '/account/sign-out');
  const { response } = await firefox.submit(`${server.issuer}/account/sign-out`, { csrf: formField(html, 'csrf') });
  t.is(response.status, 200);
  const page = await response.text();
  t.regex(page, /role="status">You are signed out on this device/);
  t.regex(page, /<a href="\/account">Sign in again<\/a>/);
  t.is(firefox.cookie(SESSION_COOKIE), undefined);

  t.is(await refreshError(t, spa, firefoxTokens.refresh_token!), 'invalid_grant');
  t.is(await server.runtime.provider.RefreshToken.find(firefoxTokens.refresh_token!), undefined, 'its grant was revoked');
  t.false(await isSignedIn(firefox, spa.client.client_id));
  t.truthy((await refresh(spa, chromeTokens.refresh_token!)).access_token);
  t.true(await isSignedIn(chrome, spa.client.client_id));
  const again = await firefox.request(`${server.issuer}/account/sign-out`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${encodeURIComponent(formField(html, 'csrf'))}`,
  });
  t.is(again.status, 403, 'signed out: nothing left to sign out of');
  const [event] = await auditEvents(person, 'session.ended');
  t.like(event!, { detail: { reason: 'signed_out' } });
});

test('a sign-in page left open while the browser signed out in another tab says so, and starts that sign-in again from the application\'s own request', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const agent = browser(CHROME_ON_LINUX);
  const { id_token: idToken } = await signInToApp(agent, person, spa);
  const as = await discover(server);
  // Tab B: the application asks the person to sign in again (prompt=login); its login page stays open.
  const request = await authorizationRequest(as, spa.client.client_id, { prompt: 'login' });
  const { response, url: loginPage } = await agent.follow(request.url);
  const csrf = formField(await response.text(), 'csrf');
  // Tab A: signed out.
  await engineLogout(agent, idToken!);

  const submitted = await agent.submit(new URL(`${loginPage.pathname}/login`, loginPage), { csrf, email: person.email, password: PASSWORD });
  t.is(submitted.response.status, 400);
  const page = await submitted.response.text();
  t.regex(page, /This sign-in was interrupted/);
  t.regex(page, /You signed out, or signed in as someone else, in another tab or window/);
  const restart = /<a href="([^"]+)">Start signing in again<\/a>/.exec(page)?.[1]?.replaceAll('&amp;', '&');
  t.truthy(restart);
  // The same request the application made: its state, nonce and PKCE challenge go on to its callback.
  const callback = await signIn(agent, new URL(restart!, server.issuer), { email: person.email, password: PASSWORD });
  const code = oauth.validateAuthResponse(as, spa.client, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, spa.client, await oauth.authorizationCodeGrantRequest(
    as, spa.client, spa.auth, code, REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  t.truthy(tokens.access_token);

  // A sign-in this browser has no cookie of (expired, finished, or another browser's): it says it expired, and offers nothing.
  const gone = await agent.submit(new URL('/interaction/no-such-sign-in/login', loginPage), { csrf, email: person.email, password: PASSWORD });
  t.is(gone.response.status, 400);
  const expired = await gone.response.text();
  t.regex(expired, /This sign-in has expired/);
  t.notRegex(expired, /Start signing in again/);
});

test('the page of another browser\'s sign-in, asked for with this browser\'s own interrupted sign-in cookie, offers nothing of that request', async (t) => {
  const spa = await newSpa();
  const as = await discover(server);
  // This browser: signed in, a sign-in (prompt=login) begun, then signed out, so that the engine refuses it as interrupted.
  const mallory = browser(FIREFOX_ON_WINDOWS);
  const { id_token: idToken } = await signInToApp(mallory, await createUser(server), spa);
  const started = await mallory.request((await authorizationRequest(as, spa.client.client_id, { prompt: 'login' })).url);
  const setCookie = (name: string) => started.headers.getSetCookie().map((line) => line.split(';')[0]!).find((pair) => pair.startsWith(`${name}=`))!.slice(name.length + 1);
  const ownUid = setCookie('_interaction');
  t.truthy(started.headers.get('location')?.endsWith(`/interaction/${ownUid}`));
  await engineLogout(mallory, idToken!);
  // Another browser's sign-in, elsewhere.
  const victim = await createUser(server);
  const victimsRequest = await authorizationRequest(as, spa.client.client_id, { login_hint: victim.email });
  const { url: victimsPage } = await browser(CHROME_ON_LINUX).follow(victimsRequest.url);
  const victimsUid = victimsPage.pathname.split('/')[2]!;

  // Its own signed sign-in cookie, sent to the other sign-in's page (a cookie's path binds only browsers).
  mallory.plantCookie('_interaction', ownUid, `/interaction/${victimsUid}`);
  mallory.plantCookie('_interaction.sig', setCookie('_interaction.sig'), `/interaction/${victimsUid}`);
  const response = await mallory.request(new URL(`/interaction/${victimsUid}`, server.issuer));
  t.is(response.status, 400);
  const page = await response.text();
  t.regex(page, /This sign-in has expired/);
  for (const secret of [victimsRequest.state, victimsRequest.nonce, encodeURIComponent(victim.email)]) t.false(page.includes(secret));
});

test('a session that is not one of yours is a 404 and is left alone', async (t) => {
  const spa = await newSpa();
  const alice = await createUser(server);
  const mallory = await createUser(server);
  const alicesBrowser = browser(CHROME_ON_LINUX);
  const mallorysBrowser = browser(FIREFOX_ON_WINDOWS);
  const alicesTokens = await signInToApp(alicesBrowser, alice, spa);
  await signInToApp(mallorysBrowser, mallory, spa);
  const [alicesSession] = await server.runtime.accountSessions.list(alice.id);

  const html = await sessionsPage(mallorysBrowser);
  const csrf = formField(html, 'csrf');
  for (const uid of [alicesSession!.uid, 'no-such-session', 'x'.repeat(200), 'not.a.session']) {
    const { response } = await mallorysBrowser.submit(`${server.issuer}/account/sessions/${uid}/end`, { csrf });
    t.is(response.status, 404, uid);
    const page = await response.text();
    t.regex(page, /was not found/);
    // Ended from another tab meanwhile, say: the page leads back to the account.
    t.regex(page, /<a href="\/account">Back to your account<\/a>/);
    t.false(page.includes(alice.email));
  }
  t.false(html.includes(alicesSession!.uid), 'another person\'s sessions are never shown');
  t.is(await server.runtime.accountSessions.end(mallory.id, alicesSession!.uid), undefined);
  t.is((await server.runtime.accountSessions.list(alice.id)).length, 1);
  t.truthy((await refresh(spa, alicesTokens.refresh_token!)).access_token);
  t.true(await isSignedIn(alicesBrowser, spa.client.client_id));
});

test('every sessions form refuses a POST without its CSRF token (403) and ends nothing', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  const firefox = browser(FIREFOX_ON_WINDOWS);
  const chromeTokens = await signInToApp(chrome, person, spa);
  await signInToApp(firefox, person, spa);
  const html = await sessionsPage(firefox);
  const [chromeUid] = endableUids(html);
  for (const path of [`/account/sessions/${chromeUid}/end`, '/account/sessions/end-all', '/account/sign-out']) {
    for (const fields of [{}, { csrf: 'forged' }] as Array<Record<string, string>>) {
      const { response } = await firefox.submit(`${server.issuer}${path}`, fields);
      t.is(response.status, 403, `${path} ${JSON.stringify(fields)}`);
    }
  }
  t.is((await server.runtime.accountSessions.list(person.id)).length, 2);
  t.truthy((await refresh(spa, chromeTokens.refresh_token!)).access_token);
  t.true(await isSignedIn(firefox, spa.client.client_id));
});

test('the session identifier changes at login: a second login in the same browser gets a new cookie and the old one is dead', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const agent = browser(CHROME_ON_LINUX);
  await signInToApp(agent, person, spa);
  const before = agent.cookie(SESSION_COOKIE);
  const beforeSignature = agent.cookie(`${SESSION_COOKIE}.sig`);
  t.truthy(before);
  t.truthy(beforeSignature, 'the session cookie is signed');
  const [session] = await server.runtime.accountSessions.list(person.id);

  await signInToApp(agent, person, spa, { prompt: 'login' });
  const after = agent.cookie(SESSION_COOKIE);
  t.truthy(after);
  t.not(after, before);
  t.is(await server.runtime.provider.Session.find(before!), undefined, 'the old identifier names no session');
  const sessions = await server.runtime.accountSessions.list(person.id);
  t.deepEqual(sessions.map((listed) => listed.uid), [session!.uid], 'still one session, the same one for the person');

  // Someone who kept the old cookie (both halves, validly signed) is not signed in with it.
  const thief = browser(CHROME_ON_LINUX);
  thief.plantCookie(SESSION_COOKIE, before!);
  thief.plantCookie(`${SESSION_COOKIE}.sig`, beforeSignature!);
  const response = await thief.request(`${server.issuer}/account`);
  t.is(response.status, 302);
  t.is(new URL(response.headers.get('location')!).pathname, '/auth');
});

test('a planted session cookie never becomes the signed-in session (session fixation)', async (t) => {
  const spa = await newSpa();
  const as = await discover(server);
  const attacker = await createUser(server);
  const victim = await createUser(server);

  // A real, validly signed session cookie of the attacker's, planted in the victim's browser; the victim
  // then signs in (the application asks for a fresh login). The engine ends the attacker's session and
  // starts a new one: the cookie the attacker knows leads nowhere.
  const attackersBrowser = browser(CHROME_ON_LINUX);
  await signInToApp(attackersBrowser, attacker, spa);
  const [attackersSession] = await server.runtime.accountSessions.list(attacker.id);
  const planted = { value: attackersBrowser.cookie(SESSION_COOKIE)!, signature: attackersBrowser.cookie(`${SESSION_COOKIE}.sig`)! };
  const victimsBrowser = browser(FIREFOX_ON_WINDOWS);
  victimsBrowser.plantCookie(SESSION_COOKIE, planted.value);
  victimsBrowser.plantCookie(`${SESSION_COOKIE}.sig`, planted.signature);
  const request = await authorizationRequest(as, spa.client.client_id, { prompt: 'login' });
  const callback = await signInOverAnotherSession(victimsBrowser, request.url, victim);
  const code = oauth.validateAuthResponse(as, spa.client, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, spa.client, await oauth.authorizationCodeGrantRequest(
    as, spa.client, spa.auth, code, REDIRECT_URI, request.codeVerifier, insecure,
  ), { expectedNonce: request.nonce });
  t.is(oauth.getValidatedIdTokenClaims(tokens)!.sub, victim.id);
  t.not(victimsBrowser.cookie(SESSION_COOKIE), planted.value, 'the victim got a new session identifier');
  const [victimsSession] = await server.runtime.accountSessions.list(victim.id);
  t.not(victimsSession!.uid, attackersSession!.uid);
  const attackersView = await attackersBrowser.request(`${server.issuer}/account`);
  t.is(attackersView.status, 302, 'the planted cookie does not lead into the victim\'s account');
  t.is(new URL(attackersView.headers.get('location')!).pathname, '/auth');

  // A forged cookie (an identifier the server never issued, a made-up signature) is ignored.
  const forgedBrowser = browser(FIREFOX_ON_WINDOWS);
  forgedBrowser.plantCookie(SESSION_COOKIE, 'forged-session-identifier');
  forgedBrowser.plantCookie(`${SESSION_COOKIE}.sig`, 'forged-signature');
  await signInToApp(forgedBrowser, victim, spa);
  t.not(forgedBrowser.cookie(SESSION_COOKIE), 'forged-session-identifier');
  t.is(await server.runtime.provider.Session.find('forged-session-identifier'), undefined);
  const { url } = await forgedBrowser.follow(`${server.issuer}/account`);
  t.is(url.pathname, '/account');
});

/**
 * Signs in through the pages in a browser that holds someone else's session: after the login form the
 * engine asks the browser (an auto-submitting form) to end that session first, then continues.
 */
async function signInOverAnotherSession(agent: UserAgent, authorizationUrl: URL, person: Person): Promise<URL> {
  let { response, url } = await agent.follow(authorizationUrl);
  for (let step = 0; step < 6; step += 1) {
    if (url.origin !== new URL(server.issuer).origin) return url;
    const page = await response.text();
    if (page.includes('name="password"')) {
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(page, 'csrf'), email: person.email, password: PASSWORD }));
    } else if (page.includes('/session/end/confirm')) {
      ({ response, url } = await agent.submit(formAction(page, /\/session\/end\/confirm/), { xsrf: formField(page, 'xsrf'), logout: formField(page, 'logout') }));
    } else if (page.includes('/confirm"')) {
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(page, 'csrf') }));
    } else {
      throw new Error(`sign-in stopped on ${url.pathname} with ${response.status}`);
    }
  }
  throw new Error('sign-in did not finish');
}

test('an ended session stays ended even if a request of its browser saves it afterwards', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  await signInToApp(chrome, person, spa);
  const [listed] = await server.runtime.accountSessions.list(person.id);
  // What a request of that browser still in flight holds in memory.
  const inFlight = (await server.runtime.provider.Session.findByUid(listed!.uid))!;
  t.truthy(await server.runtime.accountSessions.end(person.id, listed!.uid));
  await inFlight.save(600);
  t.is(await server.runtime.provider.Session.findByUid(listed!.uid), undefined);
  t.false(await isSignedIn(chrome, spa.client.client_id));
  t.deepEqual(await server.runtime.accountSessions.list(person.id), []);
});

test('a session caught between its old and new id (a login rotating it) is neither dropped from the index nor spared by sign out everywhere', async (t) => {
  const person = await createUser(server);
  const spa = await newSpa();
  const chrome = browser(CHROME_ON_LINUX);
  await signInToApp(chrome, person, spa);
  const [listed] = await server.runtime.accountSessions.list(person.id);
  const { provider, store, accountSessions } = server.runtime;
  // The engine rotating the id: the old record is gone, the new one not written yet.
  const rotating = (await provider.Session.findByUid(listed!.uid))!;
  await rotating.destroy();
  t.deepEqual(await accountSessions.list(person.id), []);
  t.true((await store.indexMembers(`account:${person.id}:sessions`)).includes(listed!.uid), 'still indexed: it is about to be saved again');

  await accountSessions.endAll(person.id);
  rotating.resetIdentifier();
  await rotating.save(600);
  t.is(await provider.Session.findByUid(listed!.uid), undefined, 'the rotated session was not saved back');
  t.false(await isSignedIn(chrome, spa.client.client_id));
});

/** The heading and lead paragraph of a page, on one line. */
const headingOf = (html: string) => (/<h1[\s\S]*?<\/h1>\s*<p[^>]*>[\s\S]*?<\/p>/.exec(html)?.[0] ?? '').replace(/<[^>]+>/g, '').replace(/\s+/g, ' ');

test('a sign-out that names no application offers only "Sign out", which signs out truly: nothing to sign out of alone', async (t) => {
  const { as, client, user, agent, tokens } = await signInToNewSpa(server);
  const confirmation = await (await agent.follow(`${server.issuer}/session/end`)).response.text();
  const buttons = [...confirmation.matchAll(/<button[^>]*>([^<]*)<\/button>/g)].map((match) => match[1]);
  t.deepEqual(buttons, ['Sign out'], 'no "Only sign out of this application": the engine would end nothing');
  const { response } = await agent.submit(formAction(confirmation, /session\/end\/confirm/), { xsrf: formField(confirmation, 'xsrf'), logout: 'yes' });
  t.regex(headingOf(await response.text()), /You have been signed out of Gatehouse on this device/);
  t.deepEqual(await server.runtime.accountSessions.list(user.id), [], 'and so it is');
  const refreshed = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refreshed), { message: /server responded with an error/ });
  // Named by client_id, the application can be signed out of alone.
  const named = await signInToNewSpa(server);
  const fromApplication = await (await named.agent.follow(`${server.issuer}/session/end?client_id=${named.client.client_id}`)).response.text();
  t.regex(fromApplication, /Only sign out of /);
});

test('a sign-out confirmed again after it ended (a second tab, Back) is answered in a sign-out\'s words, not as a sign-in gone wrong', async (t) => {
  const { client, agent } = await signInToNewSpa(server);
  const end = new URL('/session/end', server.issuer);
  end.search = new URLSearchParams({ client_id: client.client_id, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI, state: 's1' }).toString();
  const confirmation = await (await agent.follow(end)).response.text();
  const fields = { xsrf: formField(confirmation, 'xsrf'), logout: 'yes' };
  const first = await agent.submit(formAction(confirmation, /session\/end\/confirm/), fields);
  t.is(first.url.origin, new URL(POST_LOGOUT_REDIRECT_URI).origin, 'the first goes back to the application');
  const again = await agent.submit(formAction(confirmation, /session\/end\/confirm/), fields);
  t.is(again.response.status, 400);
  const page = await again.response.text();
  t.regex(page, /<title>This sign-out request is not valid/);
  t.regex(page, /This sign-out page was already used, or has expired: you may be signed out already/);
  t.notRegex(page, /sign-in/i);
});

test('a session ends SESSION_TTL after sign-in, however often the applications use it: silent sign-ins do not renew it, and a single-page app\'s refresh token ends with it', async (t) => {
  t.timeout(60_000);
  const short = await startTestServer({ SESSION_TTL: '6' });
  t.teardown(() => short.close());
  const { as, client, user, agent, tokens } = await signInToNewSpa(short);
  const signedIn = Date.now();
  const silentSignIn = async () => {
    const { url } = await agent.follow((await authorizationRequest(as, client.client_id, { prompt: 'none' })).url);
    return url.searchParams.get('code') ? 'code' : url.searchParams.get('error');
  };
  // A real wait (the engine keeps time by the system clock): halfway, a silent sign-in saves the session again.
  await sleep(3000);
  t.is(await silentSignIn(), 'code');
  // Past the lifetime counted from sign-in (its whole seconds, and one more for rounding), not from that use.
  await sleep(Math.max(0, signedIn + 7_200 - Date.now()));
  t.is(await silentSignIn(), 'login_required');
  t.deepEqual(await short.runtime.accountSessions.list(user.id), []);
  const refreshed = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refreshed), { message: /server responded with an error/ });
});
