// Password reset by email, through the real pages and a real SMTP server: the request answers the same for
// every address and is limited per address whatever the IP, the emailed link is single use, expires, is
// replaced by a newer one and its uses are limited per IP, a refused password leaves it usable, and the new
// password ends every session and grant (read by oauth4webapi), forgives the login lockout, turns off a
// second factor set up before the address was proved, and is announced by email. Nothing secret reaches
// the audit trail or the logs.
import test from 'ava';
import { request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import * as oauth from 'oauth4webapi';
import { generate } from 'otplib';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { linkIn, startSmtpServer, type TestSmtpServer } from './helpers/smtp.ts';
import { UserAgent, formField, page, post, type Page } from './helpers/user-agent.ts';
import { until } from './helpers/wait.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';

const NEW_PASSWORD = 'velvet harbour lantern quartz';

let smtp: TestSmtpServer;
let server: TestServer;
/** Every log line of `server`, at debug level. */
let logLines: string[];
let short: TestServer;
let limited: TestServer;
const extraServers: TestServer[] = [];

test.before(async () => {
  smtp = await startSmtpServer();
  const capture = capturingLogger();
  logLines = capture.lines;
  server = await startTestServer({
    SMTP_URL: smtp.url, RESET_LIMIT_PER_IP: '1000/3600', EMAILED_LINK_LIMIT_PER_IP: '1000/600', LOGIN_LOCKOUT_THRESHOLD: '3',
  }, { logger: capture.logger });
  // Links that expire after a second, and two reset requests per address and IP.
  short = await startTestServer({ SMTP_URL: smtp.url, PASSWORD_RESET_TTL: '1', RESET_LIMIT_PER_ACCOUNT_IP: '2/600' });
  // Two reset requests per address from anywhere (below the five per address and IP), and three uses of
  // emailed links per IP: only one test opens links here.
  limited = await startTestServer({ SMTP_URL: smtp.url, RESET_LIMIT_PER_ACCOUNT: '2/600', EMAILED_LINK_LIMIT_PER_IP: '3/600' });
});
test.after.always(async () => {
  await Promise.allSettled([server?.close(), short?.close(), limited?.close(), ...extraServers.map((extra) => extra.close())]);
  await smtp?.close();
});

function auditEvents(target: TestServer, email: string, action: string) {
  return target.runtime.auditTrail.list({ userEmail: email, action, limit: 20 });
}

/** Opens the request form and asks for a link, as a person would. */
async function requestReset(target: TestServer, agent: UserAgent, email: string): Promise<Page> {
  const form = await page(agent, `${target.issuer}/password/forgot`);
  if (form.status !== 200) throw new Error(`forgot page answered ${form.status}`);
  return post(agent, `${target.issuer}/password/forgot`, { csrf: formField(form.html, 'csrf'), email });
}

/** Sends the link's form with a new password (typed twice unless told otherwise). */
function submitNewPassword(target: TestServer, agent: UserAgent, formHtml: string, password: string, confirm = password): Promise<Page> {
  return post(agent, `${target.issuer}/password/reset`, {
    csrf: formField(formHtml, 'csrf'), token: formField(formHtml, 'token'), password, confirm,
  });
}

/** One login form sent through a new authorization request: its answer (303 onwards when signed in). */
async function login(target: TestServer, agent: UserAgent, email: string, password: string): Promise<Page> {
  const as = await discover(target);
  const { client } = await registerSpa(target);
  const request = await authorizationRequest(as, client.client_id);
  const { response, url } = await agent.follow(request.url);
  const html = await response.text();
  if (!html.includes('name="password"')) throw new Error(`expected the login page, got ${url.pathname}`);
  return post(agent, new URL(`${url.pathname}/login`, url), { csrf: formField(html, 'csrf'), email, password });
}

/** A page without what differs between two requests: the CSRF token and the address typed. */
function normalized(html: string, email: string): string {
  return html.replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value="CSRF"').replaceAll(email, 'EMAIL');
}

test('the request form answers the same for an existing, an unknown and a disabled address, and only the existing one gets a link', async (t) => {
  const existing = await createUser(server);
  const disabled = await createUser(server);
  await server.runtime.database.prisma.user.update({ where: { id: disabled.id }, data: { disabled: true } });
  const unknown = `nobody-${crypto.randomUUID()}@example.com`;

  const form = await page(new UserAgent(), `${server.issuer}/password/forgot`);
  t.is(form.status, 200);
  t.regex(form.html, /<h1 id="page-title">Reset your password<\/h1>/);
  t.regex(form.html, /<label for="email">/);
  t.regex(form.html, /autocomplete="username"/);

  const answers = [];
  for (const email of [existing.email, unknown, disabled.email]) {
    const answer = await requestReset(server, new UserAgent(), email);
    answers.push({ email, status: answer.status, type: answer.response.headers.get('content-type'), cache: answer.response.headers.get('cache-control'), html: answer.html });
  }
  for (const answer of answers) {
    t.is(answer.status, 200);
    t.is(answer.type, answers[0]!.type);
    t.is(answer.cache, 'no-store');
    t.is(normalized(answer.html, answer.email), normalized(answers[0]!.html, answers[0]!.email), 'the same page whatever the address');
  }
  t.regex(answers[0]!.html, /Check your email/);

  const mail = await smtp.mailTo(existing.email, 'Reset your password');
  t.true(linkIn(mail).startsWith(`${server.issuer}/password/reset?token=`));
  t.regex(mail.email.text!, /expires in 30 minutes/);
  // The unknown and disabled requests are finished once they are audited; they sent nothing.
  await until(async () => (await auditEvents(server, unknown, 'password_reset.requested')).length === 1, 'the unknown address to be audited');
  await until(async () => (await auditEvents(server, disabled.email, 'password_reset.requested')).length === 1, 'the disabled account to be audited');
  await server.settled();
  t.deepEqual(smtp.receivedBy(unknown), []);
  t.deepEqual(smtp.receivedBy(disabled.email), []);
  const [unknownEvent] = await auditEvents(server, unknown, 'password_reset.requested');
  t.is(unknownEvent!.outcome, 'failure');
  t.is(unknownEvent!.detail.reason, 'unknown_email');
  const [disabledEvent] = await auditEvents(server, disabled.email, 'password_reset.requested');
  t.is(disabledEvent!.detail.reason, 'account_disabled');
  await until(async () => (await auditEvents(server, existing.email, 'password_reset.requested')).some((event) => event.outcome === 'success'), 'the request to be audited');
});

test('what is not an email address is refused on the form with a 400, described for assistive technology', async (t) => {
  const answer = await requestReset(server, new UserAgent(), 'not an address');
  t.is(answer.status, 400);
  t.regex(answer.html, /aria-invalid="true"/);
  t.regex(answer.html, /aria-describedby="email-error"/);
  t.regex(answer.html, /role="alert" id="email-error"/);
});

test('after a reset the old password fails and the new one works, earlier refresh tokens are invalid_grant, the old browser must sign in again, the address is verified, and a notice arrives', async (t) => {
  const { as, client, user, agent: oldBrowser, tokens } = await signInToNewSpa(server);
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { emailVerified: false } });
  t.truthy(tokens.refresh_token);

  const resetBrowser = new UserAgent();
  t.is((await requestReset(server, resetBrowser, user.email.toUpperCase())).status, 200, 'the address is matched whatever its case');
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  const form = await page(resetBrowser, link);
  t.is(form.status, 200);
  t.true(form.html.includes(user.email));
  t.regex(form.html, /autocomplete="new-password"/);
  const done = await submitNewPassword(server, resetBrowser, form.html, NEW_PASSWORD);
  t.is(done.status, 200);
  t.regex(done.html, /Your password is changed/);
  t.regex(done.html, /href="\/account"/);

  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant', 'the refresh token of a sign-in before the reset is dead');

  // The browser that was signed in is no longer: an application sends it to the login page again.
  const request = await authorizationRequest(as, client.client_id);
  const reached = await oldBrowser.follow(request.url);
  t.true(reached.url.pathname.startsWith('/interaction/'));
  t.regex(await reached.response.text(), /name="password"/);

  t.is((await login(server, new UserAgent(), user.email, PASSWORD)).status, 401, 'the old password fails');
  t.is((await login(server, new UserAgent(), user.email, NEW_PASSWORD)).status, 303, 'the new password signs in');

  const stored = await server.runtime.users.findById(user.id);
  t.true(stored!.emailVerified, 'the link proved the person reads the address');

  const notice = await smtp.mailTo(user.email, 'Your password was changed');
  t.is(linkIn(notice), `${server.issuer}/password/forgot`);
  const [completed] = await auditEvents(server, user.email, 'password_reset.completed');
  t.is(completed!.outcome, 'success');
  t.is(completed!.subjectUserId, user.id);
  t.true(Number(completed!.detail.grantsRevoked) >= 1);
});

