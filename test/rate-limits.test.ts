// Brute force and rate limits through the real login page and token endpoint: per account+IP and per
// IP on login, lockout with a growing delay that reveals nothing about which emails exist, a browser that
// proved it is the owner's (trusted device) getting past a lockout someone else set, per client and per IP
// on the token endpoint (read by oauth4webapi), store prefixes, and failing closed.
import test, { type ExecutionContext } from 'ava';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import * as oauth from 'oauth4webapi';
import { generate } from 'otplib';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { authorizationRequest, createUser, discover, insecure, PASSWORD, REDIRECT_URI, registerConfidential, registerSpa, signIn } from './helpers/oauth.ts';
import { UserAgent, formField, isRedirect, page as openPage, post } from './helpers/user-agent.ts';
import { linkIn, startSmtpServer } from './helpers/smtp.ts';
import { ThrowawayRedisServer, deleteKeysWithPrefix, keysWithPrefix } from './helpers/redis.ts';
import { createTestDatabase } from './helpers/database.ts';
import { loadConfig } from '../src/config/index.ts';
import { createLogger } from '../src/logger.ts';
import { openRuntime } from '../src/runtime.ts';
import { createApp } from '../src/app.ts';
import { createLimits, lockSeconds, networkOf } from '../src/limits/index.ts';
import { withSecondFactor } from './helpers/runtime.ts';
import { TRUSTED_DEVICE_SECONDS, accountKey } from '../src/limits/login-guard.ts';
import { DependencyUnavailable } from '../src/errors.ts';

const servers: TestServer[] = [];
test.after.always(async () => {
  await Promise.allSettled(servers.map((server) => server.close()));
});

async function serverWith(environment: Record<string, string>): Promise<TestServer> {
  const server = await startTestServer(environment);
  servers.push(server);
  return server;
}

/** A login page for one sign-in (in a new browser unless given one): the agent and the interaction URL. */
async function loginPage(server: TestServer, agent = new UserAgent()): Promise<{ agent: UserAgent; interaction: URL }> {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const request = await authorizationRequest(as, client.client_id);
  const { url } = await agent.follow(request.url);
  if (!url.pathname.startsWith('/interaction/')) throw new Error(`expected a login page, got ${url}`);
  return { agent, interaction: url };
}

interface Answer {
  status: number;
  retryAfter: string | null;
  body: string;
  setCookies: string[];
}

/** Opens the login form afresh (as a person would after a refusal) and submits it. */
async function attempt(page: { agent: UserAgent; interaction: URL }, email: string, password: string): Promise<Answer> {
  const form = await (await page.agent.request(page.interaction)).text();
  const response = await page.agent.request(new URL(`${page.interaction.pathname}/login`, page.interaction), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(form, 'csrf'), email, password }).toString(),
  });
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.text(), setCookies: response.headers.getSetCookie() };
}

/** A page without what differs between two sign-ins: interaction ids, CSRF tokens, and the email echoed back. */
function withoutIds(body: string, email: string): string {
  return body
    .replace(/\/interaction\/[\w-]+/g, '/interaction/UID')
    .replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value="CSRF"')
    .replaceAll(email, 'EMAIL');
}

const unknownEmail = () => `nobody-${crypto.randomUUID()}@example.com`;

test.serial('login is limited per account and IP: a fourth try is refused with 429, Retry-After and a page saying when', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LIMIT_PER_ACCOUNT_IP: '3/120', LOGIN_LOCKOUT_THRESHOLD: '100' });
  const user = await createUser(server);
  const page = await loginPage(server);
  for (let i = 0; i < 3; i += 1) t.is((await attempt(page, user.email, 'wrong password')).status, 401);
  const refused = await attempt(page, user.email, PASSWORD);
  t.is(refused.status, 429);
  const retryAfter = Number(refused.retryAfter);
  t.true(retryAfter > 60 && retryAfter <= 120, `Retry-After ${refused.retryAfter}`);
  t.regex(refused.body, /Too many attempts/);
  t.regex(refused.body, /try again in 2 minutes/);
  t.true(refused.body.includes(`<a href="${page.interaction.pathname}">Back to sign in</a>`), 'a way back to the sign-in');
  // Another account from the same address is not affected.
  t.is((await attempt(page, unknownEmail(), 'wrong password')).status, 401);
});

test.serial('login is limited per IP across accounts', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LIMIT_PER_IP: '4/60' });
  const page = await loginPage(server);
  for (let i = 0; i < 4; i += 1) t.is((await attempt(page, unknownEmail(), 'wrong password')).status, 401);
  const refused = await attempt(page, unknownEmail(), 'wrong password');
  t.is(refused.status, 429);
  t.truthy(refused.retryAfter);
  t.regex(refused.body, /try again in (\d+ seconds|1 minute)\./);
});

