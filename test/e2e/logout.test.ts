// RP-initiated logout in a real Chromium, the way the example SPA (and openid-client, mod_auth_openidc) asks for it:
// it comes back to the app's post_logout_redirect_uri with its state whether or not the person still has a
// Gatehouse session, with id_token_hint or only client_id; each button of the confirmation page does what it
// says; and no page on the way is stopped by Gatehouse's own Content-Security-Policy.
import type { Page } from 'playwright-core';
import { browserTest, startExampleApps, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, createUser } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

browserTest('logout comes back to the app with its state, with or without a Gatehouse session, and "only this app" keeps the Gatehouse session', { timeoutMs: 180_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { spaOrigin, spaClient } = await startExampleApps(t, server);
  const user = await createUser(server);
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchForProblems(page);
  t.teardown(() => {
    if (problems.consoleErrors.length || problems.failedRequests.length) t.log('seen in the browser:', { url: page.url(), ...problems });
  });
  const endSession = new URL('/session/end', server.issuer);

  /** Signs in through the SPA: the password when Gatehouse asks it, and consent the first time (it is remembered). */
  async function signInThroughSpa(p: Page, consent: boolean): Promise<void> {
    await p.goto(spaOrigin);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.waitForURL((url) => url.origin === server.issuer);
    if (await p.getByLabel('Password').isVisible()) {
      await p.getByLabel('Email').fill(user.email);
      await p.getByLabel('Password').fill(PASSWORD);
      await p.getByRole('button', { name: 'Sign in', exact: true }).click();
    }
    if (consent) await p.getByRole('button', { name: 'Allow' }).click();
    await p.getByRole('heading', { name: 'Signed in', exact: true }).waitFor();
  }

  // With the session: the confirmation page, "Sign out", and back at the app, which checks its state.
  await signInThroughSpa(page, true);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign out of Example SPA?' }).waitFor();
  await page.getByRole('button', { name: 'Sign out', exact: true }).click();
  await page.waitForURL((url) => url.origin === spaOrigin);
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();

  // The session already gone (signed out everywhere from another device): no question to ask, straight back.
  await signInThroughSpa(page, false);
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL((url) => url.origin === spaOrigin);
  await page.getByRole('status').filter({ hasText: 'You are signed out.' }).waitFor();
  t.true(await page.getByRole('button', { name: 'Sign in' }).isVisible());

  // Only client_id, no session, no id_token_hint (as openid-client and mod_auth_openidc may ask): back too, with state.
  endSession.search = new URLSearchParams({ client_id: spaClient.client_id, post_logout_redirect_uri: `${spaOrigin}/`, state: 'came-back' }).toString();
  await page.goto(endSession.href);
  await page.waitForURL((url) => url.origin === spaOrigin);
  t.is(new URL(page.url()).searchParams.get('state'), 'came-back');
  // The app loads its configuration on arrival: let it, before going elsewhere (or that request is aborted).
  await page.getByRole('button', { name: 'Sign in' }).waitFor();

  // "Only sign out of Example SPA": this app's sign-in ends, Gatehouse's session stays, and the page says so.
  await signInThroughSpa(page, false);
  endSession.search = new URLSearchParams({ client_id: spaClient.client_id }).toString();
  await page.goto(endSession.href);
  await page.getByRole('button', { name: 'Only sign out of Example SPA' }).click();
  await page.getByRole('heading', { name: 'You are signed out of Example SPA' }).waitFor();
  t.regex(await page.locator('main').innerText(), /still signed in to Gatehouse/);
  await page.goto(`${server.issuer}/account`);
  await page.getByRole('heading', { name: 'Your account' }).waitFor();
  t.regex(await page.locator('main').innerText(), new RegExp(user.email.replace(/[.+]/g, '\\$&')), 'still signed in: no password asked');

  // Nothing was refused by a Content-Security-Policy (Chromium reports each refusal as a console error).
  t.deepEqual(problems.consoleErrors, []);
  t.deepEqual(problems.failedRequests, []);
  await context.close();
});