/** A sign-in to a new SPA left at its login page for "Forgot your password?", as a person would, in `agent`. */
async function forgotFromSignIn(agent: UserAgent) {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const request = await authorizationRequest(as, client.client_id);
  const { url: loginUrl, response } = await agent.follow(request.url);
  const loginHtml = await response.text();
  const forgotHref = /href="([^"]*\/password\/forgot)"/.exec(loginHtml)?.[1];
  if (!forgotHref) throw new Error('no "Forgot your password?" link on the login page');
  const { url: forgotUrl, response: forgot } = await agent.follow(new URL(forgotHref, loginUrl));
  return { as, client, request, loginUrl, forgotUrl, forgotHtml: await forgot.text() };
}

const CONTINUE_LINK = /<a href="([^"]+)">Continue to sign in to Test SPA<\/a>/;

test('a reset begun at a sign-in and finished in the same browser leads back to it: the new password ends at the application with a code', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  const { as, client, request, loginUrl, forgotUrl, forgotHtml } = await forgotFromSignIn(agent);
  t.is(forgotUrl.pathname, '/password/forgot', 'the link on the login page leads to the usual request form');
  await post(agent, forgotUrl, { csrf: formField(forgotHtml, 'csrf'), email: user.email });
  const form = await page(agent, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
  const done = await submitNewPassword(server, agent, form.html, NEW_PASSWORD);
  t.is(done.status, 200);
  const href = CONTINUE_LINK.exec(done.html)?.[1]?.replaceAll('&amp;', '&');
  t.truthy(href, 'the page offers to continue the sign-in');
  const continueUrl = new URL(href!, server.issuer);
  t.is(continueUrl.pathname, loginUrl.pathname, 'the very sign-in that was left, on this server');
  t.is(continueUrl.searchParams.get('email'), user.email, 'with the address filled in');
  t.is(agent.cookie('gatehouse.sign-in'), undefined, 'offered once');

  const callback = await signIn(agent, continueUrl, { email: user.email, password: NEW_PASSWORD });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true });
  t.is(oauth.getValidatedIdTokenClaims(tokens)!.sub, user.id);
});

