// The second factor end to end: enrollment on the account page (QR code, setup key, recovery codes),
// login asking for a code (codes computed here with otplib), single use and clock drift, recovery codes,
// sealed secrets, turning it off, requirement by acr_values, client setting and role (enrollment inside
// the sign-in), step-up of a password-only session, lockout, audit and CSRF, the password asked before
// turning it on, notices by email (a real SMTP server), secrets that no longer open, and the
// administrator's reset; ID tokens read with oauth4webapi and jose.
import path from 'node:path';
import test from 'ava';
import { compactDecrypt, createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { generate } from 'otplib';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { linkIn, startSmtpServer, type TestSmtpServer } from './helpers/smtp.ts';
import {
  PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, type AuthorizationRequest,
} from './helpers/oauth.ts';
import { UserAgent, formField, isRedirect } from './helpers/user-agent.ts';
import { signInToAccount } from './helpers/account.ts';
import { runNode } from './helpers/process.ts';
import { cleanEnvironment } from './helpers/process.ts';
import { Sealer, keyIdOf } from '../src/keys/sealed.ts';
import { ACR_PASSWORD, ACR_SECOND_FACTOR } from '../src/oidc/assurance.ts';
import { SecondFactorService, hashRecoveryCode, normalizeRecoveryCode } from '../src/accounts/second-factor.ts';

let server: TestServer;
let smtp: TestSmtpServer;
/** Every log line of `server`, at debug level. */
let logLines: string[];
test.before(async () => {
  smtp = await startSmtpServer();
  const { logger, lines } = capturingLogger();
  logLines = lines;
  // One IP (127.0.0.1) signs in many times across this file: the per-IP limits must not be what stops a test.
  server = await startTestServer({
    LOGIN_LIMIT_PER_IP: '10000/600', SECOND_FACTOR_LIMIT_PER_IP: '10000/600', SECOND_FACTOR_LIMIT_PER_ACCOUNT_IP: '50/600',
    SMTP_URL: smtp.url,
  }, { logger });
});
test.after.always(async () => {
  await server?.close();
  await smtp?.close();
});

const NOTICE_SUBJECT = 'Your two-factor authentication was changed';
/** The notice's text part; its one link leads to the password reset ("not you?"). */
async function noticeTo(t: import('ava').ExecutionContext, address: string): Promise<string> {
  const mail = await smtp.mailTo(address, NOTICE_SUBJECT);
  const text = mail.email.text ?? '';
  t.deepEqual([...text.matchAll(/https?:\/\/\S+/g)].map((match) => match[0]), [`${server.issuer}/password/forgot`]);
  t.true((mail.email.html ?? '').includes(`href="${server.issuer}/password/forgot"`));
  return text;
}

const PERIOD = 30;

/**
 * Nothing here waits for the clock. The server accepts the codes of its current step and of one step either
 * way, each only for a step after the last one it accepted. So the tests use the codes of the step that is
 * current when they start (`currentStep()`) and of the next one, in that order: both stay accepted across the
 * next step boundary, wherever it falls. They never use the previous step's code, which a boundary passing
 * between computing and checking it would turn away; a person is enrolled "as if with the previous step's
 * code" instead (see enrollOnAccountPage).
 */
function codeAt(secret: string, step: number): Promise<string> {
  return generate({ secret, epoch: step * PERIOD + 1 });
}

function currentStep(): number {
  return Math.floor(Date.now() / 1000 / PERIOD);
}

function setupKey(html: string): string {
  const match = /<code class="secret" id="setup-key">([A-Z2-7 ]+)<\/code>/.exec(html);
  if (!match) throw new Error(`no setup key in page: ${html.slice(0, 500)}`);
  return match[1]!.replaceAll(' ', '');
}

function recoveryCodesIn(html: string): string[] {
  return [...html.matchAll(/<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})<\/code><\/li>/g)].map((match) => match[1]!);
}

async function post(agent: UserAgent, url: URL | string, fields: Record<string, string>) {
  const reached = await agent.submit(url, fields);
  return { ...reached, html: isRedirect(reached.response.status) ? '' : await reached.response.text() };
}

/**
 * Turns the second factor on through the account page, confirming with the current step's code; the secret and
 * recovery codes. With `leaveCurrentStepFree`, the step the account last used is then set one back, as if the
 * previous step's code had confirmed it: the codes of the current step and the next stay free for the test.
 */
async function enrollOnAccountPage(agent: UserAgent, email: string, leaveCurrentStepFree = false): Promise<{ secret: string; recoveryCodes: string[] }> {
  // Signed in already (one session for every application), or through the login page.
  const opened = await reach(agent, `${server.issuer}/account/two-factor`);
  const overview = opened.url.pathname === '/account/two-factor'
    ? opened.html
    : (await signInToAccount(server, agent, { email, password: PASSWORD }, '/account/two-factor')).html;
  const setup = await post(agent, `${server.issuer}/account/two-factor/start`, { csrf: formField(overview, 'csrf'), password: PASSWORD });
  if (setup.response.status !== 200) throw new Error(`setup page: ${setup.response.status}`);
  const secret = setupKey(setup.html);
  const step = currentStep();
  const confirmed = await post(agent, `${server.issuer}/account/two-factor/confirm`, {
    csrf: formField(setup.html, 'csrf'), code: await codeAt(secret, step),
  });
  if (confirmed.response.status !== 200) throw new Error(`confirm: ${confirmed.response.status} ${confirmed.html.slice(0, 500)}`);
  if (leaveCurrentStepFree) await usedStepBefore(email, step);
  return { secret, recoveryCodes: recoveryCodesIn(confirmed.html) };
}

/** Records the step before `step` as the account's last accepted one: the codes from `step` on are free again. */
async function usedStepBefore(email: string, step: number): Promise<void> {
  const { count } = await server.runtime.database.prisma.user.updateMany({ where: { email, totpLastStep: step }, data: { totpLastStep: step - 1 } });
  if (count !== 1) throw new Error(`the account did not last use step ${step}`);
}

/** A person with the second factor on, the current step's code and the next one's free (see enrollOnAccountPage). */
async function enrolledUser(options: { roles?: string[] } = {}) {
  const user = await server.runtime.users.create({ email: `mfa-${crypto.randomUUID()}@example.com`, password: PASSWORD, name: 'Grace Hopper', emailVerified: true, ...options });
  const enrolled = await enrollOnAccountPage(new UserAgent(), user.email, true);
  return { user, ...enrolled };
}

interface Reached {
  response: Response;
  url: URL;
  html: string;
}

async function reach(agent: UserAgent, url: URL | string, init?: RequestInit): Promise<Reached> {
  const reached = await agent.follow(url, init);
  return { ...reached, html: isRedirect(reached.response.status) ? '' : await reached.response.text() };
}

/** Starts a sign-in and gives the password; returns the page reached (the second-factor step, or the callback). */
async function passwordStep(agent: UserAgent, request: AuthorizationRequest, email: string, password = PASSWORD): Promise<Reached> {
  const login = await reach(agent, request.url);
  if (!login.html.includes('name="password"')) throw new Error(`expected the login page, got ${login.url.pathname} ${login.response.status}`);
  return reachAfter(agent, await agent.submit(new URL(`${login.url.pathname}/login`, login.url), {
    csrf: formField(login.html, 'csrf'), email, password,
  }));
}

async function reachAfter(agent: UserAgent, reached: { response: Response; url: URL }): Promise<Reached> {
  let current: Reached = { ...reached, html: isRedirect(reached.response.status) ? '' : await reached.response.text() };
  // A new client asks for consent once the person is known.
  if (current.url.pathname.startsWith('/interaction/') && current.html.includes('/confirm"')) {
    current = await post(agent, new URL(`${current.url.pathname}/confirm`, current.url), { csrf: formField(current.html, 'csrf') });
  }
  return current;
}

/** Submits the code page's form. */
async function submitCode(agent: UserAgent, page: Reached, code: string, method: 'totp' | 'recovery' = 'totp'): Promise<Reached> {
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  return reachAfter(agent, await agent.submit(new URL(`/interaction/${uid}/second-factor`, page.url), { csrf: formField(page.html, 'csrf'), method, code }));
}

/** The code exchange (oauth4webapi validates the ID token) and the ID token's claims (jose). */
async function idTokenClaims(client: oauth.Client, request: AuthorizationRequest, callback: URL) {
  const as = await discover(server);
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true });
  const { payload } = await jwtVerify(tokens.id_token!, createRemoteJWKSet(new URL(as.jwks_uri!)), { issuer: server.issuer, audience: client.client_id });
  return payload;
}

