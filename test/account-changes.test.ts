// Changing the password and the email address from the account console, through the real pages and a
// real SMTP server: the current password is asked (its guesses counted, never forgiven, and toward the
// sign-in lockout), a new password ends every other session, grant and pending emailed link (sessions and
// grants read by oauth4webapi), a new address is confirmed by a link sent to it before it is used (requests
// limited per account and per new address, link uses per IP), the old address is told, and new ID tokens
// carry the new address. Nothing secret is logged.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { generate } from 'otplib';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { linkIn, startSmtpServer, type TestSmtpServer } from './helpers/smtp.ts';
import { UserAgent, formField, page, post, type Page } from './helpers/user-agent.ts';
import { until } from './helpers/wait.ts';
import { signInToAccount } from './helpers/account.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';

const NEW_PASSWORD = 'velvet harbour lantern quartz';

let smtp: TestSmtpServer;
let server: TestServer;
/** Every log line of `server`, at debug level. */
let logLines: string[];
let strict: TestServer;
let limited: TestServer;

test.before(async () => {
  smtp = await startSmtpServer();
  const capture = capturingLogger();
  logLines = capture.lines;
  server = await startTestServer({ SMTP_URL: smtp.url, EMAILED_LINK_LIMIT_PER_IP: '1000/600' }, { logger: capture.logger });
  // Two password checks per account and window.
  strict = await startTestServer({ SMTP_URL: smtp.url, PASSWORD_CHECK_LIMIT_PER_ACCOUNT: '2/600' });
  // A lockout after three failures, two email-change requests per account and per new address, and three
  // uses of emailed links per IP (only one test opens links here).
  limited = await startTestServer({
    SMTP_URL: smtp.url, LOGIN_LOCKOUT_THRESHOLD: '3', EMAIL_CHANGE_LIMIT_PER_ACCOUNT: '2/600',
    VERIFY_RESEND_LIMIT_PER_ACCOUNT: '2/600', EMAILED_LINK_LIMIT_PER_IP: '3/600',
  });
});
test.after.always(async () => {
  await Promise.allSettled([server?.close(), strict?.close(), limited?.close()]);
  await smtp?.close();
});

function auditEvents(target: TestServer, email: string, action: string) {
  return target.runtime.auditTrail.list({ userEmail: email, action, limit: 20 });
}

/** A person signed in to the account console on one of its pages, in a browser of their own. */
async function signedIn(target: TestServer, pagePath: string, email?: string) {
  const user = email ? (await target.runtime.users.findByEmail(email))! : await createUser(target);
  const agent = new UserAgent();
  const { html, url } = await signInToAccount(target, agent, { email: user.email, password: PASSWORD }, pagePath);
  if (url.pathname !== pagePath) throw new Error(`expected ${pagePath}, reached ${url.pathname}`);
  return { user, agent, html };
}

/** The ids of a page's fields with autofocus: the first in error, or the first of the form. */
function focusedFields(html: string): string[] {
  return [...html.matchAll(/<input id="([^"]+)"[^>]*\bautofocus\b[^>]*>/g)].map((match) => match[1]!);
}

function changePassword(target: TestServer, agent: UserAgent, html: string, current: string, password: string, confirm = password) {
  return post(agent, `${target.issuer}/account/password`, { csrf: formField(html, 'csrf'), current_password: current, password, confirm });
}

function changeEmail(target: TestServer, agent: UserAgent, html: string, email: string, current = PASSWORD) {
  return post(agent, `${target.issuer}/account/email`, { csrf: formField(html, 'csrf'), email, current_password: current });
}

