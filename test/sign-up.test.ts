// Sign-up from the login page and email verification, through the real pages, a real SMTP server and
// oauth4webapi: email_verified false then true, links that only a button press uses (single use, hashed,
// expiring, newer ones replacing older ones), limits, no enumeration of registered addresses (with the
// default settings too), the unverified-login gate, the sign-up switch, form errors, CSRF, what is logged
// when mail is refused, and the audit trail. The tests run one at a time: they share a dozen servers, each
// with its embedded database in this worker, and all at once they starved one another on a 2-core machine.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import * as oauth from 'oauth4webapi';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { linkIn, startSmtpServer, type ReceivedMail, type TestSmtpServer } from './helpers/smtp.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, type AuthorizationRequest } from './helpers/oauth.ts';
import { UserAgent, formAction, formField, isRedirect } from './helpers/user-agent.ts';

interface Gatehouse {
  server: TestServer;
  smtp: TestSmtpServer;
}

const started: Gatehouse[] = [];
test.after.always(async () => {
  await Promise.allSettled(started.map(async ({ server, smtp }) => { await server.close(); await smtp.close(); }));
});

const gatehouses = new Map<string, Promise<Gatehouse>>();
/**
 * Servers start one after another: each opens an embedded database of its own in this worker, and a dozen
 * opening at once kept the event loop so busy that connections to them timed out.
 */
let previousStart: Promise<unknown> = Promise.resolve();
/** One Gatehouse (with its own SMTP server) per configuration, shared by the tests that use it. */
function gatehouse(environment: Record<string, string> = {}): Promise<Gatehouse> {
  const key = JSON.stringify(environment);
  if (!gatehouses.has(key)) {
    const starting = previousStart.catch(() => {}).then(async () => {
      const smtp = await startSmtpServer();
      // Tests share a server and one IP: only the test of a limit sets it low.
      const server = await startTestServer({
        SMTP_URL: smtp.url, SIGNUP_LIMIT_PER_IP: '1000/3600', VERIFY_RESEND_LIMIT_PER_IP: '1000/3600', EMAILED_LINK_LIMIT_PER_IP: '1000/3600', ...environment,
      }).catch(async (error: unknown) => {
        await smtp.close();
        throw error;
      });
      const started_ = { server, smtp };
      started.push(started_);
      return started_;
    });
    previousStart = starting;
    gatehouses.set(key, starting);
  }
  return gatehouses.get(key)!;
}

const VERIFY_FIRST = { UNVERIFIED_LOGIN_ALLOWED: 'false' };
const newEmail = () => `new-${crypto.randomUUID()}@example.com`;

/** A sign-in started by a new single-page app, standing on the login page. */
async function loginPage(server: TestServer, agent = new UserAgent()) {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const request = await authorizationRequest(as, client.client_id);
  const { response, url } = await agent.follow(request.url);
  if (!url.pathname.startsWith('/interaction/')) throw new Error(`expected the login page, got ${url}`);
  return { as, client, request, agent, interaction: url, html: await response.text() };
}

type Page = Awaited<ReturnType<typeof loginPage>>;

/** Opens the sign-up form of a sign-in and submits it; no redirect followed. */
async function submitSignUp(page: Page, fields: { name?: string; email: string; password?: string }, options: { csrf?: boolean } = {}) {
  const form = await page.agent.request(new URL(`${page.interaction.pathname}/sign-up`, page.interaction));
  const html = await form.text();
  if (form.status !== 200) throw new Error(`sign-up form answered ${form.status}`);
  const body = new URLSearchParams({ name: fields.name ?? 'Grace Hopper', email: fields.email, password: fields.password ?? PASSWORD });
  if (options.csrf !== false) body.set('csrf', formField(html, 'csrf'));
  const response = await page.agent.request(new URL(`${page.interaction.pathname}/sign-up`, page.interaction), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: body.toString(),
  });
  return { response, status: response.status, html: await response.text() };
}

/** Follows a redirect out of the interaction, through consent, to the client's callback. */
async function toCallback(agent: UserAgent, location: URL): Promise<URL> {
  let { response, url } = await agent.follow(location);
  for (let step = 0; step < 3 && !isRedirect(response.status); step += 1) {
    const html = await response.text();
    if (!html.includes('/confirm"')) throw new Error(`stopped on ${url.pathname} with ${response.status}`);
    ({ response, url } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(html, 'csrf') }));
  }
  if (!url.href.startsWith(REDIRECT_URI)) throw new Error(`did not reach the callback: ${url}`);
  return url;
}

async function exchange(page: { as: oauth.AuthorizationServer; client: oauth.Client; request: AuthorizationRequest }, callback: URL) {
  const parameters = oauth.validateAuthResponse(page.as, page.client, callback, page.request.state);
  const response = await oauth.authorizationCodeGrantRequest(page.as, page.client, oauth.None(), parameters, REDIRECT_URI, page.request.codeVerifier, insecure);
  return oauth.processAuthorizationCodeResponse(page.as, page.client, response, { expectedNonce: page.request.nonce, requireIdToken: true });
}

async function userinfo(page: { as: oauth.AuthorizationServer; client: oauth.Client }, accessToken: string, sub: string) {
  const response = await oauth.userInfoRequest(page.as, page.client, accessToken, insecure);
  return oauth.processUserInfoResponse(page.as, page.client, sub, response);
}

/**
 * A person signs in afresh to a new client: the ID token's claims and userinfo's. (The engine conforms ID
 * token claims: with an access token issued, scope claims such as email_verified are released by userinfo.)
 */
async function signInAfresh(server: TestServer, email: string) {
  const page = await loginPage(server);
  const callback = await signIn(page.agent, page.request.url, { email, password: PASSWORD });
  const tokens = await exchange(page, callback);
  const claims = oauth.getValidatedIdTokenClaims(tokens)!;
  return { claims, info: await userinfo(page, tokens.access_token, claims.sub) };
}