test.serial('per-IP limits count an IPv6 /64 as one client (one home connection holds all of it); an IPv4-mapped address as its IPv4', async (t) => {
  const server = await serverWith({ TRUST_PROXY: 'true', LOGIN_LIMIT_PER_IP: '3/600' });
  const from = (address: string) => loginPage(server, new UserAgent({ headers: { 'x-forwarded-for': address } }));
  const statuses = [];
  for (let i = 1; i <= 4; i++) statuses.push((await attempt(await from(`2001:db8:42:7::${i.toString(16)}`), unknownEmail(), 'wrong password')).status);
  t.deepEqual(statuses, [401, 401, 401, 429], 'four addresses of one /64');
  t.is((await attempt(await from('2001:db8:42:8::1'), unknownEmail(), 'wrong password')).status, 401, 'the next /64 is another client');

  for (let i = 0; i < 3; i++) t.is((await attempt(await from('::ffff:198.51.100.9'), unknownEmail(), 'wrong password')).status, 401);
  t.is((await attempt(await from('198.51.100.9'), unknownEmail(), 'wrong password')).status, 429, 'the same IPv4 client, written either way');
});

test('networkOf: the key a per-IP limit counts by', (t) => {
  t.is(networkOf('198.51.100.7'), '198.51.100.7');
  t.is(networkOf('::ffff:198.51.100.7'), '198.51.100.7');
  t.is(networkOf('2001:db8:42:7::1'), '2001:db8:42:7::/64');
  t.is(networkOf('2001:0db8:0042:0007:abcd:ef01:2345:6789'), '2001:db8:42:7::/64');
  t.is(networkOf('2001:db8::1'), '2001:db8:0:0::/64');
  t.is(networkOf('::1'), '0:0:0:0::/64');
  t.is(networkOf('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.is(networkOf('64:ff9b::198.51.100.7'), '64:ff9b:0:0::/64');
});

test.serial('repeated failures lock the account for a growing delay; the right password is refused while locked; success resets', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '2', LOGIN_LOCKOUT_MAX_SECONDS: '60' });
  const user = await createUser(server);
  const page = await loginPage(server);

  t.is((await attempt(page, user.email, 'wrong password')).status, 401);
  const firstLock = await attempt(page, user.email, 'wrong password');
  t.is(firstLock.status, 429);
  t.is(firstLock.retryAfter, '2');
  t.is((await attempt(page, user.email, PASSWORD)).status, 429, 'the right password is refused while locked');

  // Real waits, each just past a lock's end: locks are rate-limiter-flexible keys that expire by Redis's TTL
  // (or this process's timers), which take no Clock. Two seconds, not one, leave the checks made while a
  // lock holds (a page and a post) their time on a loaded machine.
  await sleep(2100);
  t.is((await attempt(page, user.email, 'wrong password')).status, 401);
  const secondLock = await attempt(page, user.email, 'wrong password');
  t.is(secondLock.status, 429);
  t.is(secondLock.retryAfter, '4', 'the second lockout lasts twice as long');
  t.regex(secondLock.body, /try again in 4 seconds/);
  await sleep(2100);
  t.is((await attempt(page, user.email, PASSWORD)).status, 429, 'still locked after the first delay');

  await sleep(2100);
  const success = await attempt(page, user.email, PASSWORD);
  t.true(isRedirect(success.status), `status ${success.status}`);

  // The success forgot the history: the next lockout is the short one again.
  const again = await loginPage(server);
  t.is((await attempt(again, user.email, 'wrong password')).status, 401);
  t.is((await attempt(again, user.email, 'wrong password')).retryAfter, '2');
});

test.serial('an empty password or code is a slip, not a guess: the page asks for the field, and no number of them locks the account', async (t) => {
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2' });
  const user = await createUser(server);
  const page = await loginPage(server);
  for (let tries = 0; tries < 4; tries++) {
    const empty = await attempt(page, user.email, '');
    t.is(empty.status, 400);
    t.regex(empty.body, /Enter your password\./);
    t.regex(empty.body, /id="password"[^>]*autofocus[^>]*aria-invalid="true"/);
    t.notRegex(empty.body, /id="email"[^>]*aria-invalid/);
  }
  t.regex((await attempt(page, '  ', PASSWORD)).body, /Enter your email address\./);
  t.is(await server.runtime.database.prisma.auditEvent.count({ where: { action: 'login.failed', subjectEmail: user.email } }), 0, 'nothing to audit');

  const { secret } = await withSecondFactor(server.runtime, user);
  const signingIn = await loginPage(server);
  const codePage = await attempt(signingIn, user.email, PASSWORD);
  t.true(isRedirect(codePage.status));
  const codeUrl = new URL(`${signingIn.interaction.pathname}/second-factor`, signingIn.interaction);
  const enter = async (code: string) => {
    const form = await (await signingIn.agent.request(codeUrl)).text();
    return signingIn.agent.request(codeUrl, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(form, 'csrf'), method: 'totp', code }).toString(),
    });
  };
  for (let tries = 0; tries < 4; tries++) {
    const empty = await enter('');
    t.is(empty.status, 400);
    t.regex(await empty.text(), /Enter the 6-digit code/);
  }
  // The next step's code (accepted within the clock's drift): the current one was spent confirming the enrollment.
  const next = await generate({ secret, epoch: (Math.floor(Date.now() / 30_000) + 1) * 30 + 1 });
  t.true(isRedirect((await enter(next)).status), 'the right code still signs in');
});