/** The new address's link, opened in a browser where nobody is signed in, and its button pressed. */
async function confirmFromAnotherBrowser(link: string): Promise<{ shown: Page; confirmed: Page; agent: UserAgent }> {
  const agent = new UserAgent();
  const shown = await page(agent, link);
  const confirmed = await post(agent, new URL('/email/confirm-change', link), { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  return { shown, confirmed, agent };
}

test('changing the password asks the current one; then this browser stays signed in while every other session and grant ends, and a notice arrives', async (t) => {
  const { as, client, user, agent: elsewhere, tokens } = await signInToNewSpa(server);
  const { agent: here, html } = await signedIn(server, '/account/password', user.email);
  t.regex(html, /autocomplete="current-password"/);
  t.regex(html, /autocomplete="new-password"/);

  const wrong = await changePassword(server, here, html, 'not my password', NEW_PASSWORD);
  t.is(wrong.status, 400);
  t.regex(wrong.html, /That is not your current password/);
  t.regex(wrong.html, /aria-describedby="current-password-error" aria-invalid="true"/);
  t.regex(wrong.html, /role="alert" id="current-password-error"/);
  t.deepEqual(focusedFields(wrong.html), ['current_password']);
  const [failed] = await auditEvents(server, user.email, 'reauthentication.failed');
  t.is(failed!.outcome, 'failure');
  t.is(failed!.detail.purpose, 'change_password');

  const done = await changePassword(server, here, html, PASSWORD, NEW_PASSWORD);
  t.is(done.status, 200);
  t.regex(done.html, /Your password is changed/);

  t.is((await here.request(`${server.issuer}/account`)).status, 200, 'this browser stays signed in');
  const other = await elsewhere.request(`${server.issuer}/account`);
  t.is(other.status, 302, 'the other browser is signed out');
  t.is(new URL(other.headers.get('location')!).pathname, '/auth');
  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant', 'the application signed in elsewhere lost its refresh token');

  t.false((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok);
  t.true((await server.runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);
  const notice = await smtp.mailTo(user.email, 'Your password was changed');
  t.is(linkIn(notice), `${server.issuer}/password/forgot`);
  const [changed] = await auditEvents(server, user.email, 'password.changed');
  t.is(changed!.outcome, 'success');
  t.true(Number(changed!.detail.sessionsEnded) >= 1);
});

test('the new password must pass the policy, be typed twice alike and differ from the current one', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/password');
  const weak = await changePassword(server, agent, html, PASSWORD, 'qwertyuiop');
  t.is(weak.status, 400);
  t.regex(weak.html, /aria-describedby="password-hint password-error" aria-invalid="true"/);
  t.deepEqual(focusedFields(weak.html), ['password']);
  const mismatch = await changePassword(server, agent, html, PASSWORD, NEW_PASSWORD, 'something else entirely');
  t.is(mismatch.status, 400);
  t.regex(mismatch.html, /id="confirm-error"/);
  t.deepEqual(focusedFields(mismatch.html), ['confirm']);
  const same = await changePassword(server, agent, html, PASSWORD, PASSWORD);
  t.is(same.status, 400);
  t.regex(same.html, /must differ from your current one/);
  t.true((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'nothing changed');
});

test('current-password checks are counted per account: past the limit a 429 with Retry-After, even with the right password, on both pages', async (t) => {
  const { user, agent, html } = await signedIn(strict, '/account/password');
  t.is((await changePassword(strict, agent, html, 'guess one', NEW_PASSWORD)).status, 400);
  t.is((await changePassword(strict, agent, html, 'guess two', NEW_PASSWORD)).status, 400);
  const refused = await changePassword(strict, agent, html, PASSWORD, NEW_PASSWORD);
  t.is(refused.status, 429);
  t.true(Number(refused.response.headers.get('retry-after')) > 0);
  t.regex(refused.html, /changing your password is paused/);
  t.regex(refused.html, /<a href="\/account">Back to your account<\/a>/, 'a way back');
  const emailForm = await page(agent, `${strict.issuer}/account/email`);
  t.is((await changeEmail(strict, agent, emailForm.html, `elsewhere-${crypto.randomUUID()}@example.org`)).status, 429);
  t.true((await strict.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'nothing changed');
});

test('the right current password does not forgive earlier guesses: they stay counted', async (t) => {
  const { agent, html } = await signedIn(strict, '/account/password');
  const mismatch = await changePassword(strict, agent, html, PASSWORD, NEW_PASSWORD, 'typed differently');
  t.is(mismatch.status, 400, 'the right password, but the new one typed differently');
  t.regex(mismatch.html, /id="confirm-error"/);
  t.is((await changePassword(strict, agent, html, 'a guess', NEW_PASSWORD)).status, 400);
  t.is((await changePassword(strict, agent, html, PASSWORD, NEW_PASSWORD)).status, 429, 'three checks, whatever their outcome');
});

test('wrong current passwords count toward the sign-in lockout, on this browser\'s own lock first (it proved itself at sign-in): then on the account\'s, and the right password is refused on the login page too; each is audited', async (t) => {
  const { user, agent, html } = await signedIn(limited, '/account/password');
  t.truthy(agent.cookie('gatehouse.device'), 'the sign-in made this browser a trusted device, at the console too');
  t.is((await changePassword(limited, agent, html, 'guess one', NEW_PASSWORD)).status, 400);
  t.is((await changePassword(limited, agent, html, 'guess two', NEW_PASSWORD)).status, 400);
  const deviceLocked = await changePassword(limited, agent, html, 'guess three', NEW_PASSWORD);
  t.is(deviceLocked.status, 429, 'the third failure locks the trusted device');
  t.is(agent.cookie('gatehouse.device'), undefined, 'and ends its trust');
  const other = await signedIn(limited, '/account/password', user.email).catch(() => undefined);
  t.truthy(other, 'the account itself is not locked: the guesses were the device\'s');

  // From now on this browser is under the account's lockout like any other.
  t.is((await changePassword(limited, agent, html, 'guess four', NEW_PASSWORD)).status, 400);
  t.is((await changePassword(limited, agent, html, 'guess five', NEW_PASSWORD)).status, 400);
  const locked = await changePassword(limited, agent, html, 'guess six', NEW_PASSWORD);
  t.is(locked.status, 429, 'the next three lock the account');
  t.true(Number(locked.response.headers.get('retry-after')) > 0);

  // Signing in again, in another browser, with the right password: the lockout holds there too.
  const browser = new UserAgent();
  const login = await browser.follow(`${limited.issuer}/account`);
  const loginPage = await login.response.text();
  t.regex(loginPage, /name="password"/);
  const refused = await post(browser, new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(loginPage, 'csrf'), email: user.email, password: PASSWORD });
  t.is(refused.status, 429);
  t.regex(refused.html, /Too many attempts/);

  const failures = await auditEvents(limited, user.email, 'reauthentication.failed');
  t.is(failures.length, 6);
  t.true(failures.every((event) => event.outcome === 'failure' && event.detail.purpose === 'change_password'));
  t.is((await auditEvents(limited, user.email, 'login.locked_out')).length, 2, 'the device\'s lock, then the account\'s');
});

test('someone else\'s wrong passwords lock the account, but not its owner out of the console: from the browser they signed in with, the password still changes', async (t) => {
  const { user, agent, html } = await signedIn(limited, '/account/password');
  const attacker = new UserAgent();
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const login = await attacker.follow(`${limited.issuer}/account`);
    const loginPage = await login.response.text();
    await post(attacker, new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(loginPage, 'csrf'), email: user.email, password: `guess ${attempt}` });
  }
  t.is((await auditEvents(limited, user.email, 'login.locked_out')).length, 1, 'the account is locked');
  const changed = await changePassword(limited, agent, html, PASSWORD, NEW_PASSWORD);
  t.is(changed.status, 200);
  t.regex(changed.html, /password is changed|Your password has been changed/i);
});

test('email-change requests are limited per account (EMAIL_CHANGE_LIMIT_PER_ACCOUNT), successful ones included', async (t) => {
  const { user, agent, html } = await signedIn(limited, '/account/email');
  const first = `first-${crypto.randomUUID()}@example.org`;
  const second = `second-${crypto.randomUUID()}@example.org`;
  const third = `third-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(limited, agent, html, first)).status, 200);
  t.is((await changeEmail(limited, agent, html, second)).status, 200);
  const refused = await changeEmail(limited, agent, html, third);
  t.is(refused.status, 429);
  t.true(Number(refused.response.headers.get('retry-after')) > 0);
  t.regex(refused.html, /changing your email address is paused/);
  await smtp.mailTo(first, 'Confirm your new email address');
  await smtp.mailTo(second, 'Confirm your new email address');
  await smtp.mailTo(user.email, 'A change of your email address was requested');
  await smtp.mailTo(user.email, 'A change of your email address was requested');
  await until(async () => (await auditEvents(limited, user.email, 'email_change.requested')).length === 2, 'both requests to be audited');
  await limited.settled();
  t.deepEqual(smtp.receivedBy(third), [], 'the refused request mailed nobody');
  t.is(smtp.receivedBy(user.email).length, 2);
});

test('one new address cannot be flooded from many accounts: email-change links to it are limited per address (VERIFY_RESEND_LIMIT_PER_ACCOUNT)', async (t) => {
  const target = `target-${crypto.randomUUID()}@example.org`;
  const statuses = [];
  for (let account = 0; account < 3; account += 1) {
    const { agent, html } = await signedIn(limited, '/account/email');
    const answer = await changeEmail(limited, agent, html, account === 1 ? target.toUpperCase() : target);
    statuses.push(answer.status);
    if (answer.status === 429) t.regex(answer.html, /changing your email address is paused/);
  }
  t.deepEqual(statuses, [200, 200, 429], 'the third account is refused though it asked nothing before');
  await smtp.mailTo(target, 'Confirm your new email address');
  await smtp.mailTo(target, 'Confirm your new email address');
  await limited.settled();
  t.is(smtp.receivedBy(target).length, 2);
});

test('uses of email-change links are limited per IP (EMAILED_LINK_LIMIT_PER_IP): opening and confirming both count', async (t) => {
  const { user, agent, html } = await signedIn(limited, '/account/email');
  const wanted = `linked-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(limited, agent, html, wanted)).status, 200);
  const link = linkIn(await smtp.mailTo(wanted, 'Confirm your new email address'));
  const newMailbox = new UserAgent();
  const shown = await page(newMailbox, link);
  t.is(shown.status, 200);
  const forged = await post(newMailbox, `${limited.issuer}/email/confirm-change`, { csrf: formField(shown.html, 'csrf'), token: 'not-a-token' });
  t.is(forged.status, 400, 'a made-up token, counted');
  t.is((await page(newMailbox, link)).status, 200);
  const opened = await page(newMailbox, link);
  t.is(opened.status, 429, 'the fourth use from this IP');
  t.true(Number(opened.response.headers.get('retry-after')) > 0);
  t.regex(opened.html, /using emailed links is paused/);
  const confirmed = await post(newMailbox, `${limited.issuer}/email/confirm-change`, { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  t.is(confirmed.status, 429);
  t.is((await limited.runtime.users.findById(user.id))!.email, user.email, 'the address did not change');
});

test('changing the email: a link goes to the new address and a notice to the current one; the link, opened in another browser, makes the new address the account\'s, verified, in new ID tokens and userinfo', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { emailVerified: false } });
  const newEmail = `moved-${crypto.randomUUID()}@example.org`;
  t.regex(html, /autocomplete="email"/);

  const sent = await changeEmail(server, agent, html, ` ${newEmail.toUpperCase()} `);
  t.is(sent.status, 200);
  t.true(sent.html.includes(newEmail), 'the page names the address the link went to');
  const requested = await smtp.mailTo(user.email, 'A change of your email address was requested');
  // This account's address was never confirmed: it may be a stranger's, who is not told the new one.
  t.false(`${requested.email.text}${requested.email.html}`.includes(newEmail), 'an unconfirmed address is not told the new one');
  t.is(linkIn(requested), `${server.issuer}/password/forgot`);
  const link = linkIn(await smtp.mailTo(newEmail, 'Confirm your new email address'));
  t.true(link.startsWith(`${server.issuer}/email/confirm-change?token=`));
  t.is((await server.runtime.users.findById(user.id))!.email, user.email, 'nothing changes before the link is followed');

  const { shown, confirmed, agent: newMailbox } = await confirmFromAnotherBrowser(link);
  t.is(shown.status, 200);
  t.true(shown.html.includes(newEmail));
  t.is(confirmed.status, 200);
  t.regex(confirmed.html, /Your email address is changed/);
  const stored = (await server.runtime.users.findById(user.id))!;
  t.is(stored.email, newEmail);
  t.true(stored.emailVerified);

  const changed = await smtp.mailTo(user.email, 'Your email address was changed');
  t.false(`${changed.email.text}${changed.email.html}`.includes(newEmail), 'an unconfirmed old address is not told where the account went');
  t.is((await page(newMailbox, link)).status, 400, 'the link works once');
  // Its form sent again (a double click, the back button): it says the address is changed, as it is.
  const again = await post(newMailbox, new URL('/email/confirm-change', link), { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  t.is(again.status, 200);
  t.regex(again.html, /Your email address is changed/);
  t.true(again.html.includes(newEmail));
  const [repeat, event] = await auditEvents(server, newEmail, 'email.changed');
  t.like(repeat, { outcome: 'failure', subjectUserId: user.id, detail: { reason: 'link_used' } });
  t.is(event!.outcome, 'success');
  t.is(event!.detail.previousEmail, user.email);

  // An application signing the person in now is told the new, verified address.
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(new UserAgent(), request.url, { email: newEmail, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true });
  const claims = oauth.getValidatedIdTokenClaims(tokens)!;
  t.is(claims.sub, user.id);
  t.is(claims.email, newEmail);
  t.is(claims.email_verified, true);
  const userinfo = await oauth.processUserInfoResponse(as, client, claims.sub, await oauth.userInfoRequest(as, client, tokens.access_token, insecure));
  t.is(userinfo.email, newEmail);
  t.is(userinfo.email_verified, true);
  t.false((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok, 'the old address no longer signs in');
});

test('an address another account has gets the same page as a free one, and no mail; the current address still hears of it', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const owner = await createUser(server);
  const free = `free-${crypto.randomUUID()}@example.org`;
  const taken = await changeEmail(server, agent, html, owner.email);
  const open = await changeEmail(server, agent, html, free);
  t.is(taken.status, 200);
  t.is(open.status, 200);
  const normalized = (body: string, address: string) => body.replace(/name="csrf" value="[^"]*"/g, '').replaceAll(address, 'NEW');
  t.is(normalized(taken.html, owner.email), normalized(open.html, free));

  await smtp.mailTo(free, 'Confirm your new email address');
  await smtp.mailTo(user.email, 'A change of your email address was requested');
  await smtp.mailTo(user.email, 'A change of your email address was requested');
  await until(async () => (await auditEvents(server, user.email, 'email_change.requested')).length === 2, 'both requests to be audited');
  await server.settled();
  t.deepEqual(smtp.receivedBy(owner.email), [], 'the other account\'s owner gets nothing');
  const events = await auditEvents(server, user.email, 'email_change.requested');
  t.deepEqual(events.map((event) => event.detail.reason ?? 'sent').sort(), ['email_taken', 'sent']);
});

test('an address taken between the request and the confirmation: a 409 page, and the address stays', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const wanted = `wanted-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(server, agent, html, wanted)).status, 200);
  const link = linkIn(await smtp.mailTo(wanted, 'Confirm your new email address'));
  await createUser(server, wanted);
  const { confirmed } = await confirmFromAnotherBrowser(link);
  t.is(confirmed.status, 409);
  t.regex(confirmed.html, /not available/);
  t.is((await server.runtime.users.findById(user.id))!.email, user.email);
  const [event] = await auditEvents(server, user.email, 'email.changed');
  t.is(event!.outcome, 'failure');
  t.is(event!.detail.reason, 'email_taken');
});

test('the email form refuses what is not an address, the current address and a wrong password with a 400 on the form', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const notAnAddress = await changeEmail(server, agent, html, 'not an address');
  t.is(notAnAddress.status, 400);
  t.regex(notAnAddress.html, /aria-describedby="email-error" aria-invalid="true"/);
  t.deepEqual(focusedFields(notAnAddress.html), ['email']);
  t.is((await changeEmail(server, agent, html, user.email.toUpperCase())).status, 400);
  const wrong = await changeEmail(server, agent, html, `x-${crypto.randomUUID()}@example.org`, 'wrong password');
  t.is(wrong.status, 400);
  t.regex(wrong.html, /That is not your current password/);
  t.regex(wrong.html, /aria-invalid="true"/);
  t.deepEqual(focusedFields(wrong.html), ['current_password'], 'the focus is on the field in error, not the address typed right');
  const [failed] = await auditEvents(server, user.email, 'reauthentication.failed');
  t.is(failed!.detail.purpose, 'change_email');
});

test('a password change cancels an email change asked for before it (it may have been the intruder\'s)', async (t) => {
  const { agent, html } = await signedIn(server, '/account/email');
  const intruder = `intruder-${crypto.randomUUID()}@example.org`;
  await changeEmail(server, agent, html, intruder);
  const link = linkIn(await smtp.mailTo(intruder, 'Confirm your new email address'));
  const passwordPage = await page(agent, `${server.issuer}/account/password`);
  t.is((await changePassword(server, agent, passwordPage.html, PASSWORD, NEW_PASSWORD)).status, 200);
  const shown = await page(new UserAgent(), link);
  t.is(shown.status, 400);
  t.regex(shown.html, /This link no longer works/);
});

test('a password change makes a reset link asked for before it stop working (it may have been the intruder\'s)', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/password');
  const intruder = new UserAgent();
  const forgot = await page(intruder, `${server.issuer}/password/forgot`);
  t.is((await post(intruder, `${server.issuer}/password/forgot`, { csrf: formField(forgot.html, 'csrf'), email: user.email })).status, 200);
  const link = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  t.is((await page(intruder, link)).status, 200, 'the link works before the change');
  t.is((await changePassword(server, agent, html, PASSWORD, NEW_PASSWORD)).status, 200);
  const after = await page(intruder, link);
  t.is(after.status, 400);
  t.regex(after.html, /This link no longer works/);
  t.deepEqual(await server.runtime.accountTokens.peek(new URL(link).searchParams.get('token')!, 'reset_password'), { ok: false, reason: 'unknown' });
});

test('forms without their CSRF token are refused with 403', async (t) => {
  const { user, agent } = await signedIn(server, '/account/email');
  t.is((await post(agent, `${server.issuer}/account/password`, { current_password: PASSWORD, password: NEW_PASSWORD, confirm: NEW_PASSWORD })).status, 403);
  t.is((await post(agent, `${server.issuer}/account/email`, { email: `csrf-${crypto.randomUUID()}@example.org`, current_password: PASSWORD })).status, 403);
  const html = (await page(agent, `${server.issuer}/account/email`)).html;
  const wanted = `csrf-${crypto.randomUUID()}@example.org`;
  await changeEmail(server, agent, html, wanted);
  const link = linkIn(await smtp.mailTo(wanted, 'Confirm your new email address'));
  const newMailbox = new UserAgent();
  const shown = await page(newMailbox, link);
  t.is((await post(newMailbox, `${server.issuer}/email/confirm-change`, { token: formField(shown.html, 'token') })).status, 403);
  t.is((await server.runtime.users.findById(user.id))!.email, user.email);
  t.true((await server.runtime.users.checkCredentials(user.email, PASSWORD)).ok);
});

test('no password, token or link reaches an audit row or a log line', async (t) => {
  const { agent, html } = await signedIn(server, '/account/email');
  const wanted = `quiet-${crypto.randomUUID()}@example.org`;
  const wrongGuess = 'my wrong guess 4711';
  await changeEmail(server, agent, html, wanted, wrongGuess);
  await changeEmail(server, agent, html, wanted);
  const link = linkIn(await smtp.mailTo(wanted, 'Confirm your new email address'));
  const { confirmed } = await confirmFromAnotherBrowser(link);
  t.is(confirmed.status, 200);
  const passwordPage = await page(agent, `${server.issuer}/account/password`);
  const chosen = 'saffron glacier teapot orbit';
  t.is((await changePassword(server, agent, passwordPage.html, PASSWORD, chosen)).status, 200);
  await smtp.mailTo(wanted, 'Your password was changed');
  await server.runtime.auditTrail.flush();

  const rows = JSON.stringify(await server.runtime.database.prisma.auditEvent.findMany());
  t.true(rows.includes('email.changed') && rows.includes('password.changed'), 'the audit trail was read');
  t.true(logLines.some((line) => line.includes('email.changed')), 'the log was read');
  const token = new URL(link).searchParams.get('token')!;
  for (const secret of [token, link, wrongGuess, chosen, PASSWORD]) {
    t.false(rows.includes(secret), 'audit rows hold no secret');
    t.false(logLines.some((line) => line.includes(secret)), 'log lines hold no secret');
  }
});

/** Opens the password-reset request form and asks for a link, as a person who cannot sign in would. */
async function requestReset(target: TestServer, agent: UserAgent, email: string): Promise<Page> {
  const form = await page(agent, `${target.issuer}/password/forgot`);
  if (form.status !== 200) throw new Error(`forgot page answered ${form.status}`);
  return post(agent, `${target.issuer}/password/forgot`, { csrf: formField(form.html, 'csrf'), email });
}

/** Sends a reset link's form with a new password. */
function submitNewPassword(target: TestServer, agent: UserAgent, formHtml: string, password: string): Promise<Page> {
  return post(agent, `${target.issuer}/password/reset`, { csrf: formField(formHtml, 'csrf'), token: formField(formHtml, 'token'), password, confirm: password });
}

test('a reset link sent to the address the account had before an email change is refused, and the password stays', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const resetBrowser = new UserAgent();
  t.is((await requestReset(server, resetBrowser, user.email)).status, 200);
  const resetLink = linkIn(await smtp.mailTo(user.email, 'Reset your password'));
  const form = await page(resetBrowser, resetLink);
  t.is(form.status, 200, 'the link works while the address is the account\'s');

  const moved = `moved-after-reset-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(server, agent, html, moved)).status, 200);
  const { confirmed } = await confirmFromAnotherBrowser(linkIn(await smtp.mailTo(moved, 'Confirm your new email address')));
  t.is(confirmed.status, 200);
  t.is((await server.runtime.users.findById(user.id))!.email, moved);
  // Were the account to come back to that address by another change, a link still good would work again.
  t.like(await server.runtime.accountTokens.peek(new URL(resetLink).searchParams.get('token')!, 'reset_password'), { ok: false },
    'the link died with the change');

  const opened = await page(resetBrowser, resetLink);
  t.is(opened.status, 400);
  t.regex(opened.html, /This link no longer works/);
  const submitted = await submitNewPassword(server, resetBrowser, form.html, NEW_PASSWORD);
  t.is(submitted.status, 400);
  t.regex(submitted.html, /This link no longer works/);
  t.true((await server.runtime.users.checkCredentials(moved, PASSWORD)).ok, 'the password did not change');
  t.false((await server.runtime.users.checkCredentials(moved, NEW_PASSWORD)).ok);
});