test('no way back to a sign-in from another browser, from a forged cookie, or once that sign-in has finished', async (t) => {
  const user = await createUser(server);
  const reset = async (agent: UserAgent, forgot: { url: URL; html: string }) => {
    await post(agent, forgot.url, { csrf: formField(forgot.html, 'csrf'), email: user.email });
    const form = await page(agent, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
    const done = await submitNewPassword(server, agent, form.html, NEW_PASSWORD);
    t.is(done.status, 200);
    return done.html;
  };

  // The link followed in another browser than the sign-in's.
  const signInBrowser = new UserAgent();
  const left = await forgotFromSignIn(signInBrowser);
  const mailReader = new UserAgent();
  const elsewhere = await page(mailReader, `${server.issuer}/password/forgot`);
  const otherHtml = await reset(mailReader, { url: new URL(`${server.issuer}/password/forgot`), html: elsewhere.html });
  t.notRegex(otherHtml, CONTINUE_LINK);
  t.regex(otherHtml, /href="\/account"/);

  // A cookie naming that sign-in without the server's signature is ignored.
  const forger = new UserAgent();
  forger.plantCookie('gatehouse.sign-in', left.loginUrl.pathname.split('/')[2]!);
  const forgedForm = await page(forger, `${server.issuer}/password/forgot`);
  t.notRegex(await reset(forger, { url: new URL(`${server.issuer}/password/forgot`), html: forgedForm.html }), CONTINUE_LINK);

  // A sign-in this browser has no cookie for (expired, or another's): the link still leads to the request form.
  const stranger = await new UserAgent().follow(new URL(`${left.loginUrl.pathname}/password/forgot`, left.loginUrl));
  t.is(stranger.url.pathname, '/password/forgot');
  t.is(stranger.response.status, 200);
  t.regex(await stranger.response.text(), /Reset your password/);

  // The sign-in finished before the link was used: nothing to go back to.
  const finisher = new UserAgent();
  const finished = await forgotFromSignIn(finisher);
  const loginPage = await page(finisher, finished.loginUrl);
  const signedIn = await post(finisher, new URL(`${finished.loginUrl.pathname}/login`, finished.loginUrl), { csrf: formField(loginPage.html, 'csrf'), email: user.email, password: NEW_PASSWORD });
  t.is(signedIn.status, 303);
  const forgotAgain = await page(finisher, finished.forgotUrl);
  t.notRegex(await reset(finisher, { url: finished.forgotUrl, html: forgotAgain.html }), CONTINUE_LINK);
});

test('the link can be opened many times (mail scanners open it first); a refused password keeps it usable; it works once', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await requestReset(server, agent, user.email);
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  t.is((await page(new UserAgent(), link)).status, 200, 'a scanner opening the link');
  const form = await page(agent, link);
  t.is(form.status, 200);

  const weak = await submitNewPassword(server, agent, form.html, '12345678');
  t.is(weak.status, 400);
  t.regex(weak.html, /role="alert" id="password-error"/);
  t.regex(weak.html, /aria-describedby="password-hint password-error" aria-invalid="true"/);
  t.regex(weak.html, /common or breached/);
  const personal = await submitNewPassword(server, agent, form.html, `${user.email.split('@')[0]} forever`);
  t.is(personal.status, 400);
  const mismatch = await submitNewPassword(server, agent, form.html, NEW_PASSWORD, `${NEW_PASSWORD}!`);
  t.is(mismatch.status, 400);
  t.regex(mismatch.html, /id="confirm-error"/);
  t.true((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'nothing changed yet');
  t.is((await page(agent, link)).status, 200, 'the link still works');

  t.is((await submitNewPassword(server, agent, weak.html, NEW_PASSWORD)).status, 200);
  const reopened = await page(agent, link);
  t.is(reopened.status, 400);
  t.regex(reopened.html, /This link no longer works/);
  t.regex(reopened.html, /href="\/password\/forgot"/);
  const again = await submitNewPassword(server, agent, form.html, 'another fine passphrase');
  t.is(again.status, 400);
  // The form sent again (the back button, a double click): it says what happened, not that the link failed.
  t.regex(again.html, /This link was already used/);
  t.regex(again.html, /A new password was set with this link/);
  t.true((await server.runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);
});

test('two submissions of the same link at once: exactly one sets its password', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await requestReset(server, agent, user.email);
  const form = await page(agent, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
  const [first, second] = await Promise.all([
    submitNewPassword(server, agent, form.html, 'first parallel passphrase'),
    submitNewPassword(server, agent, form.html, 'second parallel passphrase'),
  ]);
  t.deepEqual([first.status, second.status].sort(), [200, 400]);
  t.regex((first.status === 400 ? first : second).html, /This link was already used/, 'the browser shows this answer to a double click');
  const winner = first.status === 200 ? 'first parallel passphrase' : 'second parallel passphrase';
  const loser = first.status === 200 ? 'second parallel passphrase' : 'first parallel passphrase';
  t.true((await server.runtime.users.checkCredentials(user.email, winner)).ok);
  t.false((await server.runtime.users.checkCredentials(user.email, loser)).ok);
});

test('a new request makes the earlier link stop working', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await requestReset(server, agent, user.email);
  const older = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  await requestReset(server, agent, user.email);
  const newer = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  t.not(older, newer);
  t.is((await page(agent, older)).status, 400);
  t.is((await page(agent, newer)).status, 200);
});

test('a link whose token was never issued, or is missing, shows a clear 400 page', async (t) => {
  const agent = new UserAgent();
  for (const query of ['', '?token=', `?token=${'A'.repeat(43)}`, '?token=%00%ff', '?token=a&token=b']) {
    const answer = await page(agent, `${server.issuer}/password/reset${query}`);
    t.is(answer.status, 400, query);
    t.regex(answer.html, /This link no longer works/);
  }
});

test('a completed reset forgives the login lockout of the account', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  for (let attempt = 0; attempt < 3; attempt += 1) await login(server, agent, user.email, 'wrong password');
  t.is((await login(server, agent, user.email, PASSWORD)).status, 429, 'locked out');
  await requestReset(server, agent, user.email);
  const form = await page(agent, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
  t.is((await submitNewPassword(server, agent, form.html, NEW_PASSWORD)).status, 200);
  t.is((await login(server, new UserAgent(), user.email, NEW_PASSWORD)).status, 303, 'the person who proved they own the address may sign in at once');
});

test('a link expires (PASSWORD_RESET_TTL)', async (t) => {
  const user = await createUser(short);
  const agent = new UserAgent();
  await requestReset(short, agent, user.email);
  const mail = await smtp.mailTo(user.email, 'Reset your password');
  const link = linkIn(mail);
  t.true(link.startsWith(`${short.issuer}/`));
  t.regex(mail.email.text!, /expires in 1 minute/);
  // The form is built from the link rather than opened: on a slow machine a second may already be gone.
  const forgotForm = await page(agent, `${short.issuer}/password/forgot`);
  // A real wait, until just past the link's own expiry (if it has not passed already): links are checked
  // against the system clock (AccountTokens takes no Clock), so only real time can age one.
  const issued = await short.runtime.accountTokens.peek(new URL(link).searchParams.get('token')!, 'reset_password');
  if (issued.ok) await sleep(Math.max(0, issued.expiresAt.getTime() - Date.now()) + 50);
  const expired = await page(agent, link);
  t.is(expired.status, 400);
  t.regex(expired.html, /This link no longer works/);
  const late = await post(agent, `${short.issuer}/password/reset`, {
    csrf: formField(forgotForm.html, 'csrf'), token: new URL(link).searchParams.get('token')!, password: NEW_PASSWORD, confirm: NEW_PASSWORD,
  });
  t.is(late.status, 400);
  const check = await short.runtime.accountTokens.peek(new URL(link).searchParams.get('token')!, 'reset_password');
  t.deepEqual(check, { ok: false, reason: 'expired' }, 'refused for its age, not for anything else');
  t.true((await short.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'the password did not change');
});

test('requests are limited per address and IP: the third is a 429 with Retry-After, for known and unknown addresses alike', async (t) => {
  const user = await createUser(short);
  const unknown = `nobody-${crypto.randomUUID()}@example.com`;
  for (const email of [user.email, unknown]) {
    const agent = new UserAgent();
    t.is((await requestReset(short, agent, email)).status, 200);
    t.is((await requestReset(short, agent, email)).status, 200);
    const refused = await requestReset(short, agent, email);
    t.is(refused.status, 429, email);
    t.true(Number(refused.response.headers.get('retry-after')) > 0);
    t.regex(refused.html, /Too many attempts/);
  }
  await smtp.mailTo(user.email, 'Reset your password');
  await smtp.mailTo(user.email, 'Reset your password');
});

test('a form without its CSRF token is refused with 403 and changes nothing', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await page(agent, `${server.issuer}/password/forgot`);
  t.is((await post(agent, `${server.issuer}/password/forgot`, { email: user.email })).status, 403);
  await requestReset(server, agent, user.email);
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  const form = await page(agent, link);
  const forged = await post(agent, `${server.issuer}/password/reset`, { token: formField(form.html, 'token'), password: NEW_PASSWORD, confirm: NEW_PASSWORD });
  t.is(forged.status, 403);
  const otherBrowser = await post(new UserAgent(), `${server.issuer}/password/reset`, {
    csrf: formField(form.html, 'csrf'), token: formField(form.html, 'token'), password: NEW_PASSWORD, confirm: NEW_PASSWORD,
  });
  t.is(otherBrowser.status, 403, 'a token without its cookie');
  t.is((await page(agent, link)).status, 200, 'the link is still good');
  t.true((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok);
});

test('no token, link or password reaches an audit row or a log line', async (t) => {
  const user = await createUser(server);
  const agent = new UserAgent();
  await requestReset(server, agent, user.email);
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  const form = await page(agent, link);
  const token = formField(form.html, 'token');
  const weak = 'password123';
  const chosen = 'tangerine obsidian meadow';
  await submitNewPassword(server, agent, form.html, weak);
  t.is((await submitNewPassword(server, agent, form.html, chosen)).status, 200);
  await smtp.mailTo(user.email, 'Your password was changed');
  await server.runtime.auditTrail.flush();

  const rows = JSON.stringify(await server.runtime.database.prisma.auditEvent.findMany());
  t.true(rows.includes('password_reset.completed'), 'the audit trail was read');
  t.true(logLines.some((line) => line.includes('password_reset.completed')), 'the log was read');
  for (const secret of [token, link, weak, chosen, PASSWORD]) {
    t.false(rows.includes(secret), `audit rows hold no ${secret === token ? 'token' : 'secret'}`);
    t.false(logLines.some((line) => line.includes(secret)), `log lines hold no ${secret === token ? 'token' : 'secret'}`);
  }
});

/**
 * One HTTP exchange sent from another loopback address (127.0.0.0/8 is all loopback on Linux): the server
 * sees another client IP, the way requests from many machines look, without trusting X-Forwarded-For.
 */
function exchangeFrom(localAddress: string, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Page & { cookies: string[] }> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(url, { method: init.method ?? 'GET', headers: { accept: 'text/html', ...init.headers }, localAddress }, (incoming) => {
      const chunks: Buffer[] = [];
      incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
      incoming.on('end', () => {
        const html = Buffer.concat(chunks).toString('utf8');
        const headers = new Headers();
        for (const [name, value] of Object.entries(incoming.headers)) if (typeof value === 'string') headers.set(name, value);
        const cookies = (incoming.headers['set-cookie'] ?? []).map((line) => line.split(';')[0]!);
        resolve({ status: incoming.statusCode!, html, response: new Response(html, { status: incoming.statusCode!, headers }), cookies });
      });
      incoming.on('error', reject);
    });
    outgoing.on('error', reject);
    outgoing.end(init.body);
  });
}