/** The messages to an address (in arrival order), waiting until there are at least `count`. */
async function mailsTo(smtp: TestSmtpServer, address: string, count = 1): Promise<ReceivedMail[]> {
  await smtp.until(() => smtp.receivedBy(address).length >= count, `${count} message(s) to ${address} (${smtp.receivedBy(address).length} so far)`, 10_000);
  return smtp.receivedBy(address);
}

/** The verification link in a message: the only link of its text part. */
function verificationLink(mail: ReceivedMail): URL {
  return new URL(linkIn(mail));
}

async function visit(url: URL | string, agent = new UserAgent()) {
  const response = await agent.request(url);
  return { status: response.status, html: await response.text(), retryAfter: response.headers.get('retry-after') };
}

/** Presses the "Confirm my email address" button of a link's page: its form posts the CSRF token and the link's. */
async function pressConfirm(server: TestServer, agent: UserAgent, html: string, token = formField(html, 'token')) {
  const response = await agent.request(`${server.issuer}/verify-email`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(html, 'csrf'), token }).toString(),
  });
  return { status: response.status, html: await response.text(), retryAfter: response.headers.get('retry-after') };
}

/** Follows an emailed link as a person does: opens it, then presses its button (when the page has one). */
async function confirmLink(server: TestServer, link: URL | string, agent = new UserAgent()) {
  const opened = await visit(link, agent);
  return opened.status === 200 ? pressConfirm(server, agent, opened.html) : opened;
}

/** A page without what differs between two sign-ups: interaction ids, CSRF tokens, and the email echoed back. */
function withoutIds(html: string, email: string): string {
  return html
    .replace(/\/interaction\/[\w-]+/g, '/interaction/UID')
    .replace(/name="csrf" value="[^"]*"/g, 'name="csrf" value="CSRF"')
    .replaceAll(email, 'EMAIL')
    .replaceAll(encodeURIComponent(email), 'EMAIL');
}

async function audit(server: TestServer, query: { action?: string; userEmail?: string }) {
  await server.runtime.auditTrail.flush();
  return server.runtime.auditTrail.list({ ...query, limit: 50 });
}

test.serial('sign-up answers "Check your email" and signs no one in; "Continue to sign in" then gives email_verified false; after the confirmed link a fresh sign-in says true', async (t) => {
  const { server, smtp } = await gatehouse();
  const page = await loginPage(server);
  t.regex(page.html, new RegExp(`<a href="${page.interaction.pathname}/sign-up">Create an account</a>`), 'the login page links to sign-up');
  const email = newEmail();
  const signUp = await submitSignUp(page, { name: 'Grace Hopper', email: email.toUpperCase() });
  t.is(signUp.status, 200, signUp.html.slice(0, 300));
  t.is(signUp.response.headers.get('location'), null, 'no redirect: the sign-in is not finished');
  t.regex(signUp.html, /<h1 id="page-title">Check your email<\/h1>/);
  const user = (await server.runtime.users.findByEmail(email))!;
  t.is(user.email, email, 'the address is stored normalized');
  t.false(user.emailVerified);

  // "Continue to sign in": the same sign-in's login page with the address filled in; the password is asked.
  const continueHref = /<a href="([^"]+)">Continue to sign in<\/a>/.exec(signUp.html)?.[1]?.replaceAll('&amp;', '&');
  t.is(continueHref, `${page.interaction.pathname}?email=${encodeURIComponent(email)}`);
  const login = await visit(new URL(continueHref!, server.issuer), page.agent);
  t.is(login.status, 200);
  t.regex(login.html, /<h1 id="page-title">Sign in<\/h1>/, 'not signed in by signing up');
  t.is(formField(login.html, 'email'), email);
  t.deepEqual([...login.html.matchAll(/<input id="(\w+)"[^>]*\bautofocus\b/g)].map((match) => match[1]), ['password'], 'the focus goes to the field left to fill in');
  const signedIn = await page.agent.submit(new URL(`${page.interaction.pathname}/login`, server.issuer), {
    csrf: formField(login.html, 'csrf'), email: formField(login.html, 'email'), password: PASSWORD,
  });
  const callback = signedIn.url.href.startsWith(REDIRECT_URI) ? signedIn.url : await toCallback(page.agent, signedIn.url);
  const tokens = await exchange(page, callback);
  const claims = oauth.getValidatedIdTokenClaims(tokens)!;
  t.is(claims.sub, user.id);
  t.deepEqual(claims.amr, ['pwd']);
  const info = await userinfo(page, tokens.access_token, claims.sub);
  t.like(info, { email, email_verified: false, name: 'Grace Hopper' });

  const [mail] = await mailsTo(smtp, email);
  t.is(mail!.email.subject, 'Confirm your email address');
  t.regex(mail!.email.text!, /If you did not create an account, ignore this message/);
  const link = verificationLink(mail!);
  t.is(`${link.origin}${link.pathname}`, `${server.issuer}/verify-email`);
  t.regex(link.searchParams.get('token') ?? '', /^[A-Za-z0-9_-]{43}$/);
  t.true(mail!.email.html!.includes(link.href.replaceAll('&', '&amp;')), 'the HTML part carries the same link');

  // Opening the link shows a button; only pressing it confirms the address.
  const agent = new UserAgent();
  const opened = await visit(link, agent);
  t.is(opened.status, 200);
  t.regex(opened.html, /<h1 id="page-title">Confirm your email address<\/h1>/);
  t.regex(opened.html, /<form method="post" action="\/verify-email">/);
  t.regex(opened.html, /<button type="submit">Confirm my email address<\/button>/);
  t.false((await server.runtime.users.findById(user.id))!.emailVerified, 'opening the link verifies nothing');
  const verified = await pressConfirm(server, agent, opened.html);
  t.is(verified.status, 200);
  t.regex(verified.html, /<h1 id="page-title">Your email is verified<\/h1>/);

  const fresh = await signInAfresh(server, email);
  t.is(fresh.claims.sub, user.id);
  t.is(fresh.info.email_verified, true, 'a fresh sign-in says verified');
  t.is((await userinfo(page, tokens.access_token, claims.sub)).email_verified, true, 'userinfo reads the account as it is now, for the first token too');

  const created = await audit(server, { action: 'account.created', userEmail: email });
  t.is(created.length, 1);
  t.like(created[0]!, { outcome: 'success', subjectUserId: user.id });
  t.is((await audit(server, { action: 'login.succeeded', userEmail: email })).length, 2, 'two sign-ins, both with the password; none by signing up');
  const events = await audit(server, { action: 'email.verified', userEmail: email });
  t.is(events.length, 1);
  t.like(events[0]!, { outcome: 'success', subjectUserId: user.id, subjectEmail: email });
  const token = link.searchParams.get('token')!;
  const everything = JSON.stringify(await audit(server, { userEmail: email }));
  t.false(everything.includes(token), 'no audit row holds the token');
  t.false(everything.includes(PASSWORD), 'no audit row holds the password');
});

