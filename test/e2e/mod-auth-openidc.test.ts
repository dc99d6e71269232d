// Apache's mod_auth_openidc, an OpenID-certified relying party, configured with the README's block as written,
// in front of a page, with Chromium as the person's browser: the protected page sends it to Gatehouse, and after
// the login and consent pages it is served. Registered with the module's back-channel logout endpoint (its
// redirect URI with ?logout=backchannel), its session ends when the person's Gatehouse session does: after sign
// out everywhere the same page sends the browser to Gatehouse again. Opt-in where Apache or the module is not
// installed (.ci/run installs both from Debian's packages, so CI always runs it).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { browserTest, watchForProblems } from '../helpers/browser.ts';
import { apacheUnavailable, findFreePort, startApache } from '../helpers/apache.ts';
import { PASSWORD, createUser } from '../helpers/oauth.ts';
import { about, auditEvents } from '../helpers/runtime.ts';
import { PROJECT_ROOT } from '../helpers/process.ts';
import { startTestServer } from '../helpers/server.ts';

/** The README's mod_auth_openidc block. */
function readmeBlock(): string {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const block = /```apache\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('the README has no apache block');
  return block;
}

const unavailable = apacheUnavailable();
if (unavailable && !process.env.CI) {
  test.skip(`mod_auth_openidc signs a person in with the README's configuration, and out by back-channel logout [skipped: ${unavailable}]`, () => {});
} else {
  browserTest('mod_auth_openidc signs a person in with the README\'s configuration, PKCE S256 included, and its session ends when the person\'s Gatehouse session does', { timeoutMs: 120_000 }, async (t, browser) => {
    t.is(unavailable, undefined, 'CI installs apache2-bin and libapache2-mod-auth-openidc');
    const server = await startTestServer();
    t.teardown(() => server.close());
    const port = await findFreePort();
    const origin = `http://127.0.0.1:${port}`;
    const registered = await server.runtime.clients.create({
      name: 'Apache app', type: 'web', redirectUris: [`${origin}/protected/redirect_uri`],
      backchannelLogoutUri: `${origin}/protected/redirect_uri?logout=backchannel`,
    });
    const configuration = readmeBlock()
      .replaceAll('http://localhost:3000', server.issuer).replaceAll('http://localhost:8080', origin)
      .replace('YOUR_CLIENT_ID', registered.client_id).replace('YOUR_CLIENT_SECRET', String(registered.client_secret))
      .replace('A_LONG_RANDOM_PASSPHRASE', 'a-test-passphrase-that-is-long-enough');
    const apache = await startApache(port, configuration);
    t.teardown(() => apache.close());

    const user = await createUser(server);
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = watchForProblems(page);
    await page.goto(`${origin}/protected/hello.txt`);
    t.true(page.url().startsWith(`${server.issuer}/interaction/`), 'sent to Gatehouse to sign in');
    await page.getByLabel('Email').fill(user.email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(`${origin}/protected/hello.txt`);
    t.regex(await page.innerText('body'), /hello from the protected area/);
    if (problems.consoleErrors.length || problems.failedRequests.length) t.log(await apache.errorLog());
    t.deepEqual(problems.consoleErrors, []);
    t.deepEqual(problems.failedRequests, []);

    // Sign out everywhere: Gatehouse posts a logout token to the module, which drops the session it keeps.
    await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
    await server.settled();
    const failed = await auditEvents(server.runtime, 'logout.failed', about(user));
    if (failed.length) t.log(await apache.errorLog());
    t.deepEqual(failed, [], 'the module took the logout token');
    t.like((await auditEvents(server.runtime, 'logout.delivered', about(user)))[0], { clientId: registered.client_id });
    // A new URL: the page just loaded may still be fresh in the browser's cache (a file written seconds ago is
    // heuristically fresh for a moment), and a cached answer would never reach the module.
    await page.goto(`${origin}/protected/hello.txt?after=logout`);
    if (!page.url().startsWith(`${server.issuer}/interaction/`)) t.log(await apache.errorLog());
    t.true(page.url().startsWith(`${server.issuer}/interaction/`), `the module's session ended: sent to Gatehouse to sign in again (landed on ${page.url()})`);
    await context.close();
  });
}