test.serial('a burst of guesses sent at once tries no more passwords than the lockout threshold, and locks once', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '3', LOGIN_LOCKOUT_SECONDS: '300', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const page = await loginPage(server);
  const csrf = formField(await (await page.agent.request(page.interaction)).text(), 'csrf');
  // All at once: without counting each guess before its password is checked, every one of them would
  // pass the "locked?" check before the slowest failure set the lock.
  const answers = await Promise.all(Array.from({ length: 12 }, async () => {
    const response = await page.agent.request(new URL(`${page.interaction.pathname}/login`, page.interaction), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf, email: user.email, password: 'wrong password' }).toString(),
    });
    await response.arrayBuffer();
    return response.status;
  }));
  t.deepEqual([...new Set(answers)].sort(), [401, 429]);
  const events = await server.runtime.auditTrail.list({ userEmail: user.email, limit: 50 });
  const checked = events.filter((event) => event.action === 'login.failed' && event.detail.reason !== 'locked');
  t.is(checked.length, 3, 'three passwords were checked, the threshold');
  t.is(events.filter((event) => event.action === 'login.failed' && event.detail.reason === 'locked').length, 12 - 3);
  const lockouts = events.filter((event) => event.action === 'login.locked_out');
  t.is(lockouts.length, 1, 'one burst is one lockout');
  t.is(lockouts[0]!.detail.seconds, 300, 'and its delay was not doubled');
  t.is((await attempt(page, user.email, PASSWORD)).status, 429, 'the right password is refused while locked');
});

test.serial('an account that only ever gets its right password is never locked, also when its sign-in stops at email verification', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', UNVERIFIED_LOGIN_ALLOWED: 'false' });
  const user = await server.runtime.users.create({ email: unknownEmail(), password: PASSWORD, name: 'Ada Lovelace', emailVerified: false });
  const page = await loginPage(server);
  for (let i = 0; i < 4; i += 1) t.is((await attempt(page, user.email, PASSWORD)).status, 403, `attempt ${i + 1}`);
});

test.serial('an unknown email is locked out exactly like an existing account: same statuses, pages and Retry-After', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '300' });
  const user = await createUser(server);
  const nobody = unknownEmail();
  async function run(email: string, lastPassword: string): Promise<Answer[]> {
    const page = await loginPage(server);
    return [
      await attempt(page, email, 'wrong password'),
      await attempt(page, email, 'wrong password'),
      await attempt(page, email, lastPassword),
    ];
  }
  const [existing, unknown] = await Promise.all([run(user.email, PASSWORD), run(nobody, PASSWORD)]);
  t.deepEqual(existing.map((answer) => answer.status), [401, 429, 429]);
  t.deepEqual(unknown.map((answer) => answer.status), [401, 429, 429]);
  for (let i = 0; i < 3; i += 1) {
    t.is(existing[i]!.retryAfter, unknown[i]!.retryAfter);
    t.is(withoutIds(existing[i]!.body, user.email), withoutIds(unknown[i]!.body, nobody));
  }
  t.regex(existing[2]!.body, /try again in 5 minutes/);
});

const DEVICE_COOKIE = 'gatehouse.device';

/** A new sign-in in a browser that kept only `from`'s trusted-device cookie (its session has ended since). */
async function loginPageWithDeviceOf(server: TestServer, from: UserAgent): Promise<{ agent: UserAgent; interaction: URL }> {
  const agent = new UserAgent();
  for (const name of [DEVICE_COOKIE, `${DEVICE_COOKIE}.sig`]) {
    const value = from.cookie(name);
    if (value === undefined) throw new Error(`no ${name} cookie to copy`);
    agent.plantCookie(name, value, '/interaction');
  }
  return loginPage(server, agent);
}

/** Someone else's wrong passwords (no device cookie), until the account is locked. */
async function lockAccount(t: ExecutionContext, server: TestServer, email: string, threshold: number): Promise<void> {
  const attacker = await loginPage(server);
  for (let i = 1; i < threshold; i += 1) t.is((await attempt(attacker, email, 'wrong password')).status, 401);
  t.is((await attempt(attacker, email, 'wrong password')).status, 429, 'the account is locked');
  t.is((await attempt(attacker, email, PASSWORD)).status, 429, 'for every browser without proof, right password included');
}