/** Asks for a reset link from a browser at another IP address. */
async function requestResetFrom(target: TestServer, localAddress: string, email: string): Promise<Page> {
  const form = await exchangeFrom(localAddress, `${target.issuer}/password/forgot`);
  if (form.status !== 200) throw new Error(`forgot page answered ${form.status}`);
  return exchangeFrom(localAddress, `${target.issuer}/password/forgot`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookies.join('; ') },
    body: new URLSearchParams({ csrf: formField(form.html, 'csrf'), email }).toString(),
  });
}

test('reset links are limited per address whatever the IP (RESET_LIMIT_PER_ACCOUNT), for known and unknown addresses alike', async (t) => {
  const user = await createUser(limited);
  const unknown = `nobody-${crypto.randomUUID()}@example.com`;
  for (const [index, email] of [user.email, unknown].entries()) {
    // Each request from its own IP: no per-IP limit is near, only the address's.
    t.is((await requestResetFrom(limited, `127.0.0.${10 + index * 3}`, email)).status, 200);
    t.is((await requestResetFrom(limited, `127.0.0.${11 + index * 3}`, email)).status, 200);
    const refused = await requestResetFrom(limited, `127.0.0.${12 + index * 3}`, email);
    t.is(refused.status, 429, email);
    t.true(Number(refused.response.headers.get('retry-after')) > 0);
    t.regex(refused.html, /sending password reset links is paused/);
  }
  const other = await createUser(limited);
  t.is((await requestResetFrom(limited, '127.0.0.12', other.email)).status, 200, 'the refused IP may still ask for another address');
  await smtp.mailTo(other.email, 'Reset your password');
  await smtp.mailTo(user.email, 'Reset your password');
  await smtp.mailTo(user.email, 'Reset your password');
  await until(async () => (await auditEvents(limited, user.email, 'password_reset.requested')).length === 2, 'both requests to be audited');
  await limited.settled();
  t.is(smtp.receivedBy(user.email).length, 2, 'the refused request sent nothing');
  const ips = (await auditEvents(limited, user.email, 'password_reset.requested')).map((event) => event.ip).sort();
  t.deepEqual(ips, ['127.0.0.10', '127.0.0.11'], 'the server saw each request come from its own IP');
});