async function newSpa(options: { requireSecondFactor?: boolean } = {}) {
  const as = await discover(server);
  if (options.requireSecondFactor) {
    const metadata = await server.runtime.clients.create({ name: 'Strict SPA', type: 'spa', redirectUris: [REDIRECT_URI], requireSecondFactor: true });
    return { as, client: { client_id: metadata.client_id, token_endpoint_auth_method: 'none' } as oauth.Client, metadata };
  }
  return { as, ...await registerSpa(server) };
}

async function auditOf(userId: string, action: string) {
  await server.runtime.auditTrail.flush();
  const events = await server.runtime.auditTrail.list({ action, limit: 1000 });
  return events.filter((event) => event.subjectUserId === userId);
}

function isCallback(reached: Reached): boolean {
  return reached.url.origin + reached.url.pathname === REDIRECT_URI;
}

/** Signs in to the account console with the password and a code; the account page reached. */
async function signInToConsole(agent: UserAgent, email: string, code: string, path = '/account'): Promise<Reached> {
  const codePage = await signInToAccount(server, agent, { email, password: PASSWORD }, path);
  if (!codePage.url.pathname.endsWith('/second-factor')) throw new Error(`expected the code page, got ${codePage.url.pathname}`);
  return submitCode(agent, { ...codePage }, code);
}

/** Opens an account page; when the console asks its session for the second factor first (step-up), gives `code()`. */
async function openAccountPage(agent: UserAgent, path: string, code: () => Promise<string>): Promise<Reached> {
  const opened = await reach(agent, `${server.issuer}${path}`);
  if (!opened.url.pathname.endsWith('/second-factor')) return opened;
  return submitCode(agent, opened, await code());
}

/** A 6-digit code that is none of the codes within reach (±2 steps) of now. */
async function wrongCode(secret: string): Promise<string> {
  const step = currentStep();
  const near = new Set(await Promise.all([-2, -1, 0, 1, 2].map((offset) => codeAt(secret, step + offset))));
  for (const candidate of ['000000', '111111', '222222', '333333', '444444', '555555']) if (!near.has(candidate)) return candidate;
  throw new Error('unreachable');
}

// --- discovery -----------------------------------------------------------------------------------

test('discovery advertises the two levels of assurance', async (t) => {
  const as = await discover(server);
  t.deepEqual(as.acr_values_supported, [ACR_PASSWORD, ACR_SECOND_FACTOR]);
});

test('a password-only sign-in says so: amr pwd, acr loa:1', async (t) => {
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const reached = await passwordStep(agent, request, user.email);
  t.true(isCallback(reached));
  const claims = await idTokenClaims(client, request, reached.url);
  t.deepEqual(claims.amr, ['pwd']);
  t.is(claims.acr, ACR_PASSWORD);
});

// --- enrollment on the account page and login -----------------------------------------------------

test('set up on the account page, then login asks for a code: a wrong one is 401, the right one gives amr pwd+otp and acr loa:2', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const consoleAgent = new UserAgent();
  const { html: status } = await signInToAccount(server, consoleAgent, { email: user.email, password: PASSWORD }, '/account/two-factor');
  t.regex(status, /Two-factor authentication is <strong>off<\/strong>/);
  t.regex(status, /<label for="start-password">Your password<\/label>/);

  // Turning it on asks the password (a borrowed, signed-in browser must not enroll its own authenticator).
  const start = (password: string) => post(consoleAgent, `${server.issuer}/account/two-factor/start`, { csrf: formField(status, 'csrf'), password });
  for (const [password, error] of [['', /Enter your password\./], ['not my password at all', /That is not your password\./]] as const) {
    const refused = await start(password);
    t.is(refused.response.status, 400, `password "${password}"`);
    t.regex(refused.html, error);
    t.regex(refused.html, /role="alert" id="start-error"/);
    t.regex(refused.html, /aria-describedby="start-detail start-error" aria-invalid="true"/);
    t.false(refused.html.includes('id="setup-key"'), 'no secret without the password');
  }
  t.is((await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true } })).totpSecret, null, 'nothing was started');
  const reauthentications = await auditOf(user.id, 'reauthentication.failed');
  t.deepEqual(reauthentications.map((event) => event.detail.purpose), ['enable_second_factor'], 'an empty field is a slip, not a guess: only the wrong password counts');

  const setup = await start(PASSWORD);
  t.is(setup.response.status, 200);
  t.regex(setup.html, /<img class="qr" src="data:image\/png;base64,[A-Za-z0-9+/=]+"/);
  t.regex(setup.html, /alt="QR code[^"]*type the setup key shown below/);
  t.regex(setup.html, /<code class="secret" id="setup-key">([A-Z2-7]{4} )+[A-Z2-7]{1,4}<\/code>/, 'the secret in groups of four');
  t.regex(setup.html, /inputmode="numeric" autocomplete="one-time-code"/);
  const secret = setupKey(setup.html);
  t.is(secret.length, 32, '160-bit secret');

  const wrongConfirm = await post(consoleAgent, `${server.issuer}/account/two-factor/confirm`, { csrf: formField(setup.html, 'csrf'), code: await wrongCode(secret) });
  t.is(wrongConfirm.response.status, 401);
  t.regex(wrongConfirm.html, /role="alert" id="code-error"/);
  t.is(setupKey(wrongConfirm.html), secret, 'the same secret is shown again');
  t.false((await server.runtime.secondFactor.status(user.id)).enabled);

  const step = currentStep();
  const confirmed = await post(consoleAgent, `${server.issuer}/account/two-factor/confirm`, { csrf: formField(setup.html, 'csrf'), code: await codeAt(secret, step) });
  t.is(confirmed.response.status, 200);
  const recoveryCodes = recoveryCodesIn(confirmed.html);
  t.is(recoveryCodes.length, 10);
  t.is(new Set(recoveryCodes).size, 10);
  t.regex(confirmed.html, /shown only this once/);

  const notice = await noticeTo(t, user.email);
  t.regex(notice, /^Hello,\n\nTwo-factor authentication was turned on for your account at 127\.0\.0\.1:\d+ on \d{4}-\d\d-\d\d \d\d:\d\d UTC\./);
  t.regex(notice, /may have set up their own authenticator app/);
  t.false(notice.includes(secret) || notice.includes(recoveryCodes[0]!), 'neither the secret nor a code is mailed');

  // The console's session was signed in with the password alone: it may be asked the code now.
  const after = await openAccountPage(consoleAgent, '/account/two-factor', () => codeAt(secret, step + 1));
  t.regex(after.html, /Two-factor authentication is <strong>on<\/strong>/);
  t.regex(after.html, /Recovery codes left: <strong>10<\/strong>/);
  t.false(after.html.includes(recoveryCodes[0]!), 'recovery codes are never shown again');

  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const page = await passwordStep(agent, request, user.email);
  t.is(page.response.status, 200);
  t.regex(page.url.pathname, /^\/interaction\/[\w-]+\/second-factor$/);
  t.regex(page.html, /<input id="code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"/);
  t.regex(page.html, /<label for="code">/);
  t.regex(page.html, /href="\/interaction\/[\w-]+\/second-factor\?method=recovery"/);
  t.false(page.html.includes(user.id), 'no account id in the page');

  const right = await codeAt(secret, step + 1);
  const wrong = await submitCode(agent, page, right === '123456' ? '654321' : '123456');
  t.is(wrong.response.status, 401);
  t.regex(wrong.html, /<p class="alert" role="alert" id="code-error">/);
  t.regex(wrong.html, /aria-describedby="code-hint code-error" aria-invalid="true"/);

  const done = await submitCode(agent, wrong, right);
  t.true(isCallback(done), `ended at ${done.url}`);
  const claims = await idTokenClaims(client, request, done.url);
  t.is(claims.sub, user.id);
  t.deepEqual(claims.amr, ['pwd', 'otp']);
  t.is(claims.acr, ACR_SECOND_FACTOR);
  t.is(typeof claims.auth_time, 'number');

  t.is((await auditOf(user.id, 'second_factor.enrolled')).length, 1);
  const failed = await auditOf(user.id, 'second_factor.failed');
  t.is(failed.length, 2, 'the wrong confirmation and the wrong login code');
  const used = (await auditOf(user.id, 'second_factor.used')).filter((event) => event.clientId === client.client_id);
  t.is(used.length, 1);
  t.is(used[0]!.outcome, 'success');
  t.is(used[0]!.clientId, client.client_id);
  for (const event of [...failed, ...used]) t.false(JSON.stringify(event).includes(right), 'no code in the audit trail');
});

test('an accepted code is not accepted again, in another sign-in', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const { as, client } = await newSpa();
  const code = await codeAt(secret, step);

  const first = new UserAgent();
  const firstRequest = await authorizationRequest(as, client.client_id);
  const accepted = await submitCode(first, await passwordStep(first, firstRequest, user.email), code);
  t.true(isCallback(accepted));

  const second = new UserAgent();
  const replayed = await submitCode(second, await passwordStep(second, await authorizationRequest(as, client.client_id), user.email), code);
  t.is(replayed.response.status, 401);
  t.regex(replayed.html, /already used/);
  const failed = await auditOf(user.id, 'second_factor.failed');
  t.is(failed.at(-1)!.detail.reason, 'used');
});