test.serial('a browser that signed in before keeps signing in with the right password while someone else\'s guesses lock the account', async (t) => {
  t.timeout(120_000);
  // Behind a TLS-terminating proxy, so the owner's browser is on HTTPS.
  const server = await serverWith({ TRUST_PROXY: 'true', LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '300', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const owner = await loginPage(server, new UserAgent({ headers: { 'x-forwarded-proto': 'https' } }));
  const signedIn = await attempt(owner, user.email, PASSWORD);
  t.true(isRedirect(signedIn.status));
  t.regex(owner.agent.cookie(DEVICE_COOKIE) ?? '', new RegExp(`\\.${accountKey(user.email)}\\.\\d+$`), 'a device id and a hash of the address, never the address');
  const deviceCookie = signedIn.setCookies.find((line) => line.startsWith(`${DEVICE_COOKIE}=`)) ?? '';
  for (const attribute of [/;\s*httponly/i, /;\s*samesite=lax/i, /;\s*secure/i, /;\s*path=\/interaction(;|$)/i]) t.regex(deviceCookie, attribute);
  const expires = Date.parse(/;\s*expires=([^;]+)/i.exec(deviceCookie)?.[1] ?? '');
  t.true(Math.abs(expires - Date.now() - TRUSTED_DEVICE_SECONDS * 1000) < 60_000, `the cookie lasts TRUSTED_DEVICE_SECONDS: ${deviceCookie}`);

  await lockAccount(t, server, user.email, 2);
  const device = await loginPageWithDeviceOf(server, owner.agent);
  t.is((await attempt(device, user.email, 'wrong password')).status, 401, 'a typo on the trusted device is counted on the device only');
  t.true(isRedirect((await attempt(device, user.email, PASSWORD)).status), 'the owner signs in while the account is locked');
  t.is((await attempt(await loginPage(server), user.email, PASSWORD)).status, 429, 'and the account stays locked for everyone else');

  const failures = await server.runtime.auditTrail.list({ userEmail: user.email, action: 'login.failed', limit: 20 });
  t.is(failures.filter((event) => event.detail.device === 'trusted').length, 1, 'the trail tells the trusted device\'s attempt apart');
  t.is(failures.filter((event) => event.detail.device === undefined).length, 4, 'two wrong passwords and two refusals elsewhere');
});

test.serial('a browser that reset the password through the emailed link signs in while someone else keeps the account locked', async (t) => {
  t.timeout(120_000);
  const smtp = await startSmtpServer();
  t.teardown(() => smtp.close());
  const server = await serverWith({ SMTP_URL: smtp.url, LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '300', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const newPassword = 'velvet harbour lantern quartz';
  await lockAccount(t, server, user.email, 2);

  // The owner, in a browser that never signed in, asks for a link and uses it there.
  const owner = new UserAgent();
  const forgot = await openPage(owner, `${server.issuer}/password/forgot`);
  t.is((await post(owner, `${server.issuer}/password/forgot`, { csrf: formField(forgot.html, 'csrf'), email: user.email })).status, 200);
  const form = await openPage(owner, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
  const reset = await post(owner, `${server.issuer}/password/reset`, {
    csrf: formField(form.html, 'csrf'), token: formField(form.html, 'token'), password: newPassword, confirm: newPassword,
  });
  t.is(reset.status, 200);
  t.truthy(owner.cookie(DEVICE_COOKIE), 'the browser that used the link is trusted');

  // The reset forgave the lock; the attacker's guesses set it again.
  const attacker = await loginPage(server);
  t.is((await attempt(attacker, user.email, 'wrong password')).status, 401);
  t.is((await attempt(attacker, user.email, 'wrong password')).status, 429);
  t.is((await attempt(attacker, user.email, newPassword)).status, 429);
  t.true(isRedirect((await attempt(await loginPage(server, owner), user.email, newPassword)).status), 'the owner signs in with the new password');
});

test.serial('a trusted device\'s own wrong passwords lock the device and end its trust: then the account\'s lock holds it too', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '300', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const owner = await loginPage(server);
  t.true(isRedirect((await attempt(owner, user.email, PASSWORD)).status));
  await lockAccount(t, server, user.email, 2);

  // Someone with the browser (or a copy of its cookie) guesses: the device's own threshold, then its lock.
  const device = await loginPageWithDeviceOf(server, owner.agent);
  t.is((await attempt(device, user.email, 'wrong password')).status, 401, 'not refused by the account\'s lock');
  const deviceLock = await attempt(device, user.email, 'wrong password');
  t.is(deviceLock.status, 429);
  t.is(deviceLock.retryAfter, '300');
  t.is(device.agent.cookie(DEVICE_COOKIE), undefined, 'the browser is told to forget the device');
  t.is((await attempt(device, user.email, PASSWORD)).status, 429, 'now the account\'s lock refuses it, right password included');
  // A copy of the cookie kept from before is forgotten on the server too.
  t.is((await attempt(await loginPageWithDeviceOf(server, owner.agent), user.email, PASSWORD)).status, 429);

  const lockouts = await server.runtime.auditTrail.list({ userEmail: user.email, action: 'login.locked_out', limit: 20 });
  t.deepEqual(lockouts.map((event) => event.detail.device ?? 'none').sort(), ['none', 'trusted'], 'one account lock, one device lock');
});

test.serial('a device forgotten at its lock stays forgotten after the lock: guesses with a copy of its cookie lock the account', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '2', LOGIN_LOCKOUT_MAX_SECONDS: '60', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const owner = await loginPage(server);
  t.true(isRedirect((await attempt(owner, user.email, PASSWORD)).status));
  const stolen = await loginPageWithDeviceOf(server, owner.agent);
  t.is((await attempt(stolen, user.email, 'wrong password')).status, 401);
  t.is((await attempt(stolen, user.email, 'wrong password')).retryAfter, '2', 'the device\'s lock');

  // A real wait, just past the device's lock: it is a rate-limiter-flexible key that expires by Redis's TTL (or
  // this process's timer), which takes no Clock.
  await sleep(2100);
  const copy = await loginPageWithDeviceOf(server, owner.agent);
  t.is((await attempt(copy, user.email, 'wrong password')).status, 401);
  t.is((await attempt(copy, user.email, 'wrong password')).retryAfter, '2', 'a first lock, the account\'s (a device\'s second would last 4)');
  t.is((await attempt(await loginPage(server), user.email, PASSWORD)).status, 429, 'the account is locked for everyone without a trusted device');
  const lockouts = await server.runtime.auditTrail.list({ userEmail: user.email, action: 'login.locked_out', limit: 20 });
  t.deepEqual(lockouts.map((event) => event.detail.device ?? 'none').sort(), ['none', 'trusted']);
});

test.serial('a device cookie for another email, tampered with, unsigned or older than its lifetime gets no exemption from the lock', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '300', LOGIN_LIMIT_PER_ACCOUNT_IP: '1000/600' });
  const user = await createUser(server);
  const other = await createUser(server);
  const owner = await loginPage(server);
  t.true(isRedirect((await attempt(owner, user.email, PASSWORD)).status));
  const otherBrowser = await loginPage(server);
  t.true(isRedirect((await attempt(otherBrowser, other.email, PASSWORD)).status));
  await lockAccount(t, server, user.email, 2);

  const genuine = owner.agent.cookie(DEVICE_COOKIE)!;
  const [device, account] = genuine.split('.') as [string, string, string];
  const sign = (value: string) => createHmac('sha1', server.runtime.secrets.cookieSecrets[0]!).update(`${DEVICE_COOKIE}=${value}`)
    .digest('base64').replace(/[/+=]/g, (character) => ({ '/': '_', '+': '-', '=': '' })[character]!);
  const withCookie = (value: string, signature: string | undefined) => {
    const agent = new UserAgent();
    agent.plantCookie(DEVICE_COOKIE, value, '/interaction');
    if (signature !== undefined) agent.plantCookie(`${DEVICE_COOKIE}.sig`, signature, '/interaction');
    return loginPage(server, agent);
  };
  const tooOld = `${device}.${account}.${Math.floor(Date.now() / 1000) - TRUSTED_DEVICE_SECONDS - 60}`;
  const refusals = {
    'another email\'s cookie': await loginPageWithDeviceOf(server, otherBrowser.agent),
    'another device id under the genuine signature': await withCookie(`${device.slice(0, -1)}${device.endsWith('A') ? 'B' : 'A'}.${genuine.split('.').slice(1).join('.')}`, owner.agent.cookie(`${DEVICE_COOKIE}.sig`)),
    'no signature': await withCookie(genuine, undefined),
    'signed, but older than its lifetime': await withCookie(tooOld, sign(tooOld)),
  };
  for (const [what, page] of Object.entries(refusals)) t.is((await attempt(page, user.email, PASSWORD)).status, 429, what);
  // The same signing, on a cookie in its lifetime, is accepted: the refusals above were for what they say.
  t.true(isRedirect((await attempt(await withCookie(genuine, sign(genuine)), user.email, PASSWORD)).status), 'the genuine cookie is let through');
});

