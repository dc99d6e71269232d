// The README's single-page-app snippets, as written, in Chromium against a Gatehouse on http: the first sends
// the browser to sign in, the second (on the redirect URI's page) exchanges the code and refreshes. Only the
// issuer, the client id and the app's origin are put in for the README's placeholders.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { browserTest, startLoopbackApp, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, createUser } from '../helpers/oauth.ts';
import { PROJECT_ROOT } from '../helpers/process.ts';
import { startTestServer } from '../helpers/server.ts';

const LIBRARY = readFileSync(createRequire(import.meta.url).resolve('oauth4webapi'));

/** The js code blocks of the README's section on single-page apps, in order. */
function snippets(): string[] {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## How a single-page app signs in'), readme.indexOf('\n## ', readme.indexOf('## How a single-page app signs in') + 1));
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]!).filter((code) => code.includes('oauth4webapi'));
}

browserTest('the README\'s SPA snippets run as written against a Gatehouse on http: sign in, exchange the code, refresh', { timeoutMs: 120_000 }, async (t, browser) => {
  const [signIn, callback] = snippets();
  t.truthy(signIn && callback, 'two oauth4webapi snippets');
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { origin, app } = await startLoopbackApp(t);
  const registered = await server.runtime.clients.create({ name: 'README SPA', type: 'spa', redirectUris: [`${origin}/callback`] });
  const fill = (code: string) => code.replaceAll('http://localhost:3000', server.issuer).replaceAll('YOUR_CLIENT_ID', registered.client_id).replaceAll('http://localhost:5173', origin);
  const page = (code: string) => `<!doctype html><html><head><title>running</title>
<script type="importmap">{"imports":{"oauth4webapi":"/oauth4webapi.js"}}</script></head><body>
<script type="module">
window.addEventListener('error', (event) => { document.title = 'failed: ' + event.message; });
window.addEventListener('unhandledrejection', (event) => { document.title = 'failed: ' + (event.reason?.code ?? event.reason?.message); });
${fill(code)}
if (typeof next !== 'undefined') { window.result = { first: tokens.access_token, refreshed: next.access_token, rotated: next.refresh_token !== tokens.refresh_token }; document.title = 'done'; }
</script></body></html>`;
  app.on('request', (request, response) => {
    const { pathname } = new URL(request.url ?? '/', origin);
    if (pathname === '/oauth4webapi.js') response.writeHead(200, { 'content-type': 'text/javascript' }).end(LIBRARY);
    else if (pathname === '/') response.writeHead(200, { 'content-type': 'text/html' }).end(page(signIn!));
    else if (pathname === '/callback') response.writeHead(200, { 'content-type': 'text/html' }).end(page(callback!));
    else response.writeHead(204).end();
  });

  const user = await createUser(server);
  const context = await browser.newContext();
  const tab = await context.newPage();
  const problems = watchForProblems(tab);
  await tab.goto(origin);
  await tab.getByLabel('Email').fill(user.email);
  await tab.getByLabel('Password').fill(PASSWORD);
  await tab.getByRole('button', { name: 'Sign in', exact: true }).click();
  await tab.getByRole('button', { name: 'Allow' }).click();
  await tab.waitForFunction(() => document.title === 'done' || document.title.startsWith('failed'));
  t.is(await tab.title(), 'done');
  const result = await tab.evaluate(() => (window as unknown as { result: { first: string; refreshed: string; rotated: boolean } }).result);
  t.truthy(result.first);
  t.truthy(result.refreshed);
  t.not(result.refreshed, result.first);
  t.true(result.rotated, 'the refresh token rotated');
  t.deepEqual(problems.consoleErrors, []);
  t.deepEqual(problems.failedRequests, []);
  await context.close();
});