test('a double click on the code page: the second submit, sent as the first finished the sign-in, goes on with it (not back to the password)', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const codePage = await passwordStep(agent, request, user.email);
  const uid = /\/interaction\/([\w-]+)/.exec(codePage.url.pathname)![1]!;
  const form = { csrf: formField(codePage.html, 'csrf'), method: 'totp', code: await codeAt(secret, currentStep()) };
  const submit = () => agent.request(new URL(`/interaction/${uid}/second-factor`, codePage.url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form).toString(),
  });
  const first = await submit();
  const second = await submit();
  t.is(second.status, 303);
  t.is(second.headers.get('location'), first.headers.get('location'), 'where the first submit went on to');
  // The browser shows the second submit's answer: it reaches the application, signed in with both factors.
  const reached = await reachAfter(agent, await agent.follow(new URL(second.headers.get('location')!, codePage.url)));
  t.true(isCallback(reached));
  t.deepEqual((await idTokenClaims(client, request, reached.url)).amr, ['pwd', 'otp']);
});

test('two sign-ins submitting the same code at once: exactly one gets in', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const { as, client } = await newSpa();
  const code = await codeAt(secret, step);
  const agents = [new UserAgent(), new UserAgent(), new UserAgent()];
  const pages = await Promise.all(agents.map(async (agent) => passwordStep(agent, await authorizationRequest(as, client.client_id), user.email)));
  const results = await Promise.all(agents.map((agent, index) => submitCode(agent, pages[index]!, code)));
  t.is(results.filter(isCallback).length, 1);
  t.is(results.filter((result) => result.response.status === 401).length, 2);
});

test('two sign-ins submitting the same recovery code at once: exactly one gets in, and the code is spent once', async (t) => {
  t.timeout(120_000);
  const { user, recoveryCodes } = await enrolledUser();
  const { as, client } = await newSpa();
  const recoveryCode = recoveryCodes[0]!;
  const agents = [new UserAgent(), new UserAgent()];
  const pages = await Promise.all(agents.map(async (agent) => {
    const codePage = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
    return reach(agent, new URL(`${codePage.url.pathname}?method=recovery`, codePage.url));
  }));
  const results = await Promise.all(agents.map((agent, index) => submitCode(agent, pages[index]!, recoveryCode, 'recovery')));
  t.is(results.filter(isCallback).length, 1);
  t.is(results.filter((result) => result.response.status === 401).length, 1);
  t.is((await server.runtime.secondFactor.status(user.id)).recoveryCodesLeft, 9);
  t.is((await auditOf(user.id, 'recovery_code.used')).length, 1);
});

test('one time step of clock drift either way is accepted, two steps are not', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const { as, client } = await newSpa();
  const tryStep = async (offset: number): Promise<Reached> => {
    for (;;) {
      // Each probe on its own: no earlier accepted code stands in the way.
      await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { totpLastStep: null } });
      const agent = new UserAgent();
      const page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
      const step = currentStep();
      const answer = await submitCode(agent, page, await codeAt(secret, step + offset));
      // The same step before and after: the server checked the code in the step it was offset from. A step
      // boundary in between leaves the probe saying nothing, and it is made again (the next step has just begun).
      if (currentStep() === step) return answer;
    }
  };
  t.true(isCallback(await tryStep(-1)), 'the previous step');
  t.true(isCallback(await tryStep(+1)), 'the next step');
  t.is((await tryStep(-2)).response.status, 401, 'two steps back');
  t.is((await tryStep(+2)).response.status, 401, 'two steps ahead');
});

test('a recovery code signs in once (case, dashes and spaces do not matter), not twice', async (t) => {
  t.timeout(120_000);
  const { user, recoveryCodes } = await enrolledUser();
  const { as, client } = await newSpa();
  const recoveryCode = recoveryCodes[3]!;

  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const codePage = await passwordStep(agent, request, user.email);
  const recoveryPage = await reach(agent, new URL(`${codePage.url.pathname}?method=recovery`, codePage.url));
  t.regex(recoveryPage.html, /<label for="code">Recovery code<\/label>/);
  t.regex(recoveryPage.html, /name="method" value="recovery"/);
  const done = await submitCode(agent, recoveryPage, ` ${recoveryCode.toUpperCase().replaceAll('-', ' ')} `, 'recovery');
  t.true(isCallback(done), `ended at ${done.url} ${done.html.slice(0, 300)}`);
  const claims = await idTokenClaims(client, request, done.url);
  t.deepEqual(claims.amr, ['pwd', 'otp']);
  t.is(claims.acr, ACR_SECOND_FACTOR);

  const again = new UserAgent();
  const page = await passwordStep(again, await authorizationRequest(as, client.client_id), user.email);
  const refused = await submitCode(again, page, recoveryCode, 'recovery');
  t.is(refused.response.status, 401);
  t.regex(refused.html, /not right, or it was already used/);
  t.is((await server.runtime.secondFactor.status(user.id)).recoveryCodesLeft, 9);
  const used = await auditOf(user.id, 'recovery_code.used');
  t.is(used.length, 1);
  t.is(used[0]!.detail.remaining, 9);
  t.false(JSON.stringify(used).includes(recoveryCode.slice(0, 4) + '-'), 'no recovery code in the audit trail');
});

test('recovery codes are stored as SHA-256 hashes; new ones, asked with a code, replace the old', async (t) => {
  t.timeout(120_000);
  const { user, secret, recoveryCodes } = await enrolledUser();
  const rows = await server.runtime.database.prisma.recoveryCode.findMany({ where: { userId: user.id } });
  t.is(rows.length, 10);
  t.deepEqual(new Set(rows.map((row) => row.codeHash)), new Set(recoveryCodes.map((code) => hashRecoveryCode(normalizeRecoveryCode(code)!))));
  for (const row of rows) t.regex(row.codeHash, /^[0-9a-f]{64}$/);

  const step = currentStep();
  const agent = new UserAgent();
  const status = await signInToConsole(agent, user.email, await codeAt(secret, step), '/account/two-factor');
  t.is(status.url.pathname, '/account/two-factor');
  const wrong = await post(agent, `${server.issuer}/account/two-factor/recovery-codes`, { csrf: formField(status.html, 'csrf'), code: await wrongCode(secret) });
  t.is(wrong.response.status, 401);
  t.regex(wrong.html, /id="regenerate-error"/);
  const renewed = await post(agent, `${server.issuer}/account/two-factor/recovery-codes`, { csrf: formField(status.html, 'csrf'), code: await codeAt(secret, step + 1) });
  t.is(renewed.response.status, 200);
  const fresh = recoveryCodesIn(renewed.html);
  t.is(fresh.length, 10);
  t.false(fresh.some((code) => recoveryCodes.includes(code)));
  t.false((await server.runtime.secondFactor.useRecoveryCode(user.id, recoveryCodes[0]!)).ok, 'an old code no longer works');
  t.true((await server.runtime.secondFactor.useRecoveryCode(user.id, fresh[0]!)).ok, 'a new one does');
  t.is((await auditOf(user.id, 'recovery_codes.regenerated')).length, 1);
  await smtp.mailTo(user.email, NOTICE_SUBJECT); // enrollment's notice
  const notice = await noticeTo(t, user.email);
  t.regex(notice, /New recovery codes were made for your account at .+ The old recovery codes no longer work\./);
  t.regex(notice, /make new recovery codes on your account page/);
  t.false(fresh.some((code) => notice.includes(code)), 'no recovery code is mailed');
});