test.serial('opening a link (GET or HEAD, as mail scanners do) never uses it; the button works once, then the link is refused', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  t.is((await submitSignUp(await loginPage(server), { email })).status, 200);
  const link = verificationLink((await mailsTo(smtp, email))[0]!);
  t.is((await fetch(link, { method: 'HEAD' })).status, 200, 'a link checker sending HEAD gets an answer');
  const scanned = await Promise.all([visit(link), visit(link), visit(link)]);
  t.deepEqual(scanned.map((answer) => answer.status), [200, 200, 200]);
  t.false((await server.runtime.users.findByEmail(email))!.emailVerified, 'a scanner opening the link verifies nothing');
  t.is((await audit(server, { action: 'email.verified', userEmail: email })).length, 0);

  // The person presses the button on a page a scanner also opened: it still works, once.
  const agent = new UserAgent();
  const opened = await visit(link, agent);
  t.is((await pressConfirm(server, agent, opened.html)).status, 200);
  t.true((await server.runtime.users.findByEmail(email))!.emailVerified);
  const pressedAgain = await pressConfirm(server, agent, opened.html);
  t.is(pressedAgain.status, 400);
  t.regex(pressedAgain.html, /This link is invalid or has expired/);
  const again = await visit(link);
  t.is(again.status, 400, 'the same status as any other invalid link');
  t.regex(again.html, /This link is invalid or has expired/);
  t.regex(again.html, /action="\/verify-email\/resend"/, 'the page offers a new link');
  t.is((await audit(server, { action: 'email.verified', userEmail: email })).length, 1);
});

test.serial('the button needs its CSRF token: without it, 403 and nothing verified', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const link = verificationLink((await mailsTo(smtp, email))[0]!);
  const forged = await fetch(`${server.issuer}/verify-email`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: link.searchParams.get('token')! }).toString(),
  });
  t.is(forged.status, 403);
  t.false((await server.runtime.users.findByEmail(email))!.emailVerified);
  t.is((await confirmLink(server, link)).status, 200, 'the link still works from its page');
});

test.serial('two browsers pressing the button of the same link at once: exactly one verifies it', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const link = verificationLink((await mailsTo(smtp, email))[0]!);
  const statuses = (await Promise.all(Array.from({ length: 5 }, () => confirmLink(server, link)))).map((answer) => answer.status).sort();
  t.deepEqual(statuses, [200, 400, 400, 400, 400]);
  t.is((await audit(server, { action: 'email.verified', userEmail: email })).length, 1);
});

test.serial('links are stored hashed: the token from the message is nowhere in account_tokens, only its SHA-256', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const token = verificationLink((await mailsTo(smtp, email))[0]!).searchParams.get('token')!;
  const rows = await server.runtime.database.prisma.$queryRaw<Array<Record<string, unknown>>>`
    select t.* from account_tokens t join users u on u.id = t.user_id where u.email = ${email}`;
  t.is(rows.length, 1);
  t.false(JSON.stringify(rows).includes(token));
  t.is(rows[0]!.token_hash, createHash('sha256').update(token).digest('hex'));
  t.is(rows[0]!.purpose, 'verify_email');
  t.is(rows[0]!.used_at, null);
});

test.serial('unknown, malformed and missing tokens get a 400 page, never a 500, opened or pressed', async (t) => {
  const { server } = await gatehouse();
  for (const query of ['', '?token=', `?token=${'A'.repeat(43)}`, '?token=%00%00', '?token=a&token=b', `?token=${'x'.repeat(5000)}`]) {
    const answer = await visit(`${server.issuer}/verify-email${query}`);
    t.is(answer.status, 400, query);
    t.regex(answer.html, /This link is invalid or has expired/);
  }
  const agent = new UserAgent();
  const page = await visit(`${server.issuer}/verify-email`, agent);
  for (const token of ['', 'A'.repeat(43), '\u0000', 'x'.repeat(5000)]) {
    const pressed = await pressConfirm(server, agent, page.html, token);
    t.is(pressed.status, 400, JSON.stringify(token.slice(0, 10)));
    t.regex(pressed.html, /This link is invalid or has expired/);
  }
});