test.serial('the token endpoint is limited per client (confidential and public); oauth4webapi sees a 429 error with Retry-After', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ TOKEN_LIMIT_PER_CLIENT: '2/60' });
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const other = await registerConfidential(server, 'service');
  const grant = () => oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure);
  for (let i = 0; i < 2; i += 1) await oauth.processClientCredentialsResponse(as, service.client, await grant());
  const refused = await grant();
  t.is(refused.status, 429);
  t.is(refused.headers.get('retry-after') !== null && Number(refused.headers.get('retry-after')) > 0, true);
  const error = await t.throwsAsync(oauth.processClientCredentialsResponse(as, service.client, refused), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_request');
  t.regex(error?.error_description ?? '', /too many requests, try again in \d+ seconds/);
  // Another client is not affected.
  const fine = await oauth.clientCredentialsGrantRequest(as, other.client, oauth.ClientSecretBasic(other.secret), {}, insecure);
  t.is(fine.status, 200);

  // Refused requests spend nothing of a client's limit: anyone who knows its id could send them (counted per IP).
  const target = await registerConfidential(server, 'service');
  for (let i = 0; i < 3; i += 1) {
    t.is((await oauth.clientCredentialsGrantRequest(as, target.client, oauth.ClientSecretBasic('a guessed secret'), {}, insecure)).status, 401);
  }
  t.is((await oauth.clientCredentialsGrantRequest(as, target.client, oauth.ClientSecretBasic(target.secret), {}, insecure)).status, 200, 'wrong secrets spent nothing of its limit');

  // A public client (client_id in the body, no Authorization header) is counted too, and a single-page app's id is
  // public: made-up refresh tokens in its name spend nothing; its people's code exchange and refresh do.
  const { client: spa } = await registerSpa(server);
  for (let i = 0; i < 3; i += 1) t.is((await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), 'not-a-refresh-token', insecure)).status, 400);
  const user = await createUser(server);
  const signedIn = await authorizationRequest(as, spa.client_id);
  const code = oauth.validateAuthResponse(as, spa, await signIn(new UserAgent(), signedIn.url, { email: user.email, password: PASSWORD }), signedIn.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, spa,
    await oauth.authorizationCodeGrantRequest(as, spa, oauth.None(), code, REDIRECT_URI, signedIn.codeVerifier, insecure), { expectedNonce: signedIn.nonce });
  const refreshed = await oauth.processRefreshTokenResponse(as, spa, await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, insecure));
  const spaRefused = await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), refreshed.refresh_token!, insecure);
  t.is(spaRefused.status, 429);
  t.truthy(spaRefused.headers.get('retry-after'));
});