test('a code spent in the account console (new recovery codes, turning it off) is audited as at sign-in: recovery_code.used or second_factor.used', async (t) => {
  t.timeout(120_000);
  const { user, secret, recoveryCodes } = await enrolledUser();
  const step = currentStep();
  const agent = new UserAgent();
  const status = await signInToConsole(agent, user.email, await codeAt(secret, step), '/account/two-factor');
  const csrf = formField(status.html, 'csrf');
  const spentHere = async (action: string, during: string) => (await auditOf(user.id, action)).filter((event) => event.detail.during === during);

  const byRecoveryCode = await post(agent, `${server.issuer}/account/two-factor/recovery-codes`, { csrf, code: recoveryCodes[0]! });
  t.is(byRecoveryCode.response.status, 200);
  const [recoveryUsed, ...moreRecoveryUsed] = await spentHere('recovery_code.used', 'recovery_codes');
  t.deepEqual(moreRecoveryUsed, []);
  t.like(recoveryUsed!, { outcome: 'success', subjectUserId: user.id, subjectEmail: user.email, ip: '127.0.0.1', detail: { remaining: 9, during: 'recovery_codes' } });

  const byAuthenticator = await post(agent, `${server.issuer}/account/two-factor/recovery-codes`, { csrf, code: await codeAt(secret, step + 1) });
  t.is(byAuthenticator.response.status, 200);
  const [totpUsed, ...moreTotpUsed] = await spentHere('second_factor.used', 'recovery_codes');
  t.deepEqual(moreTotpUsed, []);
  t.like(totpUsed!, { outcome: 'success', subjectUserId: user.id, detail: { method: 'totp', during: 'recovery_codes' } });
  t.deepEqual(await spentHere('recovery_code.used', 'recovery_codes'), [recoveryUsed], 'an authenticator code is not recorded as a recovery code');

  const newest = recoveryCodesIn(byAuthenticator.html);
  const off = await post(agent, `${server.issuer}/account/two-factor/disable`, { csrf, password: PASSWORD, code: newest[0]! });
  t.regex(off.html, /Two-factor authentication is off\./);
  const [disableUsed, ...moreDisableUsed] = await spentHere('recovery_code.used', 'disable');
  t.deepEqual(moreDisableUsed, []);
  t.like(disableUsed!, { outcome: 'success', subjectUserId: user.id, detail: { remaining: 9, during: 'disable' } });
  const trail = JSON.stringify(await auditOf(user.id, '*'));
  for (const code of [recoveryCodes[0]!, newest[0]!]) t.false(trail.includes(code) || trail.includes(normalizeRecoveryCode(code)!), 'no recovery code in the audit trail');
});

test('the secret is sealed at rest: not the base32 secret, a JWE that opens with the configured key', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const row = await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true } });
  const stored = row.totpSecret!;
  t.false(stored.includes(secret));
  t.is(stored.split('.').length, 5, 'compact JWE');
  const header = decodeProtectedHeader(stored);
  t.like(header, { alg: 'dir', enc: 'A256GCM' });
  t.truthy(header.kid);
  const [key] = server.runtime.secrets.encryptionKeys;
  const { plaintext } = await compactDecrypt(stored, key!);
  t.is(new TextDecoder().decode(plaintext), secret);
  await t.throwsAsync(compactDecrypt(stored, new Uint8Array(32)));
});

test('sealing: the first key seals, every key opens (rotation); a value does not open in another context or without its key', async (t) => {
  const oldKey = crypto.getRandomValues(new Uint8Array(32));
  const newKey = crypto.getRandomValues(new Uint8Array(32));
  const sealedBefore = await new Sealer([oldKey]).seal('JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP', 'totp:a');
  const rotated = new Sealer([newKey, oldKey]);
  t.is(await rotated.open(sealedBefore, 'totp:a'), 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP');
  const sealedAfter = await rotated.seal('secret', 'totp:a');
  t.not(decodeProtectedHeader(sealedAfter).kid, decodeProtectedHeader(sealedBefore).kid);
  t.is(await new Sealer([newKey]).open(sealedAfter, 'totp:a'), 'secret');
  await t.throwsAsync(new Sealer([newKey]).open(sealedBefore, 'totp:a'), { name: 'SealedValueError' });
  await t.throwsAsync(rotated.open(sealedBefore, 'totp:b'), { name: 'SealedValueError' });
  const [protectedHeader, encryptedKey, iv, ciphertext, tag] = sealedAfter.split('.');
  const tampered = [protectedHeader, encryptedKey, iv, ciphertext!.slice(0, -2) + (ciphertext!.endsWith('AA') ? 'BA' : 'AA'), tag].join('.');
  await t.throwsAsync(rotated.open(tampered, 'totp:a'), { name: 'SealedValueError' });
});

test('a secret sealed with an older key is re-sealed with the newest at the next accepted code, so the old key can be retired', async (t) => {
  t.timeout(120_000);
  const { prisma } = server.runtime.database;
  const keyA = crypto.getRandomValues(new Uint8Array(32));
  const keyB = crypto.getRandomValues(new Uint8Array(32));
  const options = { issuerName: 'gatehouse.test', requiredRoles: [] };
  const stored = async () => (await prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true } })).totpSecret!;
  const user = await createUser(server);

  // ENCRYPTION_KEYS=A: enrolled.
  const withA = new SecondFactorService(prisma, new Sealer([keyA]), options);
  const { secret } = (await withA.startEnrollment(user.id))!;
  const step = currentStep();
  t.true((await withA.confirmEnrollment(user.id, await codeAt(secret, step))).ok);
  await usedStepBefore(user.email, step);
  const sealedWithA = await stored();
  t.is(decodeProtectedHeader(sealedWithA).kid, keyIdOf(keyA));

  // Restarted with ENCRYPTION_KEYS=B,A: B seals, A still opens. A refused code changes nothing.
  const rotated = new SecondFactorService(prisma, new Sealer([keyB, keyA]), options);
  t.false((await rotated.verifyCode(user.id, await wrongCode(secret))).ok);
  t.is(await stored(), sealedWithA);
  t.true((await rotated.verifyCode(user.id, await codeAt(secret, step))).ok, 'signing in with a code');
  const resealed = await stored();
  t.is(decodeProtectedHeader(resealed).kid, keyIdOf(keyB));
  t.is(await new Sealer([keyB]).open(resealed, `totp:${user.id}`), secret, 'the stored secret opens with B alone');

  // ENCRYPTION_KEYS=B (A retired): codes still check, and a secret sealed with the newest key is left as it is.
  const retired = new SecondFactorService(prisma, new Sealer([keyB]), options);
  t.true((await retired.verifyCode(user.id, await codeAt(secret, step + 1))).ok);
  t.is(await stored(), resealed);
});

// --- turning it off ------------------------------------------------------------------------------

test('turning it off asks for the password and a code; a wrong password spends no code; then login asks only the password', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const agent = new UserAgent();
  const status = await signInToConsole(agent, user.email, await codeAt(secret, step), '/account/two-factor');
  t.regex(status.html, /action="\/account\/two-factor\/disable"/);
  const csrf = formField(status.html, 'csrf');
  const disable = (fields: Record<string, string>) => post(agent, `${server.issuer}/account/two-factor/disable`, { csrf, ...fields });
  const nextCode = await codeAt(secret, step + 1);

  const wrongPassword = await disable({ password: 'not my password at all', code: nextCode });
  t.is(wrongPassword.response.status, 400);
  t.regex(wrongPassword.html, /id="password-error"/);
  const wrongCodeAnswer = await disable({ password: PASSWORD, code: await wrongCode(secret) });
  t.is(wrongCodeAnswer.response.status, 401);
  t.regex(wrongCodeAnswer.html, /id="disable-error"/);
  const noCode = await disable({ password: PASSWORD, code: '' });
  t.is(noCode.response.status, 401);
  t.true((await server.runtime.secondFactor.status(user.id)).enabled);

  const off = await disable({ password: PASSWORD, code: nextCode });
  t.is(off.url.pathname, '/account/two-factor');
  t.regex(off.html, /Two-factor authentication is off\./);
  const row = await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true, totpEnabledAt: true, totpLastStep: true } });
  t.deepEqual(row, { totpSecret: null, totpEnabledAt: null, totpLastStep: null });
  t.is(await server.runtime.database.prisma.recoveryCode.count({ where: { userId: user.id } }), 0);
  const removed = await auditOf(user.id, 'second_factor.removed');
  t.is(removed.length, 1);
  const spent = (await auditOf(user.id, 'second_factor.used')).filter((event) => event.detail.during === 'disable');
  t.is(spent.length, 1, 'the code that turned it off is audited');
  t.like(spent[0]!, { outcome: 'success', detail: { method: 'totp' } });
  t.deepEqual((await auditOf(user.id, 'reauthentication.failed')).map((event) => event.detail.purpose), ['disable_second_factor']);
  await smtp.mailTo(user.email, NOTICE_SUBJECT); // enrollment's notice
  const notice = await noticeTo(t, user.email);
  t.regex(notice, /Two-factor authentication was turned off for your account at [^ ]+ on [\d-]+ [\d:]+ UTC\. Signing in now asks only for the password\./);
  t.regex(notice, /turn two-factor authentication back on/);

  const { as, client } = await newSpa();
  const request = await authorizationRequest(as, client.client_id);
  const reached = await passwordStep(new UserAgent(), request, user.email);
  t.true(isCallback(reached));
  t.deepEqual((await idTokenClaims(client, request, reached.url)).amr, ['pwd']);
});

// --- required: acr_values, client setting, role (enrollment inside the sign-in) -------------------