test.serial('a newer link replaces the older: asking for a new one makes the first refused', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const first = verificationLink((await mailsTo(smtp, email))[0]!);
  // Asked from the standalone page, as someone holding an old link would.
  const agent = new UserAgent();
  const form = await visit(`${server.issuer}/verify-email`, agent);
  const resent = await agent.request(`${server.issuer}/verify-email/resend`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(form.html, 'csrf'), email }).toString(),
  });
  t.is(resent.status, 200);
  t.regex(await resent.text(), /a new link is on its way/);
  const second = verificationLink((await mailsTo(smtp, email, 2))[1]!);
  t.not(second.href, first.href);
  t.is((await visit(first)).status, 400, 'the older link no longer works');
  t.is((await confirmLink(server, second)).status, 200);
  t.is((await signInAfresh(server, email)).info.email_verified, true);
});

test.serial('the name typed at sign-up is in no message to the address: someone signing up with an address they do not own cannot write to its owner in our mail', async (t) => {
  const { server, smtp } = await gatehouse();
  const victim = newEmail();
  const lure = 'your account was locked. Sign in at http://evil.example/unlock within 24 hours to keep it';
  t.is((await submitSignUp(await loginPage(server), { name: lure, email: victim })).status, 200);
  t.is((await server.runtime.users.findByEmail(victim))!.name, lure, 'the name is kept for the account (its ID token), only mail leaves it out');
  // The link asked for again goes out on another path (the standalone resend page): it must leave the name out too.
  const agent = new UserAgent();
  const form = await visit(`${server.issuer}/verify-email`, agent);
  t.is((await agent.submit(`${server.issuer}/verify-email/resend`, { csrf: formField(form.html, 'csrf'), email: victim })).response.status, 200);

  const mails = await mailsTo(smtp, victim, 2);
  for (const [which, mail] of [['at sign-up', mails[0]!], ['resent', mails[1]!]] as const) {
    t.is(mail.email.subject, 'Confirm your email address', which);
    const { text, html } = mail.email;
    for (const [part, body] of [['text', text ?? ''], ['HTML', html ?? '']] as const) {
      for (const fragment of ['locked', 'evil.example', 'within 24 hours to keep it']) {
        t.false(body.includes(fragment), `the ${part} part of the mail ${which} has no "${fragment}"`);
      }
    }
    t.true(text!.startsWith('Hello,\n'), `the mail ${which} greets no one by name`);
    t.true(html!.includes('<p>Hello,</p>'), `the HTML part of the mail ${which} greets no one by name`);
  }
});

test.serial('the token service: peek does not use a token, redeem uses it once, a token of another purpose is unknown', async (t) => {
  const { server } = await gatehouse();
  const tokens = server.runtime.accountTokens;
  const user = await createUser(server);
  const raw = await tokens.issue(user.id, 'reset_password', user.email, 600);
  t.like(await tokens.peek(raw, 'reset_password'), { ok: true, userId: user.id, email: user.email });
  t.like(await tokens.peek(raw, 'reset_password'), { ok: true }, 'peeking twice still leaves it valid');
  t.deepEqual(await tokens.redeem(raw, 'verify_email'), { ok: false, reason: 'unknown' }, 'a reset link cannot verify an address');
  t.like(await tokens.redeem(raw, 'reset_password'), { ok: true, userId: user.id, email: user.email });
  t.deepEqual(await tokens.redeem(raw, 'reset_password'), { ok: false, reason: 'used', userId: user.id, email: user.email });
  t.deepEqual(await tokens.peek(raw, 'reset_password'), { ok: false, reason: 'used', userId: user.id, email: user.email }, 'a used link still says whose it was');
  t.deepEqual(await tokens.redeem('not a token', 'reset_password'), { ok: false, reason: 'unknown' });
  // A new link of one purpose leaves the other purposes' links alone.
  const verify = await tokens.issue(user.id, 'verify_email', user.email, 600);
  const reset = await tokens.issue(user.id, 'reset_password', user.email, 600);
  await tokens.issue(user.id, 'verify_email', user.email, 600);
  t.deepEqual(await tokens.peek(verify, 'verify_email'), { ok: false, reason: 'unknown' });
  t.like(await tokens.peek(reset, 'reset_password'), { ok: true });
  await tokens.revoke(user.id, 'reset_password');
  t.deepEqual(await tokens.redeem(reset, 'reset_password'), { ok: false, reason: 'unknown' }, 'a revoked link no longer works');
});

test.serial('links issued at the same moment: exactly one of them works, and the table holds one row', async (t) => {
  const { server } = await gatehouse();
  const tokens = server.runtime.accountTokens;
  const user = await createUser(server);
  const issued = await Promise.all(Array.from({ length: 8 }, () => tokens.issue(user.id, 'verify_email', user.email, 600)));
  const valid = (await Promise.all(issued.map((raw) => tokens.peek(raw, 'verify_email')))).filter((check) => check.ok);
  t.is(valid.length, 1);
  t.is(await server.runtime.database.prisma.accountToken.count({ where: { userId: user.id, purpose: 'verify_email' } }), 1);
});

test.serial('a link sent to an old address does not verify the new one', async (t) => {
  const { server, smtp } = await gatehouse();
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const link = verificationLink((await mailsTo(smtp, email))[0]!);
  const agent = new UserAgent();
  const opened = await visit(link, agent);
  t.is(opened.status, 200);
  const user = (await server.runtime.users.findByEmail(email))!;
  const changed = newEmail();
  await server.runtime.database.prisma.$executeRaw`update users set email = ${changed}, email_verified = false where id = ${user.id}::uuid`;
  t.is((await visit(link)).status, 400, 'opened after the change');
  t.is((await pressConfirm(server, agent, opened.html)).status, 400, 'pressed on a page opened before the change');
  t.false((await server.runtime.users.findById(user.id))!.emailVerified);
  t.is((await audit(server, { action: 'email.verified', userEmail: changed })).length, 0);
});