test('completing a password reset cancels a pending email change: the link sent to the new address stops working and the address stays', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const intruder = `intruder-reset-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(server, agent, html, intruder)).status, 200);
  const changeLink = linkIn(await smtp.mailTo(intruder, 'Confirm your new email address'));
  const newMailbox = new UserAgent();
  const shown = await page(newMailbox, changeLink);
  t.is(shown.status, 200, 'the change link works before the reset');

  const resetBrowser = new UserAgent();
  t.is((await requestReset(server, resetBrowser, user.email)).status, 200);
  const form = await page(resetBrowser, linkIn(await smtp.mailTo(user.email, 'Reset your password')));
  t.is(form.status, 200);
  const done = await submitNewPassword(server, resetBrowser, form.html, NEW_PASSWORD);
  t.is(done.status, 200);
  t.regex(done.html, /Your password is changed/);

  const opened = await page(newMailbox, changeLink);
  t.is(opened.status, 400);
  t.regex(opened.html, /This link no longer works/);
  const confirmed = await post(newMailbox, `${server.issuer}/email/confirm-change`, { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  t.is(confirmed.status, 400);
  t.regex(confirmed.html, /This link no longer works/);
  t.is((await server.runtime.users.findById(user.id))!.email, user.email, 'the address did not change');
  t.true((await server.runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);
});

test('an email-change link of an account disabled after asking for it is refused, opened or confirmed, and the address stays', async (t) => {
  const { user, agent, html } = await signedIn(server, '/account/email');
  const wanted = `disabled-${crypto.randomUUID()}@example.org`;
  t.is((await changeEmail(server, agent, html, wanted)).status, 200);
  const link = linkIn(await smtp.mailTo(wanted, 'Confirm your new email address'));
  const newMailbox = new UserAgent();
  const shown = await page(newMailbox, link);
  t.is(shown.status, 200, 'the link works while the account is enabled');

  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { disabled: true } });
  const opened = await page(newMailbox, link);
  t.is(opened.status, 400);
  t.regex(opened.html, /This link no longer works/);
  const confirmed = await post(newMailbox, `${server.issuer}/email/confirm-change`, { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  t.is(confirmed.status, 400);
  t.regex(confirmed.html, /This link no longer works/);
  const stored = (await server.runtime.users.findById(user.id))!;
  t.is(stored.email, user.email, 'the address did not change');
  t.true(stored.disabled);
  t.is(await server.runtime.users.findByEmail(wanted), null);
});

/** Turns on the second factor of an account, as the account page would. */
async function enrollSecondFactor(target: TestServer, userId: string): Promise<void> {
  const enrollment = await target.runtime.secondFactor.startEnrollment(userId);
  const confirmed = await target.runtime.secondFactor.confirmEnrollment(userId, await generate({ secret: enrollment!.secret }));
  if (!confirmed.ok) throw new Error(`enrollment refused: ${confirmed.reason}`);
}

/** Changes the email from a signed-in browser and confirms it from the new mailbox; the notice the previous address gets. */
async function moveEmail(target: TestServer, agent: UserAgent, from: string, to: string) {
  const form = await page(agent, `${target.issuer}/account/email`);
  if ((await changeEmail(target, agent, form.html, to)).status !== 200) throw new Error('the change was refused');
  const { confirmed } = await confirmFromAnotherBrowser(linkIn(await smtp.mailTo(to, 'Confirm your new email address')));
  if (confirmed.status !== 200) throw new Error(`the confirmation answered ${confirmed.status}`);
  return smtp.mailTo(from, 'Your email address was changed');
}

/** The previous address's undo link, opened in a browser of its own and its button pressed. */
async function undoFromPreviousAddress(link: string): Promise<{ shown: Page; undone: Page; agent: UserAgent }> {
  const agent = new UserAgent();
  const shown = await page(agent, link);
  if (shown.status !== 200) return { shown, undone: shown, agent };
  const undone = await post(agent, new URL('/email/restore', link), { csrf: formField(shown.html, 'csrf'), token: formField(shown.html, 'token') });
  return { shown, undone, agent };
}

test('an account taken over by a change of email is taken back from the previous address: it returns, everyone is signed out, grants end, a second factor set up since is removed, and a new password follows', async (t) => {
  const { as, client, user, tokens } = await signInToNewSpa(server);
  const { agent: intruder } = await signedIn(server, '/account/email', user.email);
  const intruderAddress = `intruder-${crypto.randomUUID()}@example.org`;
  const laterAddress = `later-${crypto.randomUUID()}@example.org`;

  const notice = await moveEmail(server, intruder, user.email, intruderAddress);
  const requested = await smtp.mailTo(user.email, 'A change of your email address was requested');
  t.true(requested.email.text!.includes(intruderAddress), 'a confirmed address is told where the account is asked to go');
  t.true(notice.email.text!.includes(intruderAddress), 'and where it went');
  const undoLink = linkIn(notice);
  t.true(undoLink.startsWith(`${server.issuer}/email/restore?token=`), 'the previous address gets a way back');
  t.regex(notice.email.text!, /Undo the change/);
  t.regex(notice.email.text!, /expires in 7 days/);
  t.true((notice.email.html ?? '').includes(`href="${undoLink.replaceAll('&', '&amp;')}"`));
  // A second change does not hand the way back to the intruder's address, nor take the owner's away.
  const secondNotice = await moveEmail(server, intruder, intruderAddress, laterAddress);
  t.is(secondNotice.email.text!.match(/https?:\/\/\S+/g), null, 'no link: a password reset could not reach the account from the intruder\'s address either');
  t.regex(secondNotice.email.text!, /The address it had before this one was sent a link that undoes the changes/);
  await enrollSecondFactor(server, user.id);
  const stillPending = await server.runtime.accountTokens.peek(new URL(undoLink).searchParams.get('token')!, 'restore_email');
  t.true(stillPending.ok, 'the owner\'s link still works');

  const previousMailbox = new UserAgent();
  const opened = await page(previousMailbox, undoLink);
  t.is(opened.status, 200);
  t.true(opened.html.includes(user.email), 'the page names the address it puts back');
  t.is((await server.runtime.users.findById(user.id))!.email, laterAddress, 'opening the link changes nothing');
  const { undone } = await undoFromPreviousAddress(undoLink);
  t.is(undone.status, 200);
  t.regex(undone.html, /Your email address is back/);
  t.regex(undone.html, /Two-factor authentication set up after the change was turned off/);

  const stored = (await server.runtime.users.findById(user.id))!;
  t.is(stored.email, user.email);
  t.true(stored.emailVerified);
  t.false((await server.runtime.secondFactor.status(user.id)).enabled);
  t.false((await server.runtime.users.checkCredentials(laterAddress, PASSWORD)).ok, 'the intruder\'s address no longer signs in');
  const intruderSession = await intruder.request(`${server.issuer}/account`);
  t.is(intruderSession.status, 302, 'the intruder is signed out');
  const refresh = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, refresh), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant', 'applications lose their grants');
  t.is((await undoFromPreviousAddress(undoLink)).shown.status, 400, 'the link works once');
  // Its form sent again (a double click): it says the address is back, and leads to a new password.
  const repeated = await post(previousMailbox, new URL('/email/restore', undoLink), { csrf: formField(opened.html, 'csrf'), token: formField(opened.html, 'token') });
  t.is(repeated.status, 400);
  t.regex(repeated.html, /This link was already used/);
  t.true(repeated.html.includes(`Your email address is back to ${user.email}`));
  t.regex(repeated.html, /href="\/password\/forgot"/);

  // The password the intruder knew is replaced next, from the page's link.
  const resetHref = /href="(\/password\/reset\?token=[^"]+)"/.exec(undone.html)?.[1];
  t.truthy(resetHref);
  const owner = new UserAgent();
  const resetForm = await page(owner, new URL(resetHref!.replaceAll('&amp;', '&'), server.issuer));
  t.is(resetForm.status, 200);
  t.is((await submitNewPassword(server, owner, resetForm.html, NEW_PASSWORD)).status, 200);
  t.true((await server.runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);

  const [repeat, restored] = await auditEvents(server, user.email, 'email.restored');
  t.like(repeat, { outcome: 'failure', subjectUserId: user.id, detail: { reason: 'link_used' } });
  t.is(restored!.outcome, 'success');
  t.is(restored!.detail.replacedEmail, laterAddress);
  t.true(Number(restored!.detail.sessionsEnded) >= 2, 'the owner\'s and the intruder\'s sessions');
  const [removed] = await auditEvents(server, user.email, 'second_factor.removed');
  t.is(removed!.detail.reason, 'email_restored');
});

test('undoing a change of email keeps a second factor the owner enabled before it', async (t) => {
  const { user, agent } = await signedIn(server, '/account/email');
  await enrollSecondFactor(server, user.id);
  await server.runtime.database.prisma.user.update({ where: { id: user.id }, data: { totpEnabledAt: new Date(Date.now() - 60_000) } });
  const direct = await server.runtime.accountTokens.issue(user.id, 'restore_email', user.email, 600);
  const moved = `moved-${crypto.randomUUID()}@example.org`;
  await server.runtime.users.changeEmail(user.id, moved);
  const { undone } = await undoFromPreviousAddress(`${server.issuer}/email/restore?token=${direct}`);
  t.is(undone.status, 200);
  t.notRegex(undone.html, /Two-factor authentication set up after the change/);
  t.true((await server.runtime.secondFactor.status(user.id)).enabled);
  t.is((await server.runtime.users.findById(user.id))!.email, user.email);
  t.is((await agent.request(`${server.issuer}/account`)).status, 302, 'signed out all the same');
});

test('an undo link whose address another account took since: a 409 page, and the account keeps its address', async (t) => {
  const { user, agent } = await signedIn(server, '/account/email');
  const moved = `moved-${crypto.randomUUID()}@example.org`;
  const undoLink = linkIn(await moveEmail(server, agent, user.email, moved));
  await createUser(server, user.email);
  const { undone } = await undoFromPreviousAddress(undoLink);
  t.is(undone.status, 409);
  t.regex(undone.html, /Another account uses/);
  t.is((await server.runtime.users.findById(user.id))!.email, moved);
  const [refused] = await auditEvents(server, moved, 'email.restored');
  t.is(refused!.outcome, 'failure');
  t.is(refused!.detail.reason, 'email_taken');
});

test('a made-up, malformed or missing undo token gets the invalid-link page, opened or sent', async (t) => {
  for (const token of ['', 'short', 'A'.repeat(43)]) {
    const shown = await page(new UserAgent(), `${server.issuer}/email/restore?token=${token}`);
    t.is(shown.status, 400);
    t.regex(shown.html, /This link no longer works/);
  }
  // Sent from a real undo page (for its CSRF token) with a token nobody issued.
  const user = await createUser(server);
  const issued = await server.runtime.accountTokens.issue(user.id, 'restore_email', user.email, 600);
  const agent = new UserAgent();
  const form = await page(agent, `${server.issuer}/email/restore?token=${issued}`);
  const sent = await post(agent, `${server.issuer}/email/restore`, { csrf: formField(form.html, 'csrf'), token: 'A'.repeat(43) });
  t.is(sent.status, 400);
  t.regex(sent.html, /This link no longer works/);
  t.true((await server.runtime.accountTokens.peek(issued, 'restore_email')).ok, 'the real link is untouched');
});
