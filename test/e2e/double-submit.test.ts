// A person clicks twice on a slow network: the page's form is sent once (views/assets/gatehouse.js), so the page
// shown is the first answer, not a second one saying that the first already did it.
import type { Page, Request } from 'playwright-core';
import { browserTest, startLoopbackApp } from '../helpers/browser.ts';
import { PASSWORD, authorizationRequest, createUser, discover } from '../helpers/oauth.ts';
import { startTestServer } from '../helpers/server.ts';

/** Presses the form's button twice, 0.4 s apart, while each answer takes 1.5 s to come back; the POSTs sent. */
async function doubleClick(page: Page, button: string): Promise<string[]> {
  const posts: string[] = [];
  const sent = (request: Request) => { if (request.method() === 'POST') posts.push(new URL(request.url()).pathname); };
  page.on('request', sent);
  await page.route('**/*', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const response = await route.fetch({ maxRedirects: 0 });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await route.fulfill({ response }).catch(() => {});
  });
  // In the page, as a person's two clicks land on the same, still shown button.
  await page.evaluate((name) => {
    const target = [...document.querySelectorAll('button')].find((candidate) => candidate.textContent?.trim() === name)!;
    target.click();
    setTimeout(() => target.click(), 400);
  }, button);
  await page.waitForTimeout(2500);
  await page.unroute('**/*');
  page.off('request', sent);
  return posts;
}

browserTest('a double click on a form sends it once: the sign-in goes on with the first answer', { timeoutMs: 60_000 }, async (t, browser) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { origin, app } = await startLoopbackApp(t);
  app.on('request', (_request, response) => response.end('<h1>Application</h1>'));
  const client = await server.runtime.clients.create({ name: 'Slow network app', type: 'spa', redirectUris: [`${origin}/callback`], firstParty: true });
  const person = await createUser(server);
  const request = await authorizationRequest(await discover(server), client.client_id, { redirect_uri: `${origin}/callback` });

  const page = await (await browser.newContext()).newPage();
  await page.goto(request.url.href);
  await page.getByLabel('Email').fill(person.email);
  await page.getByLabel('Password').fill(PASSWORD);
  const posts = await doubleClick(page, 'Sign in');
  t.is(posts.length, 1, `sent once: ${posts.join(', ')}`);
  t.regex(posts[0]!, /^\/interaction\/[\w-]+\/login$/);
  await page.waitForURL(`${origin}/callback?**`);
  t.truthy(new URL(page.url()).searchParams.get('code'));
});