test.serial('an expired link is refused', async (t) => {
  // Long enough for the message to arrive and be opened on a busy machine, short enough to wait out.
  const { server, smtp } = await gatehouse({ EMAIL_VERIFICATION_TTL: '5' });
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const mail = (await mailsTo(smtp, email))[0]!;
  t.regex(mail.email.text!, /expires in 1 minute/, 'the message rounds up to a whole minute');
  const link = verificationLink(mail);
  const agent = new UserAgent();
  const opened = await visit(link, agent);
  t.is(opened.status, 200);
  const issued = await server.runtime.accountTokens.peek(link.searchParams.get('token')!, 'verify_email');
  if (!issued.ok) throw new Error(`the link no longer works before its time: ${issued.reason}`);
  // A real wait, until just past the link's own expiry: links are checked against the system clock (the
  // account_tokens rows and AccountTokens take no Clock), so only real time can age one.
  await sleep(Math.max(0, issued.expiresAt.getTime() - Date.now()) + 50);
  t.deepEqual(await server.runtime.accountTokens.peek(link.searchParams.get('token')!, 'verify_email'), { ok: false, reason: 'expired' });
  const answer = await visit(link);
  t.is(answer.status, 400);
  t.regex(answer.html, /This link is invalid or has expired/);
  t.is((await pressConfirm(server, agent, opened.html)).status, 400);
  t.false((await server.runtime.users.findByEmail(email))!.emailVerified);
});

test.serial('following up emailed links is limited per IP: opening and pressing both count, 429 with Retry-After', async (t) => {
  const { server, smtp } = await gatehouse({ EMAILED_LINK_LIMIT_PER_IP: '3/600' });
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  const link = verificationLink((await mailsTo(smtp, email))[0]!);
  const agent = new UserAgent();
  const opened = await visit(link, agent);
  t.is(opened.status, 200);
  t.is((await visit(`${server.issuer}/verify-email?token=${'A'.repeat(43)}`)).status, 400, 'an unknown token counts too');
  t.is((await visit(link)).status, 200);
  const refused = await visit(link);
  t.is(refused.status, 429);
  const retryAfter = Number(refused.retryAfter);
  t.true(retryAfter > 500 && retryAfter <= 600, `Retry-After ${refused.retryAfter}`);
  t.regex(refused.html, /confirming email addresses is paused/);
  const pressed = await pressConfirm(server, agent, opened.html);
  t.is(pressed.status, 429);
  t.false((await server.runtime.users.findByEmail(email))!.emailVerified, 'a refused press verifies nothing');
});

/** Sign-up with an address that has an account and with a new one: the same answer, whatever the settings. */
async function sameAnswerForRegisteredAddresses(t: ExecutionContext, environment: Record<string, string>, offersSignIn: boolean) {
  const { server, smtp } = await gatehouse(environment);
  const owner = await createUser(server);
  const fresh = newEmail();
  const [existing, created] = await Promise.all([
    submitSignUp(await loginPage(server), { name: 'Mallory', email: owner.email, password: 'another good passphrase here' }),
    submitSignUp(await loginPage(server), { name: 'Mallory', email: fresh, password: 'another good passphrase here' }),
  ]);
  t.is(existing.status, 200);
  t.is(created.status, 200);
  t.is(existing.response.headers.get('location'), null);
  t.is(created.response.headers.get('location'), null, 'no sign-in for a new address either');
  t.is(withoutIds(existing.html, owner.email), withoutIds(created.html, fresh), 'the same page but for the typed address');
  t.regex(created.html, /<h1 id="page-title">Check your email<\/h1>/);
  t.regex(created.html, /expires in 24 hours/);
  t.is(/>Continue to sign in</.test(created.html), offersSignIn);

  const [notice] = await mailsTo(smtp, owner.email);
  t.is(notice!.email.subject, 'You already have an account');
  t.true(notice!.email.text!.startsWith('Hello,\n'), 'no name in the greeting: not the owner\'s, not the one typed at sign-up');
  t.false(`${notice!.email.text}${notice!.email.html}`.includes('Mallory'), 'the name typed at sign-up does not reach the owner');
  t.regex(notice!.email.text!, new RegExp(`${server.issuer}/account`));
  t.false(notice!.email.text!.includes('verify-email'), 'no verification link for a registered address');
  t.is((await mailsTo(smtp, fresh))[0]!.email.subject, 'Confirm your email address');
  await server.settled();
  t.is(smtp.receivedBy(owner.email).length, 1, 'one message each');
  t.is(smtp.receivedBy(fresh).length, 1);

  const account = (await server.runtime.users.findByEmail(owner.email))!;
  t.is(account.name, 'Ada Lovelace', 'the existing account is untouched');
  t.is((await signInAfresh(server, owner.email)).claims.sub, owner.id, 'its password still works');
  const attempts = await audit(server, { action: 'account.created', userEmail: owner.email });
  t.is(attempts.length, 1);
  t.like(attempts[0]!, { outcome: 'failure', subjectUserId: owner.id, detail: { reason: 'email_taken' } });
}

test.serial('a registered address gets the same page and status as a new one, with the default settings: no sign-in, its owner told by email', async (t) => {
  await sameAnswerForRegisteredAddresses(t, {}, true);
});

test.serial('a registered address gets the same page and status as a new one when UNVERIFIED_LOGIN_ALLOWED=false', async (t) => {
  await sameAnswerForRegisteredAddresses(t, VERIFY_FIRST, false);
});