test.serial('a public client over its limit gets 429 whatever it sends, and the code and refresh token it sent are left as they were', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ TOKEN_LIMIT_PER_CLIENT: '5/600' });
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const agent = new UserAgent();
  const signedIn = await authorizationRequest(as, client.client_id);
  const signedInCode = oauth.validateAuthResponse(as, client, await signIn(agent, signedIn.url, { email: user.email, password: PASSWORD }), signedIn.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), signedInCode, REDIRECT_URI, signedIn.codeVerifier, insecure), { expectedNonce: signedIn.nonce });
  // A second code, not exchanged yet (the browser is signed in already).
  const second = await authorizationRequest(as, client.client_id);
  const secondCode = oauth.validateAuthResponse(as, client, await signIn(agent, second.url, { email: user.email, password: PASSWORD }), second.state);
  const { rates } = server.runtime.limits;
  while ((await rates.consume('token-client', client.client_id)).allowed);

  // Refused before the engine reads the code or token: what it would find is not said, not even in its events
  // (the protocol log and metrics read them), and nothing is consumed.
  const events: string[] = [];
  const onError = (_ctx: unknown, error: { status: number; error: string }) => events.push(`${error.status} ${error.error}`);
  const onSuccess = () => events.push('success');
  server.runtime.provider.on('grant.error', onError).on('grant.success', onSuccess);
  t.teardown(() => server.runtime.provider.off('grant.error', onError).off('grant.success', onSuccess));
  const refused = {
    'its refresh token': await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure),
    'its unused code': await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), secondCode, REDIRECT_URI, second.codeVerifier, insecure),
    'its used code': await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), signedInCode, REDIRECT_URI, signedIn.codeVerifier, insecure),
    'a made-up refresh token': await oauth.refreshTokenGrantRequest(as, client, oauth.None(), 'made-up', insecure),
    'a grant type it may not use': await oauth.clientCredentialsGrantRequest(as, client, oauth.None(), {}, insecure),
  };
  for (const [what, response] of Object.entries(refused)) {
    t.is(response.status, 429, what);
    t.true(Number(response.headers.get('retry-after')) > 0, what);
    t.regex(((await response.json()) as { error_description?: string }).error_description ?? '', /too many requests/, what);
  }
  t.deepEqual(events, Array(5).fill('429 invalid_request'));

  // No grant was revoked (the used code's reuse would have revoked the first): the token and the code work, once.
  await rates.reset('token-client', client.client_id);
  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.is((await oauth.userInfoRequest(as, client, refreshed.access_token, insecure)).status, 200);
  const exchanged = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), secondCode, REDIRECT_URI, second.codeVerifier, insecure), { expectedNonce: second.nonce });
  t.is((await oauth.userInfoRequest(as, client, exchanged.access_token, insecure)).status, 200);
});

test.serial('the token endpoint is limited per IP, whatever client id is sent', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ TOKEN_LIMIT_PER_IP: '3/60' });
  const as = await discover(server);
  const statuses: number[] = [];
  for (let i = 0; i < 4; i += 1) {
    const client = { client_id: `unknown-${i}` };
    statuses.push((await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic('secret'), {}, insecure)).status);
  }
  t.deepEqual(statuses, [401, 401, 401, 429]);
});

test.serial('at the token endpoint, a refused IP spends no point of the client it names, and a made-up client id is counted per IP only', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ TOKEN_LIMIT_PER_IP: '2/60', TOKEN_LIMIT_PER_CLIENT: '1/60' });
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const madeUp = { client_id: `unknown-${crypto.randomUUID()}` };
  t.is((await oauth.clientCredentialsGrantRequest(as, madeUp, oauth.ClientSecretBasic('secret'), {}, insecure)).status, 401);
  t.is((await oauth.clientCredentialsGrantRequest(as, madeUp, oauth.ClientSecretBasic('secret'), {}, insecure)).status, 401);
  t.is((await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure)).status, 429, 'the IP is over its limit');
  // Each counter still has its one point: neither the refusal nor the made-up id spent it.
  const { rates } = server.runtime.limits;
  t.true((await rates.consume('token-client', service.client.client_id)).allowed);
  t.true((await rates.consume('token-client', madeUp.client_id)).allowed);
});

test.serial('a client id longer than any client\'s is counted per IP only at the token endpoint: it leaves no counter of its size in the store', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ TOKEN_LIMIT_PER_IP: '2/60' });
  const as = await discover(server);
  const madeUp = { client_id: `x${'y'.repeat(5000)}` };
  const statuses: number[] = [];
  for (let i = 0; i < 3; i += 1) statuses.push((await oauth.clientCredentialsGrantRequest(as, madeUp, oauth.ClientSecretBasic('secret'), {}, insecure)).status);
  t.deepEqual(statuses, [401, 401, 429], 'still limited per IP');
  const { redis, storePrefix } = server.runtime.config;
  if (!redis) return;
  const client = new Redis(redis.url);
  try {
    t.deepEqual((await keysWithPrefix(client, `${storePrefix}limit:`)).filter((key) => key.includes('yyyy')), []);
  } finally {
    client.disconnect();
  }
});

