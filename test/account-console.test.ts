// The account console (/account): reached through the login pages with the built-in client, no consent
// asked, the engine's session is its credential, and signing in elsewhere signs in here.
import test from 'ava';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formField, post } from './helpers/user-agent.ts';
import { PASSWORD, authorizationRequest, createUser, discover, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { signInToAccount } from './helpers/account.ts';

let server: TestServer;
test.before(async () => { server = await startTestServer(); });
test.after.always(async () => { await server?.close(); });

test('a visitor without a session is sent to the login page and, once signed in, lands on the page asked for without a consent step', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  const first = await agent.request(`${server.issuer}/account/sessions`);
  t.is(first.status, 302);
  const authorize = new URL(first.headers.get('location')!);
  t.is(authorize.pathname, '/auth');
  t.is(authorize.searchParams.get('client_id'), 'gatehouse-account-console');
  t.is(authorize.searchParams.get('code_challenge_method'), 'S256');
  t.is(first.headers.get('cache-control'), 'no-store');

  const { response, url } = await signInToAccount(server, new UserAgent(), { email: user.email, password: PASSWORD });
  t.is(response.status, 200);
  t.is(url.pathname, '/account');

  const other = new UserAgent();
  const reached = await signInToAccount(server, other, { email: user.email, password: PASSWORD }, '/account/sessions');
  t.is(reached.url.pathname, '/account/sessions');
});

test('the overview names the person and links every setting', async (t) => {
  const user = await createUser(server);
  const { html } = await signInToAccount(server, new UserAgent(), { email: user.email, password: PASSWORD });
  t.true(html.includes(user.email));
  for (const link of ['/account/email', '/account/password', '/account/two-factor', '/account/sessions']) t.true(html.includes(`href="${link}"`), link);
  t.truthy(formField(html, 'csrf'));
});

test('signing in to an application signs in to the account console too (one session)', async (t) => {
  const { agent, user } = await signInToNewSpa(server);
  const { response, url } = await agent.follow(`${server.issuer}/account`);
  t.is(url.pathname, '/account');
  t.true((await response.text()).includes(user.email));
});

test('a form shown to one person is refused once they signed out and another signed in in the same browser: it does not act on the next person', async (t) => {
  const { client } = await registerSpa(server);
  const as = await discover(server);
  const [alice, bob] = [await createUser(server), await createUser(server)];
  for (const person of [alice, bob]) await signIn(new UserAgent(), (await authorizationRequest(as, client.client_id)).url, { email: person.email, password: PASSWORD });
  const agent = new UserAgent();
  const { html } = await signInToAccount(server, agent, { email: alice.email, password: PASSWORD }, '/account/applications');
  const alicesForm = formField(html, 'csrf');
  t.is((await post(agent, `${server.issuer}/account/sign-out`, { csrf: alicesForm })).status, 200);
  const bobs = await signInToAccount(server, agent, { email: bob.email, password: PASSWORD }, '/account/applications');

  // Alice's page, still open in another tab: "Remove" pressed.
  const stale = await post(agent, `${server.issuer}/account/applications/${client.client_id}/remove`, { csrf: alicesForm });
  t.is(stale.status, 403);
  t.regex(stale.html, /This form has expired/);
  t.regex(stale.html, /<a href="\/account">Back to your account<\/a>/);
  t.is((await server.runtime.consents.list(bob.id)).length, 1, 'Bob\'s access stays');
  // Bob's own page does it.
  const own = await post(agent, `${server.issuer}/account/applications/${client.client_id}/remove`, { csrf: formField(bobs.html, 'csrf') });
  t.is(own.status, 303);
  t.is((await server.runtime.consents.list(bob.id)).length, 0);
  t.is((await server.runtime.consents.list(alice.id)).length, 1);
});

test('a callback that did not start here is refused with a page, not followed', async (t) => {
  const agent = new UserAgent();
  const response = await agent.request(`${server.issuer}/account/callback?code=x&state=forged`);
  t.is(response.status, 400);
  t.regex(await response.text(), /did not start here/);
});

test('a disabled account is sent back to sign in', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await signInToAccount(server, agent, { email: user.email, password: PASSWORD });
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { disabled: true } });
  const response = await agent.request(`${server.issuer}/account`);
  t.is(response.status, 302);
  t.is(new URL(response.headers.get('location')!).pathname, '/auth');
  const post = await agent.request(`${server.issuer}/account/sign-out`, { method: 'POST' });
  t.is(post.status, 403);
});

test('a password-only session for an account that now must use a second factor is sent through the step-up first', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  const { url } = await signInToAccount(server, agent, { email: user.email, password: PASSWORD });
  t.is(url.pathname, '/account');
  // Granting a role that requires the second factor (SECOND_FACTOR_REQUIRED_ROLES defaults to admin).
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { roles: ['admin'] } });
  const response = await agent.request(`${server.issuer}/account`);
  t.is(response.status, 302);
  t.is(new URL(response.headers.get('location')!).pathname, '/auth');
  // Setting a second factor up needs the password of this sign-in, not just the session: the login page first.
  const stepUp = await agent.follow(new URL(response.headers.get('location')!));
  const loginPage = await stepUp.response.text();
  t.regex(stepUp.url.pathname, /^\/interaction\/[\w-]+$/);
  t.is(formField(loginPage, 'email'), user.email);
  const enrol = await agent.submit(new URL(`${stepUp.url.pathname}/login`, stepUp.url), { csrf: formField(loginPage, 'csrf'), email: user.email, password: PASSWORD });
  t.regex(enrol.url.pathname, /^\/interaction\/[\w-]+\/second-factor$/);
  t.regex(await enrol.response.text(), /Set up two-factor authentication/);
  const post = await agent.request(`${server.issuer}/account/sign-out`, { method: 'POST' });
  t.is(post.status, 403, 'and no change is accepted meanwhile');
});
