// The example SPA in a real Chromium against a real Gatehouse: sign in through the login and consent pages,
// call the example API, refresh (rotation), sign out through the logout page, and then the old access
// tokens are refused. Also: no console errors, no failed requests, and the pages fit a phone's width.
import * as oauth from 'oauth4webapi';
import type { Page } from 'playwright-core';
import { PHONE, browserTest, fitsPhone, startExampleApps, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, createUser, discover, insecure } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
}

browserTest('a person signs in to the example SPA, calls its API, refreshes and signs out', { timeoutMs: 180_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const as = await discover(server);

  const { example, spaOrigin, spaClient } = await startExampleApps(t, server);
  const user = await createUser(server);
  const apiUrl = `${example.apiOrigin}/api/hello`;

  const context = await browser.newContext({ viewport: PHONE });
  const page = await context.newPage();
  const problems = watchForProblems(page);
  // When a step times out, what the page saw is usually the reason: say it.
  t.teardown(() => {
    if (problems.consoleErrors.length || problems.failedRequests.length) t.log('seen in the browser:', { url: page.url(), ...problems });
  });

  // Signed out at first.
  await page.goto(spaOrigin);
  await page.getByRole('heading', { name: 'You are not signed in' }).waitFor();

  // Sign in: the SPA sends the browser to Gatehouse's login page.
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.origin === server.issuer && url.pathname.startsWith('/interaction/'));
  await page.getByRole('heading', { name: 'Sign in', exact: true }).waitFor();
  t.regex(await page.locator('main').innerText(), /to continue to Example SPA/);
  await fitsPhone(t, page, 'login page');
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();

  // Consent names the app and says in words what it may do.
  await page.getByRole('heading', { name: 'Allow Example SPA access?' }).waitFor();
  t.true(page.url().startsWith(`${server.issuer}/interaction/`));
  t.deepEqual(await page.getByRole('listitem').allInnerTexts(), [
    'Know who you are', 'See your name', 'See your email address and whether it is verified',
  ]);
  t.regex(await page.locator('main').innerText(), new RegExp(`Signed in as ${escapeRegExp(user.email)}`));
  await fitsPhone(t, page, 'consent page');
  const [codeExchange] = await Promise.all([
    page.waitForResponse((response) => response.url() === as.token_endpoint && response.request().method() === 'POST'),
    page.getByRole('button', { name: 'Allow' }).click(),
  ]);
  t.is(codeExchange.status(), 200);
  const first = await codeExchange.json() as TokenResponse;

  // Back in the SPA, signed in, with the person's name and email from userinfo.
  await page.getByRole('heading', { name: 'Signed in', exact: true }).waitFor();
  await page.getByRole('status').filter({ hasText: 'You are signed in.' }).waitFor();
  t.is(new URL(page.url()).href, `${spaOrigin}/`, 'the code is gone from the address bar');
  t.is(await page.locator('#user-email').innerText(), user.email);
  t.is(await page.locator('#user-name').innerText(), 'Ada Lovelace');
  t.is(await page.locator('#user-sub').innerText(), user.id);
  const fingerprintBefore = await page.locator('#refresh-token-info').innerText();
  t.regex(fingerprintBefore, /^fingerprint [0-9a-f]{8}, rotated 0 times$/);
  await fitsPhone(t, page, 'SPA, signed in');
  t.truthy(first.refresh_token);
  t.deepEqual(await sessionStorageOf(page), {}, 'the verifier, state and nonce are gone once used');

  // Call the API with the access token (a cross-origin call with a CORS preflight).
  const firstCall = await callApi(page, apiUrl);
  t.is(firstCall.authorization, `Bearer ${first.access_token}`);
  t.deepEqual(firstCall.body, { message: 'Hello from the example API!', sub: user.id, scope: 'openid profile email' });

  // Refresh: the refresh token rotates, and the SPA keeps the new one.
  const [refreshResponse] = await Promise.all([
    page.waitForResponse((response) => response.url() === as.token_endpoint && response.request().method() === 'POST'),
    page.getByRole('button', { name: 'Refresh' }).click(),
  ]);
  t.is(refreshResponse.status(), 200);
  const second = await refreshResponse.json() as TokenResponse;
  await page.getByRole('status').filter({ hasText: 'The tokens were refreshed.' }).waitFor();
  t.truthy(second.refresh_token);
  t.not(second.refresh_token, first.refresh_token, 'the refresh token rotated');
  t.not(second.access_token, first.access_token);
  const fingerprintAfter = await page.locator('#refresh-token-info').innerText();
  t.regex(fingerprintAfter, /^fingerprint [0-9a-f]{8}, rotated 1 time$/);
  t.not(fingerprintAfter.slice(0, 20), fingerprintBefore.slice(0, 20), 'the page shows the new refresh token');
  // Refresh tokens are introspected by their own client: resource servers are never told about them.
  const spa: oauth.Client = { client_id: spaClient.client_id, token_endpoint_auth_method: 'none' };
  const introspect = async (token: string) => oauth.processIntrospectionResponse(as, spa, await oauth.introspectionRequest(
    as, spa, oauth.None(), token, insecure,
  ));
  t.false((await introspect(first.refresh_token!)).active, 'the used refresh token is spent');
  t.true((await introspect(second.refresh_token!)).active);

  // The API answers to the new access token.
  const secondCall = await callApi(page, apiUrl);
  t.is(secondCall.authorization, `Bearer ${second.access_token}`);
  t.is((secondCall.body as { sub?: string }).sub, user.id);

  // Sign out: Gatehouse asks for confirmation, ends the session and sends the browser back.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign out of Example SPA?' }).waitFor();
  t.is(new URL(page.url()).origin, server.issuer);
  await fitsPhone(t, page, 'logout page');
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.waitForURL((url) => url.origin === spaOrigin);
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  t.is(page.url(), `${spaOrigin}/`);
  t.true(await page.getByRole('heading', { name: 'Signed in', exact: true }).isHidden());

  // The session ended, and with it the grant: every token it gave out is refused from now on.
  for (const [which, token] of [['first', first.access_token], ['refreshed', second.access_token]] as const) {
    const response = await fetch(apiUrl, { headers: { Authorization: `Bearer ${token}` } });
    t.is(response.status, 401, `the API refuses the ${which} access token after sign-out`);
    t.regex(response.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/);
  }
  t.false((await introspect(second.refresh_token!)).active, 'the refresh token died with the session');

  // And Gatehouse asks for the password again.
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByLabel('Password').waitFor();
  t.true(page.url().startsWith(`${server.issuer}/interaction/`));

  t.deepEqual(problems.consoleErrors, [], 'no errors in the browser console');
  t.deepEqual(problems.failedRequests, [], 'no failed requests');
  await context.close();
});

/** Clicks "Call API" and returns what the SPA sent and what it shows. */
async function callApi(page: Page, apiUrl: string): Promise<{ authorization: string | undefined; body: unknown }> {
  const [request] = await Promise.all([
    page.waitForRequest((request) => request.url() === apiUrl && request.method() === 'GET'),
    page.getByRole('button', { name: 'Call API' }).click(),
  ]);
  await page.getByRole('status').filter({ hasText: 'The API answered.' }).waitFor();
  const shown = await page.getByRole('region', { name: 'API response' }).locator('pre').innerText();
  return { authorization: (await request.allHeaders()).authorization, body: JSON.parse(shown) };
}

async function sessionStorageOf(page: Page): Promise<Record<string, string>> {
  return page.evaluate(() => ({ ...sessionStorage }));
}

function escapeRegExp(text: string): string {
  return text.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