test.serial('the authorization, pushed authorization and logout endpoints are limited per IP: each keeps state, so a script cannot fill the store', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ AUTHORIZATION_LIMIT_PER_IP: '3/60' });
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const first = await fetch((await authorizationRequest(as, client.client_id)).url, { redirect: 'manual' });
  t.is(first.status, 303, 'on to the login page');
  const pushed = await oauth.pushedAuthorizationRequest(as, client, oauth.None(), { redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }, insecure);
  t.is(pushed.status, 201);
  t.is((await fetch(`${server.issuer}/session/end`, { redirect: 'manual' })).status, 200, 'the logout page');

  const refusedSignIn = await fetch((await authorizationRequest(as, client.client_id)).url, { redirect: 'manual', headers: { accept: 'text/html' } });
  t.is(refusedSignIn.status, 429);
  t.truthy(Number(refusedSignIn.headers.get('retry-after')));
  t.regex(await refusedSignIn.text(), /signing in is paused/, 'a page, never a redirect to an application not yet checked');
  // Pushed from the single-page app's own origin: its fetch may read the refusal and when to try again.
  const appOrigin = new URL(REDIRECT_URI).origin;
  const refusedPush = await oauth.pushedAuthorizationRequest(as, client, oauth.None(), { redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }, {
    ...insecure, headers: { origin: appOrigin },
  });
  t.is(refusedPush.status, 429);
  t.is(((await refusedPush.json()) as { error?: string }).error, 'invalid_request');
  t.is(refusedPush.headers.get('access-control-allow-origin'), appOrigin);
  t.regex(refusedPush.headers.get('access-control-expose-headers') ?? '', /Retry-After/);
  const refusedLogout = await fetch(`${server.issuer}/session/end`, { headers: { accept: 'text/html' } });
  t.is(refusedLogout.status, 429);
  t.regex(await refusedLogout.text(), /signing out is paused/);
});

test.serial('a logout request from a browser nobody signed in with keeps its session no longer than a sign-in may take', async (t) => {
  t.timeout(120_000);
  const server = await serverWith({ INTERACTION_TTL: '600' });
  const page = await fetch(`${server.issuer}/session/end`);
  t.is(page.status, 200);
  t.regex(await page.text(), /<form/, 'its form needs the session');
  const { redis, storePrefix } = server.runtime.config;
  if (!redis) return t.pass('the in-process store keeps no TTL to read');
  const client = new Redis(redis.url);
  try {
    const sessions = (await keysWithPrefix(client, storePrefix)).filter((key) => key.startsWith(`${storePrefix}Session:`));
    t.true(sessions.length >= 1);
    for (const key of sessions) {
      const ttl = await client.ttl(key);
      t.true(ttl > 0 && ttl <= 600, `${key} lives ${ttl} s`);
    }
  } finally {
    client.disconnect();
  }
});

test.serial('limits do not leak between runs sharing a store: each run counts under its own prefix', async (t) => {
  t.timeout(120_000);
  const environment = { LOGIN_LIMIT_PER_IP: '1/60' };
  const first = await serverWith(environment);
  const second = await serverWith(environment);
  const firstPage = await loginPage(first);
  t.is((await attempt(firstPage, unknownEmail(), 'wrong password')).status, 401);
  t.is((await attempt(firstPage, unknownEmail(), 'wrong password')).status, 429);
  t.is((await attempt(await loginPage(second), unknownEmail(), 'wrong password')).status, 401, 'the other run has its own counters');
  const { redis, storePrefix } = first.runtime.config;
  if (!redis) return;
  const client = new Redis(redis.url);
  try {
    t.true((await keysWithPrefix(client, `${storePrefix}limit:`)).length > 0, 'counters live under the run prefix');
    await first.close();
    servers.splice(servers.indexOf(first), 1);
    t.deepEqual(await keysWithPrefix(client, storePrefix), [], 'and are removed with the run');
  } finally {
    client.disconnect();
  }
});

test.serial('with the rate-limit Redis down, limits fail closed: the domain raises DependencyUnavailable', async (t) => {
  t.timeout(120_000);
  const redis = await ThrowawayRedisServer.start();
  t.teardown(() => redis.stop());
  const config = loadConfig({ NODE_ENV: 'test', REDIS_URL: redis.url, STORE_PREFIX: 'gatehouse-limits-down:' });
  const limits = createLimits(config);
  t.teardown(() => limits.close());
  t.true((await limits.rates.consume('token-ip', '192.0.2.1')).allowed);
  await redis.kill();
  await t.throwsAsync(limits.rates.consume('token-ip', '192.0.2.1'), { instanceOf: DependencyUnavailable });
  await t.throwsAsync(limits.login.beforeAttempt({ email: 'ada@example.com', ip: '192.0.2.1' }), { instanceOf: DependencyUnavailable });
});