test.serial('unverified accounts cannot sign in when UNVERIFIED_LOGIN_ALLOWED=false, until the emailed link is followed', async (t) => {
  const { server, smtp } = await gatehouse(VERIFY_FIRST);
  const email = newEmail();
  const signUp = await submitSignUp(await loginPage(server), { email });
  t.is(signUp.status, 200, 'no sign-in after sign-up');
  t.regex(signUp.html, /Check your email/);
  t.false(signUp.html.includes('Continue to sign in'), 'no offer to sign in before the address is confirmed');
  const [firstMail] = await mailsTo(smtp, email);

  const page = await loginPage(server);
  const refused = await page.agent.request(new URL(`${page.interaction.pathname}/login`, page.interaction), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(page.html, 'csrf'), email, password: PASSWORD }).toString(),
  });
  t.is(refused.status, 403);
  const gate = await refused.text();
  t.regex(gate, /<h1 id="page-title">Verify your email to continue<\/h1>/);
  const failures = await audit(server, { action: 'login.failed', userEmail: email });
  t.is(failures.length, 1);
  t.deepEqual(failures[0]!.detail, { reason: 'email_not_verified' });

  // A new link from the refusal page (its form posts under the interaction, where its CSRF cookie is).
  const resend = await page.agent.submit(new URL(formAction(gate, /verify-email\/resend$/), server.issuer), {
    csrf: formField(gate, 'csrf'), email: formField(gate, 'email'),
  });
  t.is(resend.response.status, 200);
  t.regex(await resend.response.text(), /a new link is on its way/);
  const [, secondMail] = await mailsTo(smtp, email, 2);
  t.is((await visit(verificationLink(firstMail!))).status, 400, 'the first link was replaced');
  t.is((await confirmLink(server, verificationLink(secondMail!))).status, 200);

  t.is((await signInAfresh(server, email)).info.email_verified, true);
});

test.serial('the link followed in the browser that signed up leads back to that sign-in, which ends at the application; in another browser it does not', async (t) => {
  const { server, smtp } = await gatehouse(VERIFY_FIRST);
  const email = newEmail();
  const page = await loginPage(server);
  t.is((await submitSignUp(page, { email })).status, 200);
  const [mail] = await mailsTo(smtp, email);
  t.notRegex((await confirmLink(server, verificationLink(mail!), new UserAgent())).html, /Continue to sign in/, 'another browser is not offered the way back');

  // A second address signed up from the same sign-in, confirmed in its browser.
  const second = newEmail();
  t.is((await submitSignUp(page, { email: second })).status, 200);
  const [secondMail] = await mailsTo(smtp, second);
  const confirmed = await confirmLink(server, verificationLink(secondMail!), page.agent);
  t.is(confirmed.status, 200);
  const href = /<a href="([^"]+)">Continue to sign in to Test SPA<\/a>/.exec(confirmed.html)?.[1]?.replaceAll('&amp;', '&');
  t.truthy(href, 'the page offers to continue the sign-in');
  const continueUrl = new URL(href!, server.issuer);
  t.is(continueUrl.pathname, page.interaction.pathname);
  t.is(continueUrl.searchParams.get('email'), second);
  const callback = await signIn(page.agent, continueUrl, { email: second, password: PASSWORD });
  const tokens = await exchange(page, callback);
  t.is(oauth.getValidatedIdTokenClaims(tokens)!.email, second);
});

test.serial('asking for a new link: the same answer for unknown, verified and unverified addresses; only the unverified one gets mail', async (t) => {
  const { server, smtp } = await gatehouse(VERIFY_FIRST);
  const verifiedUser = await createUser(server);
  const unknown = newEmail();
  const unverified = newEmail();
  await submitSignUp(await loginPage(server), { email: unverified });
  await mailsTo(smtp, unverified);

  async function ask(email: string) {
    const agent = new UserAgent();
    const form = await visit(`${server.issuer}/verify-email`, agent);
    const response = await agent.request(`${server.issuer}/verify-email/resend`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(form.html, 'csrf'), email }).toString(),
    });
    return { status: response.status, html: withoutIds(await response.text(), email) };
  }
  const answers = [await ask(unknown), await ask(verifiedUser.email), await ask(unverified)];
  t.deepEqual(answers.map((answer) => answer.status), [200, 200, 200]);
  t.is(answers[0]!.html, answers[1]!.html);
  t.is(answers[1]!.html, answers[2]!.html);
  await mailsTo(smtp, unverified, 2);
  await server.settled();
  t.is(smtp.receivedBy(unknown).length, 0);
  t.is(smtp.receivedBy(verifiedUser.email).length, 0);

  const malformed = await ask('not an address');
  t.is(malformed.status, 400);
  t.regex(malformed.html, /aria-invalid="true"/);
});

test.serial('asking for a new link is limited per address and per IP: 429 with Retry-After, the same for any address', async (t) => {
  const { server, smtp } = await gatehouse({ VERIFY_RESEND_LIMIT_PER_ACCOUNT: '2/600', VERIFY_RESEND_LIMIT_PER_IP: '6/600' });
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  await mailsTo(smtp, email);
  const agent = new UserAgent();
  const form = await visit(`${server.issuer}/verify-email`, agent);
  const ask = async (address: string) => {
    const response = await agent.request(`${server.issuer}/verify-email/resend`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(form.html, 'csrf'), email: address }).toString(),
    });
    return { status: response.status, retryAfter: response.headers.get('retry-after'), html: await response.text() };
  };
  t.is((await ask(email)).status, 200);
  t.is((await ask(email)).status, 200);
  const refused = await ask(email.toUpperCase());
  t.is(refused.status, 429, 'the third request for the same address, however written');
  const retryAfter = Number(refused.retryAfter);
  t.true(retryAfter > 500 && retryAfter <= 600, `Retry-After ${refused.retryAfter}`);
  t.regex(refused.html, /sending verification emails is paused/);
  await mailsTo(smtp, email, 3);

  const unknown = newEmail();
  t.is((await ask(unknown)).status, 200);
  t.is((await ask(unknown)).status, 200);
  const ipRefused = await ask(unknown);
  t.is(ipRefused.status, 429, 'an unknown address is limited the same way');
  t.truthy(ipRefused.retryAfter);
  t.is((await ask(newEmail())).status, 429, 'and the IP is now over its limit for any address');
  await server.settled();
  t.is(smtp.receivedBy(email).length, 3, 'refused requests send nothing');
});