/** On the enrollment step of a sign-in: confirms with a code, checks the recovery codes page, continues. */
async function enrollDuringSignIn(t: import('ava').ExecutionContext, agent: UserAgent, page: Reached): Promise<{ secret: string; done: Reached; recoveryCodes: string[] }> {
  const secret = setupKey(page.html);
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  const step = currentStep();
  const confirmed = await post(agent, new URL(`/interaction/${uid}/second-factor/enroll`, page.url), { csrf: formField(page.html, 'csrf'), code: await codeAt(secret, step) });
  t.is(confirmed.response.status, 200);
  const recoveryCodes = recoveryCodesIn(confirmed.html);
  t.is(recoveryCodes.length, 10);
  t.regex(confirmed.html, /action="\/interaction\/[\w-]+\/second-factor\/continue"/);
  const done = await reachAfter(agent, await agent.submit(new URL(`/interaction/${uid}/second-factor/continue`, page.url), { csrf: formField(confirmed.html, 'csrf') }));
  return { secret, done, recoveryCodes };
}

test('acr_values=loa:2 from a password-only person: set up inside the sign-in (QR, key, code), recovery codes once, then amr pwd+otp, acr loa:2', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id, { acr_values: ACR_SECOND_FACTOR });
  const page = await passwordStep(agent, request, user.email);
  t.is(page.response.status, 200);
  t.regex(page.url.pathname, /\/second-factor$/);
  t.regex(page.html, /<h1 id="page-title">Set up two-factor authentication<\/h1>/);
  t.regex(page.html, /<img class="qr" src="data:image\/png;base64,/);
  const secret = setupKey(page.html);
  t.is(setupKey((await reach(agent, page.url)).html), secret, 'a reload shows the same secret');
  t.false((await server.runtime.secondFactor.status(user.id)).enabled, 'not on until confirmed');

  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  const wrong = await post(agent, new URL(`/interaction/${uid}/second-factor/enroll`, page.url), { csrf: formField(page.html, 'csrf'), code: await wrongCode(secret) });
  t.is(wrong.response.status, 401);
  t.is(setupKey(wrong.html), secret);
  const skipped = await reach(agent, new URL(`/interaction/${uid}/second-factor/continue`, page.url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ csrf: formField(page.html, 'csrf') }).toString(),
  });
  t.false(isCallback(skipped), '"continue" before confirming does not finish the sign-in');

  const { done } = await enrollDuringSignIn(t, agent, page);
  t.true(isCallback(done), `ended at ${done.url}`);
  const claims = await idTokenClaims(client, request, done.url);
  t.deepEqual(claims.amr, ['pwd', 'otp']);
  t.is(claims.acr, ACR_SECOND_FACTOR);
  t.true((await server.runtime.secondFactor.status(user.id)).enabled);
  const enrolled = await auditOf(user.id, 'second_factor.enrolled');
  t.is(enrolled.length, 1);
  t.is(enrolled[0]!.detail.during, 'sign_in');
});

test('acr_values that also accept loa:1 do not force the second factor', async (t) => {
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const request = await authorizationRequest(as, client.client_id, { acr_values: `${ACR_SECOND_FACTOR} ${ACR_PASSWORD}` });
  const reached = await passwordStep(new UserAgent(), request, user.email);
  t.true(isCallback(reached));
  t.is((await idTokenClaims(client, request, reached.url)).acr, ACR_PASSWORD);
});

test('a client with require_second_factor makes a password-only person set it up; an enrolled person is asked the code', async (t) => {
  t.timeout(120_000);
  const { as, client, metadata } = await newSpa({ requireSecondFactor: true });
  t.is(metadata!.require_second_factor, true);
  const newcomer = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const page = await passwordStep(agent, request, newcomer.email);
  t.regex(page.html, /Set up two-factor authentication/);
  const { done } = await enrollDuringSignIn(t, agent, page);
  t.true(isCallback(done));
  t.is((await idTokenClaims(client, request, done.url)).acr, ACR_SECOND_FACTOR);

  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const other = new UserAgent();
  const codePage = await passwordStep(other, await authorizationRequest(as, client.client_id), user.email);
  t.regex(codePage.html, /autocomplete="one-time-code"/);
  t.true(isCallback(await submitCode(other, codePage, await codeAt(secret, step))));
});

test('client metadata require_second_factor must be a boolean', async (t) => {
  const { metadata } = await registerSpa(server);
  const refused = await t.throwsAsync(server.runtime.provider.Client.validate({ ...metadata, require_second_factor: 'yes' } as never), { message: 'invalid_client_metadata' });
  t.regex(String((refused as { error_description?: string } | undefined)?.error_description), /require_second_factor/);
  await t.notThrowsAsync(server.runtime.provider.Client.validate({ ...metadata, require_second_factor: false } as never));
  await t.throwsAsync(server.runtime.clients.create({ name: 'Service', type: 'service', requireSecondFactor: true }), { name: 'ClientError' });
});

test('a person with a role in SECOND_FACTOR_REQUIRED_ROLES (admin) sets it up when signing in to any client', async (t) => {
  t.timeout(120_000);
  const admin = await server.runtime.users.create({ email: `admin-${crypto.randomUUID()}@example.com`, password: PASSWORD, emailVerified: true, roles: ['admin'] });
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const page = await passwordStep(agent, request, admin.email);
  t.regex(page.html, /Set up two-factor authentication/);
  const { done } = await enrollDuringSignIn(t, agent, page);
  t.true(isCallback(done));
  t.deepEqual((await idTokenClaims(client, request, done.url)).amr, ['pwd', 'otp']);

  const ops = `ops-${crypto.randomUUID().slice(0, 8)}`;
  await server.runtime.roles.create(ops, undefined);
  const other = await server.runtime.users.create({ email: `ops-${crypto.randomUUID()}@example.com`, password: PASSWORD, emailVerified: true, roles: [ops] });
  t.true(isCallback(await passwordStep(new UserAgent(), await authorizationRequest(as, client.client_id), other.email)), 'a role not listed asks nothing more');
});

// --- step-up of a session signed in with the password only ---------------------------------------

test('step-up that must set up the second factor asks the password of the signed-in account first, then single sign-on carries loa:2', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const relaxed = await newSpa();
  const agent = new UserAgent();
  const first = await passwordStep(agent, await authorizationRequest(relaxed.as, relaxed.client.client_id), user.email);
  t.true(isCallback(first));

  const strict = await newSpa({ requireSecondFactor: true });
  const request = await authorizationRequest(strict.as, strict.client.client_id);
  // A signed-in browser (perhaps borrowed) cannot enroll an authenticator on the session alone.
  const login = await reach(agent, request.url);
  t.regex(login.url.pathname, /^\/interaction\/[\w-]+$/);
  t.regex(login.html, /name="password"/);
  t.regex(login.html, new RegExp(`id="email" name="email" type="email"[^>]*value="${user.email.replaceAll('.', '\\.')}"`), 'the signed-in account is filled in');
  const uid = /\/interaction\/([\w-]+)/.exec(login.url.pathname)![1]!;
  const enrollDirectly = await agent.request(new URL(`/interaction/${uid}/second-factor`, login.url));
  t.is(enrollDirectly.status, 303, 'the step is not reachable without the password');
  t.is(new URL(enrollDirectly.headers.get('location')!, login.url).pathname, `/interaction/${uid}`);
  t.is((await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true } })).totpSecret, null, 'no secret was made');

  const stepUp = await reachAfter(agent, await agent.submit(new URL(`${login.url.pathname}/login`, login.url), {
    csrf: formField(login.html, 'csrf'), email: user.email, password: PASSWORD,
  }));
  t.regex(stepUp.url.pathname, /^\/interaction\/[\w-]+\/second-factor$/);
  t.regex(stepUp.html, /Set up two-factor authentication/);
  const { done } = await enrollDuringSignIn(t, agent, stepUp);
  t.true(isCallback(done));
  const claims = await idTokenClaims(strict.client, request, done.url);
  t.is(claims.sub, user.id);
  t.is(claims.acr, ACR_SECOND_FACTOR);

  const again = await authorizationRequest(relaxed.as, relaxed.client.client_id);
  const sso = await reach(agent, again.url);
  t.true(isCallback(sso), 'no prompt');
  t.is((await idTokenClaims(relaxed.client, again, sso.url)).acr, ACR_SECOND_FACTOR);
  t.regex(await noticeTo(t, user.email), /Two-factor authentication was turned on/, 'enrolling inside a sign-in is mailed too');
});

