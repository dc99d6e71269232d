// Front-channel logout (OpenID Connect Front-Channel Logout 1.0) in a real Chromium: a web app that registered a
// front-channel logout URI is loaded in a hidden frame, with iss and the session's sid, by the browser that signs
// out — through the app (RP-initiated logout, before the browser goes back to the app) and from the account
// console — and no Content-Security-Policy of Gatehouse's stops the frame.
import type { IncomingMessage, ServerResponse } from 'node:http';
import * as client from 'openid-client';
import type { Page } from 'playwright-core';
import { browserTest, startLoopbackApp, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, createUser } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

browserTest('the browser signing out loads the app\'s front-channel logout URI with iss and sid, through the app and from the account console', { timeoutMs: 120_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { origin, app } = await startLoopbackApp(t);
  /** Every request the app saw, in order: its path and query. */
  const seen: URL[] = [];
  app.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', origin);
    seen.push(url);
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><title>App</title><p>${url.pathname}</p>`);
  });
  const registered = await server.runtime.clients.create({
    name: 'Front-channel app', type: 'web', redirectUris: [`${origin}/callback`], postLogoutRedirectUris: [`${origin}/`],
    frontchannelLogoutUri: `${origin}/frontchannel-logout`,
  });
  const secret = String(registered.client_secret);
  const config = await client.discovery(new URL(server.issuer), registered.client_id, secret, client.ClientSecretBasic(secret), { execute: [client.allowInsecureRequests] });
  const user = await createUser(server);
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchForProblems(page);
  const frontChannelCalls = () => seen.filter((url) => url.pathname === '/frontchannel-logout');

  /** Signs in through the app in the browser; the app's server exchanges the code. The ID token's sid. */
  async function signIn(p: Page, consent: boolean): Promise<{ idToken: string; sid: string }> {
    const codeVerifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    await p.goto(client.buildAuthorizationUrl(config, {
      redirect_uri: `${origin}/callback`, scope: 'openid email', state,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
    }).href);
    await p.getByLabel('Email').fill(user.email);
    await p.getByLabel('Password').fill(PASSWORD);
    await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    if (consent) await p.getByRole('button', { name: 'Allow' }).click();
    await p.waitForURL((url) => url.origin === origin && url.pathname === '/callback');
    const tokens = await client.authorizationCodeGrant(config, new URL(p.url()), { pkceCodeVerifier: codeVerifier, expectedState: state });
    return { idToken: tokens.id_token!, sid: String(tokens.claims()?.sid) };
  }

  // Through the app: "Sign out", a page that loads the frame, then back at the app with its state.
  const first = await signIn(page, true);
  await page.goto(client.buildEndSessionUrl(config, { id_token_hint: first.idToken, post_logout_redirect_uri: `${origin}/`, state: 'back' }).href);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.waitForURL((url) => url.origin === origin && url.pathname === '/');
  t.is(new URL(page.url()).searchParams.get('state'), 'back');
  t.is(frontChannelCalls().length, 1);
  const [call] = frontChannelCalls();
  t.is(call!.searchParams.get('iss'), server.issuer);
  t.is(call!.searchParams.get('sid'), first.sid);
  const cameBack = seen.findIndex((url) => url.pathname === '/' && url.searchParams.get('state') === 'back');
  t.true(seen.indexOf(call!) < cameBack, 'the frame was loaded before the browser went back to the app');

  // From the account console: its "Sign out" page loads the frame of the new session.
  const second = await signIn(page, false);
  t.not(second.sid, first.sid);
  await page.goto(`${server.issuer}/account`);
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.getByRole('heading', { name: 'You are signed out' }).waitFor();
  await page.waitForLoadState('load');
  t.is(frontChannelCalls().length, 2);
  t.is(frontChannelCalls()[1]!.searchParams.get('sid'), second.sid);

  // Nothing was refused by a Content-Security-Policy (Chromium reports each refusal as a console error).
  t.deepEqual(problems.consoleErrors, []);
  t.deepEqual(problems.failedRequests, []);
  await context.close();
});