test.serial('sign-up is limited per IP: 429 with Retry-After and no account', async (t) => {
  const { server } = await gatehouse({ SIGNUP_LIMIT_PER_IP: '2/600' });
  t.is((await submitSignUp(await loginPage(server), { email: 'not an address' })).status, 400, 'every submission counts');
  t.is((await submitSignUp(await loginPage(server), { email: newEmail() })).status, 200);
  const email = newEmail();
  const refused = await submitSignUp(await loginPage(server), { email });
  t.is(refused.status, 429);
  t.truthy(Number(refused.response.headers.get('retry-after')) > 0);
  t.regex(refused.html, /creating accounts is paused/);
  t.is(await server.runtime.users.findByEmail(email), null);
});

test.serial('sign-up is limited per address too (each one mails it): 429 for a new and a registered address alike', async (t) => {
  const { server, smtp } = await gatehouse({ SIGNUP_LIMIT_PER_ACCOUNT: '2/600' });
  const registered = await createUser(server);
  for (const email of [newEmail(), registered.email]) {
    const before = smtp.received.length;
    t.is((await submitSignUp(await loginPage(server), { email })).status, 200);
    t.is((await submitSignUp(await loginPage(server), { email: email.toUpperCase() })).status, 200);
    const refused = await submitSignUp(await loginPage(server), { email });
    t.is(refused.status, 429, email);
    t.truthy(Number(refused.response.headers.get('retry-after')) > 0);
    await server.settled();
    t.true(smtp.received.length - before <= 2, 'no more than two messages went to the address');
  }
});

/** A browser at another IP address, as a server trusting its proxy (TRUST_PROXY=true) sees it. */
const browserAt = (ip: string) => new UserAgent({ headers: { 'x-forwarded-for': ip } });
/** Per address and IP limits low, per address limits out of the way: one server for both tests below. */
const PER_ADDRESS_AND_IP = {
  TRUST_PROXY: 'true', SIGNUP_LIMIT_PER_ACCOUNT_IP: '2/600', SIGNUP_LIMIT_PER_ACCOUNT: '100/600',
  VERIFY_RESEND_LIMIT_PER_ACCOUNT_IP: '1/600', VERIFY_RESEND_LIMIT_PER_ACCOUNT: '100/600',
};

test.serial('sign-up is limited per address and IP: the same address from another IP is still answered', async (t) => {
  const { server, smtp } = await gatehouse(PER_ADDRESS_AND_IP);
  const email = newEmail();
  t.is((await submitSignUp(await loginPage(server, browserAt('192.0.2.1')), { email })).status, 200);
  t.is((await submitSignUp(await loginPage(server, browserAt('192.0.2.1')), { email })).status, 200);
  const refused = await submitSignUp(await loginPage(server, browserAt('192.0.2.1')), { email: email.toUpperCase() });
  t.is(refused.status, 429, 'a third time from the same IP');
  t.truthy(Number(refused.response.headers.get('retry-after')) > 0);
  t.is((await submitSignUp(await loginPage(server, browserAt('192.0.2.1')), { email: newEmail() })).status, 200, 'another address from that IP');
  t.is((await submitSignUp(await loginPage(server, browserAt('192.0.2.2')), { email })).status, 200, 'the address from another IP');
  await mailsTo(smtp, email, 3);
});

test.serial('asking for a new link is limited per address and IP: the same address from another IP is still answered', async (t) => {
  const { server, smtp } = await gatehouse(PER_ADDRESS_AND_IP);
  const email = newEmail();
  await submitSignUp(await loginPage(server), { email });
  await mailsTo(smtp, email);
  const ask = async (agent: UserAgent, address: string) => {
    const form = await visit(`${server.issuer}/verify-email`, agent);
    const response = await agent.request(`${server.issuer}/verify-email/resend`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ csrf: formField(form.html, 'csrf'), email: address }).toString(),
    });
    await response.arrayBuffer();
    return { status: response.status, retryAfter: response.headers.get('retry-after') };
  };
  const first = browserAt('192.0.2.1');
  t.is((await ask(first, email)).status, 200);
  const refused = await ask(first, email);
  t.is(refused.status, 429, 'a second time from the same IP');
  t.truthy(Number(refused.retryAfter) > 0);
  t.is((await ask(browserAt('192.0.2.2'), email)).status, 200, 'the address from another IP');
  await mailsTo(smtp, email, 3);
});

test.serial('with SIGNUP_ENABLED=false there is no link and the sign-up pages are 404', async (t) => {
  const { server } = await gatehouse({ SIGNUP_ENABLED: 'false' });
  const page = await loginPage(server);
  t.false(page.html.includes('/sign-up'));
  t.false(page.html.includes('Create an account'));
  const form = await page.agent.request(new URL(`${page.interaction.pathname}/sign-up`, page.interaction));
  t.is(form.status, 404);
  const email = newEmail();
  const post = await page.agent.request(new URL(`${page.interaction.pathname}/sign-up`, page.interaction), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(page.html, 'csrf'), email, password: PASSWORD }).toString(),
  });
  t.is(post.status, 404);
  t.is(await server.runtime.users.findByEmail(email), null);
  // A failed login renders the page again: still no link.
  const failed = await page.agent.request(new URL(`${page.interaction.pathname}/login`, page.interaction), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: formField(page.html, 'csrf'), email, password: 'wrong password' }).toString(),
  });
  t.is(failed.status, 401);
  t.false((await failed.text()).includes('/sign-up'));
});