test('step-up: once it is on, a browser signed in with the password alone is asked the code (not the password); the browser that turned it on counts as signed in with both', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  t.true(isCallback(await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email)));
  const enroller = new UserAgent();
  const { secret } = await enrollOnAccountPage(enroller, user.email, true);
  const enrollerRequest = await authorizationRequest(as, client.client_id);
  const enrollerSignIn = await reach(enroller, enrollerRequest.url);
  t.true(isCallback(enrollerSignIn), 'password and code were given in that browser, and the app\'s consent is remembered: nothing is asked');
  const enrollerClaims = await idTokenClaims(client, enrollerRequest, enrollerSignIn.url);
  t.deepEqual(enrollerClaims.amr, ['pwd', 'otp']);
  t.is(enrollerClaims.acr, 'urn:gatehouse:loa:2');

  const step = currentStep();
  const request = await authorizationRequest(as, client.client_id);
  const page = await reach(agent, request.url);
  t.regex(page.url.pathname, /\/second-factor$/);
  t.regex(page.html, /autocomplete="one-time-code"/);
  t.regex(page.html, /href="\/interaction\/[\w-]+\?account=other"/, 'a way to sign in as someone else');
  const done = await submitCode(agent, page, await codeAt(secret, step));
  t.true(isCallback(done));
  t.deepEqual((await idTokenClaims(client, request, done.url)).amr, ['pwd', 'otp']);
});

test('turning it on in the account console gives this browser a new session identifier: the old cookie signs nobody in, this browser carries on at loa:2', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const agent = new UserAgent();
  await signInToAccount(server, agent, { email: user.email, password: PASSWORD }, '/account/two-factor');
  const before = agent.cookie('_session')!;
  const beforeSignature = agent.cookie('_session.sig')!;
  const { provider } = server.runtime;
  const { uid } = (await provider.Session.find(before))!;

  await enrollOnAccountPage(agent, user.email);
  const after = agent.cookie('_session');
  t.truthy(after);
  t.not(after, before);
  t.is(await provider.Session.find(before), undefined, 'the old identifier names no session');
  const session = await provider.Session.find(after!);
  t.like(session, { uid, accountId: user.id, acr: ACR_SECOND_FACTOR, amr: ['pwd', 'otp'] });
  t.deepEqual((await server.runtime.accountSessions.list(user.id)).map((listed) => listed.uid), [uid], 'still one session, the same one for the person');

  // Someone who copied the cookie before (both halves, validly signed) is not signed in with it, at any level.
  const thief = new UserAgent();
  thief.plantCookie('_session', before);
  thief.plantCookie('_session.sig', beforeSignature);
  const refused = await thief.request(`${server.issuer}/account/two-factor`);
  t.is(refused.status, 302);
  t.is(new URL(refused.headers.get('location')!).pathname, '/auth');
  const { as, client } = await newSpa();
  const stolen = await reach(thief, (await authorizationRequest(as, client.client_id, { acr_values: ACR_SECOND_FACTOR })).url);
  t.false(isCallback(stolen));
  t.regex(stolen.html, /name="password"/);

  // This browser: the account page without a step-up, and single sign-on at loa:2 without a code.
  const page = await reach(agent, `${server.issuer}/account/two-factor`);
  t.is(page.url.pathname, '/account/two-factor');
  t.regex(page.html, /Two-factor authentication is <strong>on<\/strong>/);
  const request = await authorizationRequest(as, client.client_id, { acr_values: ACR_SECOND_FACTOR });
  const signedIn = await reachAfter(agent, await agent.follow(request.url));
  t.true(isCallback(signedIn), `ended at ${signedIn.url}`);
  t.is((await idTokenClaims(client, request, signedIn.url)).acr, ACR_SECOND_FACTOR);
});

// --- lockout, limits, CSRF, state ----------------------------------------------------------------

test('repeated wrong codes lock the second factor with 429 and Retry-After, even for the right code; the lock is audited', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  let page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
  const threshold = server.runtime.config.limits.lockout.threshold;
  for (let attempt = 1; attempt < threshold; attempt += 1) {
    page = await submitCode(agent, page, await wrongCode(secret));
    t.is(page.response.status, 401, `attempt ${attempt}`);
  }
  const locked = await submitCode(agent, page, await wrongCode(secret));
  t.is(locked.response.status, 429);
  t.true(Number(locked.response.headers.get('retry-after')) > 0);
  t.regex(locked.html, /paused/);

  const step = currentStep();
  const fresh = new UserAgent();
  const codePage = await passwordStep(fresh, await authorizationRequest(as, client.client_id), user.email);
  t.is(codePage.response.status, 200, 'the password still works: only the second factor is locked');
  const refused = await submitCode(fresh, codePage, await codeAt(secret, step));
  t.is(refused.response.status, 429);
  t.truthy(refused.response.headers.get('retry-after'));

  const failures = await auditOf(user.id, 'second_factor.failed');
  t.true(failures.length >= threshold);
  t.true(failures.some((event) => typeof event.detail.lockedSeconds === 'number'));
  t.is((await auditOf(user.id, 'second_factor.locked_out')).length, 1, 'the lock itself is one event');
});

