// oidc-client-ts, the most used SPA library, in a real Chromium with nothing configured beyond its usual
// settings: signinRedirect through the login and consent pages, signinSilent with the refresh token,
// revokeTokens, and signoutRedirect with revokeTokensOnSignout — each step checked from the server's side too.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as oauth from 'oauth4webapi';
import { browserTest, startLoopbackApp, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, createUser, discover, insecure } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

// The package's browser build (a script defining `oidc`), which its exports do not name: found beside its entry point.
const LIBRARY = readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('oidc-client-ts')), '..', 'browser', 'oidc-client-ts.min.js'));

/** The app: one page that is also the callback, with the library's UserManager as `window.manager`. */
function appPage(settings: Record<string, unknown>): string {
  return `<!doctype html><html><head><title>loading</title><script src="/oidc-client-ts.js"></script></head><body><script>
window.manager = new oidc.UserManager(${JSON.stringify(settings)});
(async () => {
  const here = new URL(location.href);
  if (here.pathname === '/callback') { await manager.signinRedirectCallback(); history.replaceState(null, '', '/'); document.title = 'signed in'; }
  else if (here.searchParams.has('state')) { const answer = await manager.signoutRedirectCallback(); document.title = 'signed out: ' + answer.userState; }
  else document.title = 'ready';
})().catch((error) => { document.title = 'failed: ' + error.message; });
</script></body></html>`;
}

browserTest('oidc-client-ts signs in, renews with its refresh token, revokes its tokens and signs out, unconfigured', { timeoutMs: 180_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { origin, app } = await startLoopbackApp(t);
  const registered = await server.runtime.clients.create({ name: 'Library SPA', type: 'spa', redirectUris: [`${origin}/callback`], postLogoutRedirectUris: [`${origin}/`] });
  const page = appPage({
    authority: server.issuer, client_id: registered.client_id, redirect_uri: `${origin}/callback`, post_logout_redirect_uri: `${origin}/`,
    scope: 'openid profile email', revokeTokensOnSignout: true, automaticSilentRenew: false,
  });
  app.on('request', (request, response) => {
    const { pathname } = new URL(request.url ?? '/', origin);
    if (pathname === '/oidc-client-ts.js') response.writeHead(200, { 'content-type': 'text/javascript' }).end(LIBRARY);
    else if (pathname === '/' || pathname === '/callback') response.writeHead(200, { 'content-type': 'text/html' }).end(page);
    else response.writeHead(204).end();
  });

  const as = await discover(server);
  const spa: oauth.Client = { client_id: registered.client_id, token_endpoint_auth_method: 'none' };
  const active = async (token: string) => (await oauth.processIntrospectionResponse(as, spa, await oauth.introspectionRequest(as, spa, oauth.None(), token, insecure))).active;
  const user = await createUser(server);
  const context = await browser.newContext();
  const tab = await context.newPage();
  const problems = watchForProblems(tab);
  t.teardown(() => {
    if (problems.consoleErrors.length || problems.failedRequests.length) t.log('seen in the browser:', { url: tab.url(), ...problems });
  });
  const title = (expected: string) => tab.waitForFunction((wanted) => document.title === wanted || document.title.startsWith('failed'), expected)
    .then(async () => t.is(await tab.title(), expected));
  const tokens = () => tab.evaluate(async () => {
    const signedIn = await (window as unknown as { manager: { getUser(): Promise<{ access_token: string; refresh_token?: string; profile: { sub: string } } | null> } }).manager.getUser();
    return { access: signedIn?.access_token ?? '', refresh: signedIn?.refresh_token ?? '', sub: signedIn?.profile.sub ?? '' };
  });
  const call = (method: 'signinRedirect' | 'signinSilent' | 'revokeTokens') => tab.evaluate(async (name) => {
    await (window as unknown as { manager: Record<string, () => Promise<unknown>> }).manager[name]!();
  }, method);

  // signinRedirect: Gatehouse's login and consent pages, back to the app's callback.
  await tab.goto(origin);
  await title('ready');
  void call('signinRedirect').catch(() => undefined); // the page navigates away
  await tab.getByLabel('Email').fill(user.email);
  await tab.getByLabel('Password').fill(PASSWORD);
  await tab.getByRole('button', { name: 'Sign in', exact: true }).click();
  await tab.getByRole('button', { name: 'Allow' }).click();
  await title('signed in');
  const first = await tokens();
  t.is(first.sub, user.id);
  t.truthy(first.refresh, 'an SPA gets a refresh token');

  // signinSilent: with a refresh token the library renews at the token endpoint (CORS), and it rotates.
  await call('signinSilent');
  const renewed = await tokens();
  t.not(renewed.access, first.access);
  t.not(renewed.refresh, first.refresh);
  t.false(await active(first.refresh));
  t.true(await active(renewed.access));

  // revokeTokens: the library accepts the revocation answer (no content type), and the tokens are dead.
  await call('revokeTokens');
  t.false(await active(renewed.access));
  t.false(await active(renewed.refresh));

  // Signed in again (the Gatehouse session stays, consent is remembered: no page), then signoutRedirect.
  void call('signinRedirect').catch(() => undefined);
  await title('signed in');
  const last = await tokens();
  t.true(await active(last.access));
  // With state (the library sends one only with data to carry), which the post-logout callback then checks.
  void tab.evaluate(() => (window as unknown as { manager: { signoutRedirect(args: { state: string }): Promise<void> } }).manager.signoutRedirect({ state: 'bye' })).catch(() => undefined);
  await tab.getByRole('button', { name: 'Sign out', exact: true }).click();
  await title('signed out: bye');
  t.is(new URL(tab.url()).origin, origin);
  t.false(await active(last.access), 'revoked on sign-out, and the session ended');
  t.false(await active(last.refresh));

  t.deepEqual(problems.consoleErrors, []);
  t.deepEqual(problems.failedRequests, []);
  await context.close();
});
