// response_mode=form_post in a real Chromium: after the login and consent pages, the engine's self-submitting
// page posts the code to the app's redirect URI on another origin. Its script and its form are allowed by the
// page's Content-Security-Policy (any refusal is a console error, and fails the test).
import { browserTest, startLoopbackApp, watchForProblems } from '../helpers/browser.ts';
import { PASSWORD, authorizationRequest, createUser, discover } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

browserTest('response_mode=form_post: the engine\'s page posts the code to the app, unblocked by its CSP', { timeoutMs: 120_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const received: URLSearchParams[] = [];
  const { origin, app } = await startLoopbackApp(t);
  app.on('request', (request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    request.on('end', () => {
      if (request.method === 'POST' && request.url === '/callback') received.push(new URLSearchParams(body));
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>received</title><p>Received.</p>');
    });
  });
  const registered = await server.runtime.clients.create({ name: 'Form post app', type: 'web', redirectUris: [`${origin}/callback`] });
  const request = await authorizationRequest(await discover(server), registered.client_id, { response_mode: 'form_post', redirect_uri: `${origin}/callback` });
  const user = await createUser(server);

  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchForProblems(page);
  await page.goto(request.url.href);
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL(`${origin}/callback`);
  t.is(await page.title(), 'received');
  t.is(received.length, 1);
  t.truthy(received[0]!.get('code'));
  t.is(received[0]!.get('state'), request.state);
  t.is(received[0]!.get('iss'), server.issuer);
  t.deepEqual(problems.consoleErrors, []);
  t.deepEqual(problems.failedRequests, []);
  await context.close();
});