test('every second-factor form needs its CSRF token', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
  const step = currentStep();
  const forged = await agent.request(new URL(`${page.url.pathname}`, page.url), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ code: await codeAt(secret, step) }).toString(),
  });
  t.is(forged.status, 403);

  const consoleAgent = new UserAgent();
  await signInToConsole(consoleAgent, user.email, await codeAt(secret, step), '/account/two-factor');
  for (const action of ['start', 'confirm', 'recovery-codes', 'disable']) {
    const response = await consoleAgent.request(`${server.issuer}/account/two-factor/${action}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ password: PASSWORD, code: '123456', csrf: 'forged' }).toString(),
    });
    t.is(response.status, 403, action);
  }
  t.true((await server.runtime.secondFactor.status(user.id)).enabled);
});

test('after the password, the pending sign-in lives on the server: the page carries no account and the resume URL does not skip the code', async (t) => {
  t.timeout(120_000);
  const { user } = await enrolledUser();
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
  const hidden = [...page.html.matchAll(/<input type="hidden" name="(\w+)"/g)].map((match) => match[1]);
  t.deepEqual([...new Set(hidden)].sort(), ['csrf', 'method']);
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  const resumed = await reach(agent, `${server.issuer}/auth/${uid}`);
  t.false(isCallback(resumed) && resumed.url.searchParams.has('code'), 'no authorization code without the second factor');

  // Another browser cannot use this sign-in's state.
  const stranger = await reach(new UserAgent(), page.url);
  t.not(stranger.response.status, 200);
});

test('without a password first, the second-factor step sends back to the login page', async (t) => {
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const login = await reach(agent, (await authorizationRequest(as, client.client_id)).url);
  const step = await agent.request(new URL(`${login.url.pathname}/second-factor`, login.url));
  t.is(step.status, 303);
  t.is(new URL(step.headers.get('location')!, login.url).pathname, login.url.pathname);
});

// --- the command line ----------------------------------------------------------------------------

test('gatehouse clients create --require-second-factor and users create --role R set what login enforces', async (t) => {
  t.timeout(300_000);
  const { config } = server.runtime;
  const environment = cleanEnvironment({
    DATA_DIR: config.dataDir, KEYS_DIR: config.keysDir, DATABASE_URL: config.databaseUrl, LOG_LEVEL: 'warn', NODE_ENV: 'test',
  });
  const gatehouse = (args: string[]) => runNode([path.join('bin', 'gatehouse.js'), ...args], environment, 180_000);
  const created = await gatehouse(['clients', 'create', '--name', 'Admin console', '--type', 'spa', '--redirect-uri', REDIRECT_URI, '--require-second-factor']);
  t.is(created.code, 0, created.stderr);
  t.is((JSON.parse(created.stdout) as Record<string, unknown>).require_second_factor, true);

  const email = `cli-admin-${crypto.randomUUID()}@example.com`;
  if (!await server.runtime.roles.exists('ops')) await server.runtime.roles.create('ops', 'Operations');
  const user = await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD, '--verified', '--role', 'admin', '--role', 'ops']);
  t.is(user.code, 0, user.stderr);
  t.deepEqual((JSON.parse(user.stdout) as { roles: string[] }).roles, ['admin', 'ops']);
  const stored = await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { email }, select: { roles: true } });
  t.deepEqual(stored.roles, ['admin', 'ops']);
  t.deepEqual(await server.runtime.secondFactor.loginRequirement((await server.runtime.users.findByEmail(email))!.id), { enabled: false, requiredByRole: true });

  const badRole = await gatehouse(['users', 'create', '--email', `x-${email}`, '--password', PASSWORD, '--role', 'not a role!']);
  t.is(badRole.code, 2);
  t.regex(badRole.stderr, /--role/);
});

test('the password asked to turn it on or off is counted per account and never forgiven: past the limit, 429 with Retry-After even for the right one', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const agent = new UserAgent();
  const status = await signInToConsole(agent, user.email, await codeAt(secret, step), '/account/two-factor');
  const csrf = formField(status.html, 'csrf');
  const { points } = server.runtime.config.limits.passwordCheckPerAccount;
  const { threshold } = server.runtime.config.limits.lockout;
  // Fewer wrong passwords in a row than the sign-in lockout takes: only password-check-account can refuse.
  const wrongInARow = Math.min(threshold - 1, points - 2);
  let checks = 1; // turning it on in enrolledUser()
  for (let attempt = 1; attempt <= wrongInARow; attempt += 1, checks += 1) {
    t.is((await post(agent, `${server.issuer}/account/two-factor/disable`, { csrf, password: 'a wrong password', code: '123456' })).response.status, 400, `wrong password ${attempt}`);
  }
  const off = await post(agent, `${server.issuer}/account/two-factor/disable`, { csrf, password: PASSWORD, code: await codeAt(secret, step + 1) });
  checks += 1;
  t.regex(off.html, /Two-factor authentication is off\./);
  // Turning it on again: each right password is counted too, and the earlier checks were not forgotten.
  const start = () => post(agent, `${server.issuer}/account/two-factor/start`, { csrf, password: PASSWORD });
  for (; checks < points; checks += 1) t.is((await start()).response.status, 200, `check ${checks + 1} of ${points}`);
  const refused = await start();
  t.is(refused.response.status, 429);
  t.true(Number(refused.response.headers.get('retry-after')) > 0);
  t.false(refused.html.includes('id="setup-key"'));
});

test('step-up: after "sign out everywhere", sign-ins started before it can no longer skip the password', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  t.true(isCallback(await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email)));
  const { secret } = await enrollOnAccountPage(new UserAgent(), user.email, true);
  // Two sign-ins started by the browser signed in with the password: one has reached the code page, the other only its start.
  const codePage = await reach(agent, (await authorizationRequest(as, client.client_id)).url);
  t.regex(codePage.url.pathname, /^\/interaction\/[\w-]+\/second-factor$/, 'the session stood for the password');
  const started = await agent.request((await authorizationRequest(as, client.client_id)).url);
  const startedAt = new URL(started.headers.get('location')!, server.issuer);
  t.regex(startedAt.pathname, /^\/interaction\/[\w-]+$/);

  const ended = await server.runtime.accountSessions.endAll(user.id);
  t.true(ended.sessions >= 1);

  const step = currentStep();
  const submitted = await submitCode(agent, codePage, await codeAt(secret, step));
  t.false(isCallback(submitted), 'the code alone does not sign in');
  t.false(submitted.html.includes('autocomplete="one-time-code"'));
  const opened = await reach(agent, startedAt);
  t.false(opened.url.pathname.endsWith('/second-factor'), 'the other sign-in is not sent to the code either');
  t.false(opened.html.includes('autocomplete="one-time-code"'));
  t.is((await auditOf(user.id, 'second_factor.used')).length, 0);
  const fresh = await reach(agent, (await authorizationRequest(as, client.client_id)).url);
  t.regex(fresh.html, /name="password"/, 'a new sign-in asks the password');
});

// --- a sign-in paused after the password is bound to the account's credentials ---------------------------

const NEW_PASSWORD = 'velvet harbour lantern quartz';

/** The owner sets a new password through the emailed link, in a browser of their own. */
async function resetPasswordByEmail(email: string): Promise<void> {
  const agent = new UserAgent();
  const forgot = await reach(agent, `${server.issuer}/password/forgot`);
  await post(agent, `${server.issuer}/password/forgot`, { csrf: formField(forgot.html, 'csrf'), email });
  const form = await reach(agent, linkIn(await smtp.mailTo(email, 'Reset your password')));
  const done = await post(agent, `${server.issuer}/password/reset`, {
    csrf: formField(form.html, 'csrf'), token: formField(form.html, 'token'), password: NEW_PASSWORD, confirm: NEW_PASSWORD,
  });
  if (done.response.status !== 200) throw new Error(`reset answered ${done.response.status}`);
}

async function staleSignInsAudited(userId: string, during: string) {
  return (await auditOf(userId, 'login.failed')).filter((event) => event.detail.reason === 'credentials_changed' && event.detail.during === during);
}

test('a sign-in paused at enrollment ends when the owner resets the password: the old password\'s code enrolls nothing and "continue" signs nobody in', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const attacker = new UserAgent();
  const page = await passwordStep(attacker, await authorizationRequest(as, client.client_id, { acr_values: ACR_SECOND_FACTOR }), user.email);
  t.regex(page.html, /Set up two-factor authentication/);
  const secret = setupKey(page.html);
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;

  await resetPasswordByEmail(user.email);

  const step = currentStep();
  const enrolled = await post(attacker, new URL(`/interaction/${uid}/second-factor/enroll`, page.url), { csrf: formField(page.html, 'csrf'), code: await codeAt(secret, step) });
  t.deepEqual(recoveryCodesIn(enrolled.html), [], 'no recovery codes');
  t.regex(enrolled.html, /name="password"/, 'back to the password');
  t.false((await server.runtime.secondFactor.status(user.id)).enabled, 'the attacker\'s authenticator is not the account\'s second factor');
  const continued = await post(attacker, new URL(`/interaction/${uid}/second-factor/continue`, page.url), { csrf: formField(page.html, 'csrf') });
  t.false(isCallback(continued));
  t.is((await staleSignInsAudited(user.id, 'enrollment')).length, 1, 'the refusal is audited');
  t.is((await auditOf(user.id, 'second_factor.enrolled')).length, 0);
});

test('a sign-in paused at enrollment cannot finish once enrolled if the password changes before "continue"', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const page = await passwordStep(agent, await authorizationRequest(as, client.client_id, { acr_values: ACR_SECOND_FACTOR }), user.email);
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  const step = currentStep();
  const confirmed = await post(agent, new URL(`/interaction/${uid}/second-factor/enroll`, page.url), { csrf: formField(page.html, 'csrf'), code: await codeAt(setupKey(page.html), step) });
  t.is(recoveryCodesIn(confirmed.html).length, 10, 'enrolling does not make its own sign-in stale');

  await server.runtime.users.setPassword(user.id, NEW_PASSWORD);
  const continued = await post(agent, new URL(`/interaction/${uid}/second-factor/continue`, page.url), { csrf: formField(confirmed.html, 'csrf') });
  t.false(isCallback(continued));
  t.regex(continued.html, /name="password"/);
  t.is((await staleSignInsAudited(user.id, 'recovery_codes')).length, 1);
});

test('a sign-in waiting for the code ends when the owner changes the password on the account page, or signs out everywhere: a right code no longer signs in', async (t) => {
  t.timeout(180_000);
  const { user, secret, recoveryCodes } = await enrolledUser();
  const { as, client } = await newSpa();
  const attacker = new UserAgent();
  const codePage = await passwordStep(attacker, await authorizationRequest(as, client.client_id), user.email);
  t.regex(codePage.url.pathname, /\/second-factor$/);

  const owner = new UserAgent();
  const step = currentStep();
  const account = await signInToConsole(owner, user.email, await codeAt(secret, step), '/account/password');
  t.is(account.url.pathname, '/account/password');
  const changed = await post(owner, `${server.issuer}/account/password`, {
    csrf: formField(account.html, 'csrf'), current_password: PASSWORD, password: NEW_PASSWORD, confirm: NEW_PASSWORD,
  });
  t.regex(changed.html, /changed/i);

  // The next step's code: one the account has not used yet, within the accepted drift.
  const submitted = await submitCode(attacker, codePage, await codeAt(secret, step + 1));
  t.false(isCallback(submitted), 'the code alone does not sign in');
  t.regex(submitted.html, /name="password"/);
  t.is((await auditOf(user.id, 'second_factor.used')).filter((event) => event.detail.via === 'password').length, 1, 'only the owner\'s code was taken');
  t.is((await staleSignInsAudited(user.id, 'second_factor')).length, 1);

  // Paused with the new password, then the owner signs out everywhere (the sessions page, or an administrator).
  const paused = await passwordStep(attacker, await authorizationRequest(as, client.client_id), user.email, NEW_PASSWORD);
  t.regex(paused.url.pathname, /\/second-factor$/);
  await server.runtime.accountSessions.endAll(user.id);
  const other = await submitCode(attacker, paused, recoveryCodes[0]!, 'recovery');
  t.false(isCallback(other));
  t.is((await server.runtime.secondFactor.status(user.id)).recoveryCodesLeft, 10, 'the recovery code was not spent');
  t.is((await staleSignInsAudited(user.id, 'second_factor')).length, 2);
});

test('a setup started with the password cannot be confirmed, nor its secret seen, from another signed-in browser', async (t) => {
  t.timeout(120_000);
  const user = await createUser(server);
  const owner = new UserAgent();
  const ownerStatus = await signInToAccount(server, owner, { email: user.email, password: PASSWORD }, '/account/two-factor');
  const setup = await post(owner, `${server.issuer}/account/two-factor/start`, { csrf: formField(ownerStatus.html, 'csrf'), password: PASSWORD });
  const secret = setupKey(setup.html);

  const other = new UserAgent();
  const otherStatus = await signInToAccount(server, other, { email: user.email, password: PASSWORD }, '/account/two-factor');
  const step = currentStep();
  for (const code of [await wrongCode(secret), await codeAt(secret, step)]) {
    const attempt = await post(other, `${server.issuer}/account/two-factor/confirm`, { csrf: formField(otherStatus.html, 'csrf'), code });
    t.is(attempt.url.pathname, '/account/two-factor');
    t.regex(attempt.html, /Two-factor authentication is <strong>off<\/strong>/);
    t.false(attempt.html.includes('id="setup-key"'), 'the pending secret is not shown');
  }
  t.false((await server.runtime.secondFactor.status(user.id)).enabled);

  const confirmed = await post(owner, `${server.issuer}/account/two-factor/confirm`, { csrf: formField(setup.html, 'csrf'), code: await codeAt(secret, step) });
  t.is(confirmed.response.status, 200, 'the browser that gave the password confirms it');
  t.true((await server.runtime.secondFactor.status(user.id)).enabled);
});

test('cancelling the sign-in on the second-factor step forgets its pending state', async (t) => {
  t.timeout(120_000);
  const { user } = await enrolledUser();
  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
  const uid = /\/interaction\/([\w-]+)/.exec(page.url.pathname)![1]!;
  t.truthy(await server.runtime.store.get(`second-factor-step:${uid}`), 'the password step left its state');
  const cancelled = await agent.submit(new URL(`/interaction/${uid}/abort`, page.url), { csrf: formField(page.html, 'csrf') });
  t.true(isCallback({ ...cancelled, html: '' }));
  t.is(cancelled.url.searchParams.get('error'), 'access_denied');
  t.is(await server.runtime.store.get(`second-factor-step:${uid}`), undefined);
});

test('a secret whose key is no longer in ENCRYPTION_KEYS: a 503 page saying so (sign-in and account page), an error logged with the cause, never the secret', async (t) => {
  t.timeout(120_000);
  const { user, secret } = await enrolledUser();
  const step = currentStep();
  const consoleAgent = new UserAgent();
  const status = await signInToConsole(consoleAgent, user.email, await codeAt(secret, step), '/account/two-factor');
  // The same secret sealed under a key this server does not have (as after dropping the old key of a rotation).
  const resealed = await new Sealer([crypto.getRandomValues(new Uint8Array(32))]).seal(secret, `totp:${user.id}`);
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { totpSecret: resealed } });

  const { as, client } = await newSpa();
  const agent = new UserAgent();
  const page = await passwordStep(agent, await authorizationRequest(as, client.client_id), user.email);
  t.is(page.response.status, 200);
  const refused = await submitCode(agent, page, await codeAt(secret, step + 1));
  t.is(refused.response.status, 503);
  t.regex(refused.html, /<h1 id="page-title">Two-factor authentication is unavailable<\/h1>/);
  t.regex(refused.html, /Two-factor authentication cannot be checked right now; the administrator has been told\./);
  for (const action of ['recovery-codes', 'disable']) {
    const answer = await post(consoleAgent, `${server.issuer}/account/two-factor/${action}`, { csrf: formField(status.html, 'csrf'), password: PASSWORD, code: await codeAt(secret, step + 1) });
    t.is(answer.response.status, 503, action);
    t.regex(answer.html, /the administrator has been told/, action);
  }
  t.true((await server.runtime.secondFactor.status(user.id)).enabled, 'nothing changed');

  const errors = logLines.map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.level === 50 && line.accountId === user.id);
  t.is(errors.length, 3);
  for (const line of errors) {
    t.regex(String(line.msg), /sealed TOTP secret does not open with ENCRYPTION_KEYS/);
    t.regex(String(line.cause), /no configured encryption key opens this value/);
  }
  t.false(logLines.some((line) => line.includes(secret)), 'the secret is never logged');
});

test('gatehouse users reset-second-factor --email E turns it off, audits it as the administrator, tells the person and signs them out everywhere; an unknown email exits 1', async (t) => {
  t.timeout(300_000);
  const { user, secret } = await enrolledUser();
  await smtp.mailTo(user.email, NOTICE_SUBJECT); // enrollment's notice
  // Signed in with both factors (loa:2) to a client that requires them, holding a refresh token.
  const strict = await newSpa({ requireSecondFactor: true });
  const browser = new UserAgent();
  const request = await authorizationRequest(strict.as, strict.client.client_id);
  const codePage = await passwordStep(browser, request, user.email);
  const signedIn = await submitCode(browser, codePage, await codeAt(secret, currentStep()));
  t.true(isCallback(signedIn), `ended at ${signedIn.url}`);
  const tokens = await oauth.processAuthorizationCodeResponse(strict.as, strict.client, await oauth.authorizationCodeGrantRequest(strict.as, strict.client, oauth.None(),
    oauth.validateAuthResponse(strict.as, strict.client, signedIn.url, request.state), REDIRECT_URI, request.codeVerifier, insecure), { expectedNonce: request.nonce, requireIdToken: true });
  t.is(oauth.getValidatedIdTokenClaims(tokens)?.acr, ACR_SECOND_FACTOR);
  t.truthy(tokens.refresh_token);
  const { config } = server.runtime;
  // The server's store: its Redis and key prefix (the in-process store of this test process is out of the CLI's reach).
  const environment = cleanEnvironment({
    DATA_DIR: config.dataDir, KEYS_DIR: config.keysDir, DATABASE_URL: config.databaseUrl, LOG_LEVEL: 'warn', NODE_ENV: 'test',
    ISSUER: server.issuer, SMTP_URL: smtp.url, REDIS_URL: config.redis?.url, STORE_PREFIX: config.storePrefix,
  });
  const gatehouse = (args: string[]) => runNode([path.join('bin', 'gatehouse.js'), ...args], environment, 180_000);

  const reset = await gatehouse(['users', 'reset-second-factor', '--email', user.email.toUpperCase()]);
  t.is(reset.code, 0, reset.stderr);
  t.regex(reset.stdout, new RegExp(`^turned off two-factor authentication for ${user.email.replaceAll('.', '\\.')}: its authenticator and 10 unused recovery codes were removed; they sign in with their password alone`));
  const row = await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: user.id }, select: { totpSecret: true, totpEnabledAt: true, totpLastStep: true } });
  t.deepEqual(row, { totpSecret: null, totpEnabledAt: null, totpLastStep: null });
  t.is(await server.runtime.database.prisma.recoveryCode.count({ where: { userId: user.id } }), 0);
  const removed = await auditOf(user.id, 'second_factor.removed');
  t.is(removed.length, 1);
  t.is(removed[0]!.actorType, 'admin');
  t.regex(removed[0]!.actorId ?? '', /^cli(:.+)?$/);
  t.is(removed[0]!.detail.reason, 'admin_reset');
  t.regex(await noticeTo(t, user.email), /Two-factor authentication was turned off for your account at .+ by an administrator\./);
  if (config.redis) {
    // No session keeps loa:2 without the factor: the refresh token is refused and the browser is asked to sign in again.
    t.regex(reset.stdout, /\nsigned .+ out everywhere: \d+ sessions? ended, \d+ grants? revoked\n/);
    const refused = await t.throwsAsync(oauth.processRefreshTokenResponse(strict.as, strict.client,
      await oauth.refreshTokenGrantRequest(strict.as, strict.client, oauth.None(), tokens.refresh_token!, insecure)), { instanceOf: oauth.ResponseBodyError });
    t.is(refused?.error, 'invalid_grant');
    const again = await reach(browser, (await authorizationRequest(strict.as, strict.client.client_id)).url);
    t.regex(again.html, /name="password"/, 'no single sign-on from the old session');
    const endedAll = await auditOf(user.id, 'sessions.ended_all');
    t.is(endedAll.length, 1);
    t.like(endedAll[0], { actorType: 'admin', detail: { reason: 'ended_by_administrator' } });
  } else {
    t.regex(reset.stderr, /^gatehouse: the store is in-process \(no REDIS_URL\).+were not ended; restarting the server ends them\n$/);
  }

  const { as, client } = await newSpa();
  t.true(isCallback(await passwordStep(new UserAgent(), await authorizationRequest(as, client.client_id), user.email)), 'the password alone signs in');

  const again = await gatehouse(['users', 'reset-second-factor', '--email', user.email]);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /has no two-factor authentication: nothing was changed/);
  t.is((await auditOf(user.id, 'second_factor.removed')).length, 1);

  const unknown = await gatehouse(['users', 'reset-second-factor', '--email', `nobody-${crypto.randomUUID()}@example.com`]);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /^gatehouse: no account has the email nobody-/);
  const missing = await gatehouse(['users', 'reset-second-factor']);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /reset-second-factor needs --email/);
});