test.serial('with the rate-limit Redis down, login and the token endpoint answer 503 instead of skipping the limits', async (t) => {
  t.timeout(120_000);
  const redis = await ThrowawayRedisServer.start();
  t.teardown(() => redis.stop());
  // The store stays up (in-process); only the limits' Redis goes away, so a 503 can only come from the limits.
  const database = await createTestDatabase();
  const config = loadConfig({
    NODE_ENV: 'test', ISSUER: 'http://127.0.0.1:1', DATA_DIR: database.dataDir, KEYS_DIR: path.join(database.dataDir, 'keys'),
    STORE_PREFIX: `gatehouse-test-down-${crypto.randomUUID().slice(0, 8)}:`, LOG_LEVEL: 'silent',
    ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
  });
  const httpServer = createServer();
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;
  const limits = createLimits({ ...config, redis: { url: redis.url } });
  const runtime = await openRuntime({ ...config, issuer }, createLogger(config), { limits });
  httpServer.on('request', createApp(runtime).callback());
  const server: TestServer = {
    issuer, runtime, server: httpServer, close: async () => {},
    settled: async () => { await runtime.afterResponseWork.settled(); await runtime.mailQueue.idle(); },
  };
  t.teardown(async () => {
    httpServer.closeAllConnections();
    await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    // The runtime closes the limits it was given.
    await runtime.close();
    await database.drop();
  });

  const user = await createUser(server);
  const page = await loginPage(server);
  t.is((await attempt(page, user.email, 'wrong password')).status, 401, 'limits work while Redis is up');
  const as = await discover(server);
  const service = await registerConfidential(server, 'service');
  const grant = () => oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretBasic(service.secret), {}, insecure);
  t.is((await grant()).status, 200);

  await redis.kill();
  t.is((await attempt(page, user.email, PASSWORD)).status, 503, 'the right password is not let through without limits');
  const refused = await grant();
  t.is(refused.status, 503);
  t.is(((await refused.json()) as { error: string }).error, 'temporarily_unavailable');
});

test('second-factor codes are limited per account and IP and per IP (the guard every code form asks), on this run\'s store', async (t) => {
  const config = loadConfig({
    NODE_ENV: 'test', STORE_PREFIX: `gatehouse-test-${crypto.randomUUID()}:`, LOGIN_LOCKOUT_THRESHOLD: '100',
    SECOND_FACTOR_LIMIT_PER_ACCOUNT_IP: '2/600', SECOND_FACTOR_LIMIT_PER_IP: '3/600',
    ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
  });
  const limits = createLimits(config);
  t.teardown(async () => {
    await limits.close();
    if (config.redis) await deleteKeysWithPrefix(config.redis.url, config.storePrefix);
  });
  const guard = limits.secondFactor;
  const account = crypto.randomUUID();
  t.true((await guard.beforeAttempt({ accountId: account, ip: '192.0.2.1' })).allowed);
  t.true((await guard.beforeAttempt({ accountId: account, ip: '192.0.2.1' })).allowed);
  const perAccountAndIp = await guard.beforeAttempt({ accountId: account, ip: '192.0.2.1' });
  t.like(perAccountAndIp, { allowed: false, reason: 'rate_limited', lockedNow: false });
  t.true(!perAccountAndIp.allowed && perAccountAndIp.retryAfterSeconds > 500 && perAccountAndIp.retryAfterSeconds <= 600);
  t.true((await guard.beforeAttempt({ accountId: account, ip: '192.0.2.2' })).allowed, 'the account from another IP');
  // 192.0.2.1 has made three attempts by now (the refused one counted against its IP too).
  t.like(await guard.beforeAttempt({ accountId: crypto.randomUUID(), ip: '192.0.2.1' }), { allowed: false, reason: 'rate_limited' });
  // A right code forgives the account+IP attempts: a third from 192.0.2.2 is let through after it.
  t.true((await guard.beforeAttempt({ accountId: account, ip: '192.0.2.2' })).allowed);
  await guard.afterSuccess({ accountId: account, ip: '192.0.2.2' });
  t.true((await guard.beforeAttempt({ accountId: account, ip: '192.0.2.2' })).allowed);
});

test('limit settings are read as attempts/seconds and refused otherwise', (t) => {
  const config = loadConfig({ LOGIN_LIMIT_PER_IP: '7/30', LOGIN_LOCKOUT_SECONDS: '10', LOGIN_LOCKOUT_MAX_SECONDS: '50' });
  t.deepEqual(config.limits.loginPerIp, { points: 7, seconds: 30 });
  t.deepEqual(config.limits.tokenPerClient, { points: 600, seconds: 60 });
  t.throws(() => loadConfig({ TOKEN_LIMIT_PER_CLIENT: '600' }), { message: /TOKEN_LIMIT_PER_CLIENT: must be attempts\/seconds/ });
  t.throws(() => loadConfig({ LOGIN_LIMIT_PER_IP: '0/60' }), { message: /LOGIN_LIMIT_PER_IP/ });
  // 10, 20, 40, then capped at 50.
  t.deepEqual([1, 2, 3, 4, 5].map((n) => lockSeconds(n, config.limits.lockout)), [10, 20, 40, 50, 50]);
});