// Serial (ava runs these first): an embedded database starting holds the event loop, which other tests' waits would feel.
test.serial('reset requests are limited per IP whatever the address (RESET_LIMIT_PER_IP); another IP is not affected', async (t) => {
  const perIp = await startTestServer({ SMTP_URL: smtp.url, RESET_LIMIT_PER_IP: '3/600' });
  extraServers.push(perIp);
  const nobody = () => `nobody-${crypto.randomUUID()}@example.com`;
  for (let i = 0; i < 3; i += 1) t.is((await requestResetFrom(perIp, '127.0.0.20', nobody())).status, 200);
  const refused = await requestResetFrom(perIp, '127.0.0.20', nobody());
  t.is(refused.status, 429, 'a fourth address from the same IP');
  const retryAfter = Number(refused.response.headers.get('retry-after'));
  t.true(retryAfter > 500 && retryAfter <= 600, `Retry-After ${retryAfter}`);
  t.regex(refused.html, /sending password reset links is paused/);
  t.is((await requestResetFrom(perIp, '127.0.0.21', nobody())).status, 200, 'another IP may still ask');
});

test('uses of emailed reset links are limited per IP (EMAILED_LINK_LIMIT_PER_IP): opening and sending the form both count', async (t) => {
  const user = await createUser(limited);
  const agent = new UserAgent();
  await requestReset(limited, agent, user.email);
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  const form = await page(agent, link);
  t.is(form.status, 200);
  t.is((await submitNewPassword(limited, agent, form.html, '12345678')).status, 400, 'a refused password, counted');
  t.is((await submitNewPassword(limited, agent, form.html, NEW_PASSWORD, 'not the same')).status, 400, 'a mismatch, counted');
  const opened = await page(agent, link);
  t.is(opened.status, 429, 'the fourth use from this IP');
  t.true(Number(opened.response.headers.get('retry-after')) > 0);
  t.regex(opened.html, /using emailed links is paused/);
  const sent = await submitNewPassword(limited, agent, form.html, NEW_PASSWORD);
  t.is(sent.status, 429);
  t.true((await limited.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'the password did not change');
  t.is((await limited.runtime.accountTokens.peek(formField(form.html, 'token'), 'reset_password')).ok, true, 'the link was not spent');
});

/** Turns on the second factor of an account, as the account page would; its recovery codes are stored. */
async function enrollSecondFactor(target: TestServer, userId: string): Promise<void> {
  const enrollment = await target.runtime.secondFactor.startEnrollment(userId);
  const confirmed = await target.runtime.secondFactor.confirmEnrollment(userId, await generate({ secret: enrollment!.secret }));
  if (!confirmed.ok) throw new Error(`enrollment refused: ${confirmed.reason}`);
}

/** Sets a new password through the emailed link, in a browser of its own. */
async function resetThroughLink(target: TestServer, email: string): Promise<Page> {
  const agent = new UserAgent();
  await requestReset(target, agent, email);
  const form = await page(agent, linkIn(await smtp.mailTo(email, 'Reset your password')));
  return submitNewPassword(target, agent, form.html, NEW_PASSWORD);
}

test('a reset of an account whose address was not verified turns off its second factor (someone else may have set it up); a verified account keeps it', async (t) => {
  const unverified = await createUser(server);
  await server.runtime.database.prisma.user.update({ where: { id: unverified.id }, data: { emailVerified: false } });
  await enrollSecondFactor(server, unverified.id);
  const verified = await createUser(server);
  await enrollSecondFactor(server, verified.id);
  t.true((await server.runtime.secondFactor.status(unverified.id)).enabled);

  const done = await resetThroughLink(server, unverified.email);
  t.is(done.status, 200);
  t.regex(done.html, /Two-factor authentication was also turned off/);
  t.deepEqual(await server.runtime.secondFactor.status(unverified.id), { enabled: false, enabledAt: null, recoveryCodesLeft: 0 });
  const stored = await server.runtime.database.prisma.user.findUniqueOrThrow({ where: { id: unverified.id }, select: { totpSecret: true, totpLastStep: true } });
  t.deepEqual(stored, { totpSecret: null, totpLastStep: null }, 'the secret is forgotten');
  t.is(await server.runtime.database.prisma.recoveryCode.count({ where: { userId: unverified.id } }), 0, 'the recovery codes are forgotten');
  const [removed] = await auditEvents(server, unverified.email, 'second_factor.removed');
  t.is(removed!.outcome, 'success');
  t.is(removed!.subjectUserId, unverified.id);
  t.deepEqual(removed!.detail, { reason: 'password_reset_unverified_email' });

  const kept = await resetThroughLink(server, verified.email);
  t.is(kept.status, 200);
  t.notRegex(kept.html, /Two-factor authentication was also turned off/);
  t.true((await server.runtime.secondFactor.status(verified.id)).enabled, 'a second factor set up once the address was proved stays');
  t.deepEqual(await auditEvents(server, verified.email, 'second_factor.removed'), []);
});