test.serial('the sign-up form: accessible fields, and weak passwords, invalid addresses and bad names explained on it with nothing created', async (t) => {
  const { server, smtp } = await gatehouse();
  const page = await loginPage(server);
  const form = await page.agent.request(new URL(`${page.interaction.pathname}/sign-up`, page.interaction));
  const html = await form.text();
  t.is(form.status, 200);
  t.is(form.headers.get('cache-control'), 'no-store');
  t.regex(html, /<h1 id="page-title">Create an account<\/h1>/);
  for (const [id, autocomplete] of [['name', 'name'], ['email', 'email'], ['password', 'new-password']]) {
    t.regex(html, new RegExp(`<label for="${id}">`));
    t.regex(html, new RegExp(`id="${id}"[^>]*autocomplete="${autocomplete}"`));
  }
  t.regex(html, /At least 8 characters/, 'the policy is stated before it is applied');

  const cases = [
    { fields: { email: newEmail(), password: 'short' }, field: 'password', message: /between 8 and 256 characters/ },
    { fields: { email: newEmail(), password: 'password123' }, field: 'password', message: /list of common or breached passwords/ },
    { fields: { name: 'Grace Hopper', email: newEmail(), password: 'hopper rules the navy' }, field: 'password', message: /must not contain your email address or your name/ },
    { fields: { email: 'grace@', password: PASSWORD }, field: 'email', message: /Enter an email address/ },
    { fields: { name: 'x'.repeat(201), email: newEmail(), password: PASSWORD }, field: 'name', message: /at most 200 characters/ },
    { fields: { name: 'Grace\r\nBcc: someone', email: newEmail(), password: PASSWORD }, field: 'name', message: /line breaks/ },
  ];
  for (const { fields, field, message } of cases) {
    const answer = await submitSignUp(page, fields);
    t.is(answer.status, 400, field);
    t.regex(answer.html, new RegExp(`<p class="alert" role="alert" id="${field}-error">`));
    t.regex(answer.html, message);
    t.regex(answer.html, new RegExp(`id="${field}"[^>]*aria-describedby="[^"]*${field}-error"[^>]*aria-invalid="true"`, 's'));
    t.false(answer.html.includes(fields.password), 'the password is never sent back');
    if (field !== 'email') t.is(await server.runtime.users.findByEmail(fields.email), null);
  }
  await server.settled();
  t.is(smtp.received.filter((mail) => cases.some(({ fields }) => mail.envelope.to.includes(fields.email))).length, 0);
});

test.serial('sign-up forms without their CSRF token are refused with 403 and create nothing', async (t) => {
  const { server } = await gatehouse();
  const page = await loginPage(server);
  const email = newEmail();
  const answer = await submitSignUp(page, { email }, { csrf: false });
  t.is(answer.status, 403);
  t.is(await server.runtime.users.findByEmail(email), null);

  const resend = await new UserAgent().request(`${server.issuer}/verify-email/resend`, {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ email }).toString(),
  });
  t.is(resend.status, 403);
  const interactionResend = await page.agent.request(new URL(`${page.interaction.pathname}/verify-email/resend`, page.interaction), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ email }).toString(),
  });
  t.is(interactionResend.status, 403);
});

test.serial('sign-up is only for a sign-in that asks for a login', async (t) => {
  const { server } = await gatehouse();
  const gone = await visit(`${server.issuer}/interaction/not-a-sign-in/sign-up`);
  t.is(gone.status, 400);
  t.regex(gone.html, /sign in again/);
});

test.serial('a message the mail server refuses is logged by what failed and the error name only: never the address, link or token', async (t) => {
  const smtp = await startSmtpServer({ refuseRecipient: (address) => address.startsWith('refused-') });
  const { logger, lines } = capturingLogger();
  const server = await startTestServer({ SMTP_URL: smtp.url }, { logger });
  started.push({ server, smtp });
  const newcomer = `refused-${crypto.randomUUID()}@example.com`;
  const owner = await createUser(server, `refused-${crypto.randomUUID()}@example.com`);

  // A new account (its verification link), a registered address (the notice to its owner), a new link.
  t.is((await submitSignUp(await loginPage(server), { email: newcomer })).status, 200);
  t.is((await submitSignUp(await loginPage(server), { email: owner.email })).status, 200);
  const agent = new UserAgent();
  const form = await visit(`${server.issuer}/verify-email`, agent);
  const resent = await agent.submit(`${server.issuer}/verify-email/resend`, { csrf: formField(form.html, 'csrf'), email: newcomer });
  t.is(resent.response.status, 200, 'the person sees the usual answer');

  const expected = [
    'sign-up verification email failed after the response (MailRejected)',
    'sign-up notice to an existing account failed after the response (MailRejected)',
    'new verification link failed after the response (MailRejected)',
  ];
  await server.settled();
  for (const message of expected) t.true(lines.some((line) => line.includes(message)), message);
  // The audit trail's own lines name the account on purpose; every other line must not. The start-up line names
  // migrations, whose names may be as long as a token.
  const logged = lines.filter((line) => (JSON.parse(line) as { component?: string }).component !== 'audit' && !line.includes('"msg":"database migrated"')).join('\n');
  t.false(logged.includes('@example.com'), 'no address (nor the mail server\'s reply quoting it)');
  // A link carries ?token=, a token is 32 random bytes in base64url (43 characters, as the interaction
  // uid in a logged path is); the word itself may appear (a migration named account_tokens_… is logged).
  t.false(logged.includes('token='), 'no link');
  t.false(/(?<![\w-])[\w-]{43}(?![\w-])/.test(logged.replace(/\/interaction\/[\w-]+/g, '/interaction/UID')), 'no token');
  t.false(logged.includes('mailbox unavailable'), 'not the mail server\'s reply');
  t.is(smtp.received.length, 0);
});
