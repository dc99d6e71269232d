// The account flows (src/accounts/flows/) called directly on a runtime with its own database and store, no HTTP
// server: each answer of their result unions, what each leaves in the database and the store (the password, the
// links, the sessions and grants, the second factor) and in the audit trail, and the notice each hands back.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { generate } from 'otplib';
import type { AuditEvent } from '../src/audit/audit.ts';
import type { Clock } from '../src/clock.ts';
import type { User } from '../src/accounts/users.ts';
import { about, auditEvents, linkIn, openTestRuntime, signedIn, tokenOf, withSecondFactor, type TestRuntime } from './helpers/runtime.ts';

const PASSWORD = 'correct horse battery staple';
const NEW_PASSWORD = 'velvet harbour lantern quartz';
/** The time every flow reads: notices say it, to the minute. */
const NOW = new Date('2031-02-03T04:05:06.000Z');
const NOW_IN_MAIL = '2031-02-03 04:05 UTC';
const CLIENT_ID = 'flows-test-client';

const clock: Clock = { now: () => new Date(NOW) };
let opened: TestRuntime;

test.before(async () => {
  opened = await openTestRuntime({ LOGIN_LOCKOUT_THRESHOLD: '3' }, { clock });
});
test.after.always(async () => {
  await opened?.close();
});

/** A request as a door passes it; the user agent is unique, so a test finds its own anonymous audit rows. */
function request() {
  return { ip: '198.51.100.7', userAgent: `flows-test ${randomUUID()}` };
}

function newUser(options: { emailVerified?: boolean; roles?: string[] } = {}): Promise<User> {
  return opened.runtime.users.create({ email: `flow-${randomUUID()}@example.com`, password: PASSWORD, emailVerified: options.emailVerified ?? true, roles: options.roles });
}

async function stillSignedIn({ sessionUid, grantId }: { sessionUid: string; grantId: string }): Promise<{ session: boolean; grant: boolean }> {
  const { provider } = opened.runtime;
  return { session: (await provider.Session.findByUid(sessionUid)) !== undefined, grant: (await provider.Grant.find(grantId)) !== undefined };
}

const audit = (action: string, filter: (event: AuditEvent) => boolean) => auditEvents(opened.runtime, action, filter);

const noErrors = () => undefined;

test('password reset request: a known address gets a link that opens the reset form, audited with the request', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const seen = request();
  const sent = await runtime.flows.passwordReset.requestLink(user.email, seen);
  t.like(sent, { ok: true, delivered: 'sent' });
  const [mail, ...more] = await opened.mailTo(user.email);
  t.is(more.length, 0);
  t.is(mail!.subject, 'Reset your password');
  const link = linkIn(mail!.text);
  t.true(link.startsWith(`${runtime.config.issuer}/password/reset?token=`));
  t.like(await runtime.flows.passwordReset.checkLink(tokenOf(link)), { ok: true, user: { id: user.id } });
  const [row] = await audit('password_reset.requested', about(user));
  t.like(row, { outcome: 'success', subjectEmail: user.email, ip: seen.ip, userAgent: seen.userAgent });
});

test('password reset request: an unknown or disabled address gets nothing, and the audit trail says why', async (t) => {
  const { runtime } = opened;
  const unknown = `nobody-${randomUUID()}@example.com`;
  t.deepEqual(await runtime.flows.passwordReset.requestLink(unknown, request()), { ok: false, reason: 'unknown_email' });
  const disabled = await newUser();
  await runtime.users.setDisabled(disabled.id, true);
  t.deepEqual(await runtime.flows.passwordReset.requestLink(disabled.email, request()), { ok: false, reason: 'account_disabled' });
  t.deepEqual([...await opened.mailTo(unknown), ...await opened.mailTo(disabled.email)], []);
  const [unknownRow] = await audit('password_reset.requested', (event) => event.subjectEmail === unknown);
  t.like(unknownRow, { outcome: 'failure', subjectUserId: null, detail: { reason: 'unknown_email' } });
  const [disabledRow] = await audit('password_reset.requested', about(disabled));
  t.like(disabledRow, { outcome: 'failure', detail: { reason: 'account_disabled' } });
});

test('password reset: the link sets the password, verifies the address, ends every session and grant, cancels an email change, forgives the lockout, and hands back the notice', async (t) => {
  const { runtime } = opened;
  const { passwordReset } = runtime.flows;
  const user = await newUser({ emailVerified: false });
  const signedInBefore = await signedIn(opened.runtime, CLIENT_ID, user.id);
  const changeToken = await runtime.accountTokens.issue(user.id, 'change_email', `new-${randomUUID()}@example.com`, 600);
  // Locked out by guesses from elsewhere.
  for (let guess = 0; guess < 3; guess += 1) {
    await runtime.limits.login.beforeAttempt({ email: user.email, ip: '203.0.113.1' });
    await runtime.limits.login.afterFailure({ email: user.email, ip: '203.0.113.1' });
  }
  t.false((await runtime.limits.login.beforeAttempt({ email: user.email, ip: '203.0.113.2' })).allowed, 'locked out');
  const token = await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600);

  const seen = request();
  const reset = await passwordReset.complete({ token, password: NEW_PASSWORD, newPasswordErrors: noErrors }, seen);
  if (!reset.ok) return t.fail(`refused: ${reset.reason}`);
  t.like(reset, { user: { id: user.id, emailVerified: true }, secondFactorRemoved: false, sessionsEnded: 1, grantsRevoked: 1 });
  t.false((await runtime.users.checkCredentials(user.email, PASSWORD)).ok);
  t.true((await runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);
  t.deepEqual(await stillSignedIn(signedInBefore), { session: false, grant: false });
  t.like(await runtime.accountTokens.peek(changeToken, 'change_email'), { ok: false });
  t.true((await runtime.limits.login.beforeAttempt({ email: user.email, ip: '203.0.113.3' })).allowed, 'the lockout is forgiven');
  t.like(await passwordReset.checkLink(token), { ok: false, reason: 'link_invalid' }, 'the link works once');

  const [completed, ...more] = await audit('password_reset.completed', about(user));
  t.is(more.length, 0);
  t.like(completed, { outcome: 'success', actorType: 'user', actorId: user.id, ip: seen.ip, userAgent: seen.userAgent, detail: { sessionsEnded: 1, grantsRevoked: 1 } });
  const [endedAll] = await audit('sessions.ended_all', about(user));
  t.like(endedAll, { detail: { reason: 'password_reset', sessions: 1, grants: 1 }, userAgent: seen.userAgent });

  // The notice is the door's to send, after its answer: nothing went before.
  t.deepEqual((await opened.mailTo(user.email)).map((mail) => mail.subject), []);
  await reset.notice();
  const [notice] = await opened.mailTo(user.email);
  t.is(notice!.subject, 'Your password was changed');
  t.true(notice!.text.includes(`was changed on ${NOW_IN_MAIL}`), notice!.text);
  t.is(linkIn(notice!.text), `${runtime.config.issuer}/password/forgot`);
});

test('password reset: a refused password changes nothing and leaves the link usable; a made-up link is link_invalid, a used one link_used, audited', async (t) => {
  const { runtime } = opened;
  const { passwordReset } = runtime.flows;
  const user = await newUser();
  const token = await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600);
  const refused = await passwordReset.complete({ token, password: 'short', newPasswordErrors: (account) => ({ password: `not for ${account.email}` }) }, request());
  t.deepEqual(refused, { ok: false, reason: 'password_refused', user, errors: { password: `not for ${user.email}` } });
  t.true((await runtime.users.checkCredentials(user.email, PASSWORD)).ok);
  t.like(await passwordReset.checkLink(token), { ok: true });
  t.deepEqual(await audit('password_reset.completed', about(user)), []);

  const madeUp = request();
  t.deepEqual(await passwordReset.complete({ token: 'A'.repeat(43), password: NEW_PASSWORD, newPasswordErrors: noErrors }, madeUp), { ok: false, reason: 'link_invalid' });
  const [anonymous] = await audit('password_reset.completed', (event) => event.userAgent === madeUp.userAgent);
  t.like(anonymous, { outcome: 'failure', subjectUserId: null, detail: { reason: 'link_invalid' } });

  t.like(await passwordReset.complete({ token, password: NEW_PASSWORD, newPasswordErrors: noErrors }, request()), { ok: true });
  const secondUse = request();
  t.deepEqual(await passwordReset.complete({ token, password: 'another fine password here', newPasswordErrors: noErrors }, secondUse), { ok: false, reason: 'link_used' });
  t.true((await runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok, 'the second use changed nothing');
  const [refusedAgain] = await audit('password_reset.completed', (event) => event.userAgent === secondUse.userAgent);
  t.like(refusedAgain, { outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, detail: { reason: 'link_used' } });
  // Told apart only while the link would still be the account's: not once it is disabled.
  await runtime.users.setDisabled(user.id, true);
  t.deepEqual(await passwordReset.complete({ token, password: 'another fine password here', newPasswordErrors: noErrors }, request()), { ok: false, reason: 'link_invalid' });
});

test('password reset of an address never verified removes a second factor (someone else may have set it up); a verified one keeps it', async (t) => {
  const { runtime } = opened;
  const unverified = await newUser({ emailVerified: false });
  const verified = await newUser({ emailVerified: true });
  await withSecondFactor(opened.runtime, unverified);
  await withSecondFactor(opened.runtime, verified);
  const resetOf = async (user: User) => runtime.flows.passwordReset.complete({
    token: await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600), password: NEW_PASSWORD, newPasswordErrors: noErrors,
  }, request());
  t.like(await resetOf(unverified), { ok: true, secondFactorRemoved: true });
  t.like(await resetOf(verified), { ok: true, secondFactorRemoved: false });
  t.false((await runtime.secondFactor.status(unverified.id)).enabled);
  t.true((await runtime.secondFactor.status(verified.id)).enabled);
  const [removed] = await audit('second_factor.removed', about(unverified));
  t.like(removed, { outcome: 'success', detail: { reason: 'password_reset_unverified_email' } });
  t.deepEqual(await audit('second_factor.removed', about(verified)), []);
});

test('password change: the new password works, the changing session stays, every other one and its grant ends, older links stop working, and the notice says when', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const here = await signedIn(opened.runtime, CLIENT_ID, user.id);
  const elsewhere = await signedIn(opened.runtime, CLIENT_ID, user.id);
  const resetToken = await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600);
  const changeToken = await runtime.accountTokens.issue(user.id, 'change_email', `new-${randomUUID()}@example.com`, 600);
  const seen = request();
  const changed = await runtime.flows.passwordChange.change({ account: user, newPassword: NEW_PASSWORD, keepSession: here.sessionUid }, seen);
  if (!changed.ok) return t.fail(changed.reason);
  t.like(changed, { user: { id: user.id }, sessionsEnded: 1, grantsRevoked: 1 });
  t.true((await runtime.users.checkCredentials(user.email, NEW_PASSWORD)).ok);
  t.deepEqual(await stillSignedIn(here), { session: true, grant: true });
  t.deepEqual(await stillSignedIn(elsewhere), { session: false, grant: false });
  t.like(await runtime.accountTokens.peek(resetToken, 'reset_password'), { ok: false });
  t.like(await runtime.accountTokens.peek(changeToken, 'change_email'), { ok: false });
  const [row] = await audit('password.changed', about(user));
  t.like(row, { outcome: 'success', subjectEmail: user.email, ip: seen.ip, detail: { sessionsEnded: 1, grantsRevoked: 1 } });
  const [endedAll] = await audit('sessions.ended_all', about(user));
  t.like(endedAll, { detail: { reason: 'password_changed', keptOne: true } });

  await changed.notice();
  const [notice] = await opened.mailTo(user.email);
  t.is(notice!.subject, 'Your password was changed');
  t.true(notice!.text.includes(`was changed on ${NOW_IN_MAIL}`), notice!.text);
});

test('password change of an account that is gone: unknown_account, and nothing is audited', async (t) => {
  const account = { id: randomUUID(), email: `gone-${randomUUID()}@example.com` };
  t.deepEqual(await opened.runtime.flows.passwordChange.change({ account, newPassword: NEW_PASSWORD, keepSession: 'none' }, request()), { ok: false, reason: 'unknown_account' });
  t.deepEqual(await audit('password.changed', about(account)), []);
});

test('disabling an account ends its emailed links, which enabling does not give back: a change of address or a reset asked for before', async (t) => {
  const { runtime } = opened;
  const { emailChange, passwordReset, emailVerification, accountAdministration } = runtime.flows;
  const user = await newUser({ emailVerified: false });
  const intruders = `intruder-${randomUUID()}@example.com`;
  await emailChange.request(user, intruders, request()).link();
  const change = tokenOf(linkIn((await opened.mailTo(intruders))[0]!.text));
  await passwordReset.requestLink(user.email, request());
  await emailVerification.sendLink(user);
  const mails = await opened.mailTo(user.email);
  const reset = tokenOf(linkIn(mails.find((mail) => mail.subject === 'Reset your password')!.text));
  const verify = tokenOf(linkIn(mails.find((mail) => /confirm|verify/i.test(mail.subject))!.text));
  const admin = { type: 'admin', id: 'test' } as const;
  t.true((await accountAdministration.disable(user.email, admin)).ok);
  t.true((await accountAdministration.enable(user.email, admin)).ok);
  t.false((await emailChange.checkConfirmLink(change)).ok, 'the change of address');
  t.false((await passwordReset.checkLink(reset)).ok, 'the reset');
  t.false((await emailVerification.check(verify)).ok, 'the verification');
  t.deepEqual(await emailChange.confirm(change, request()), { ok: false, reason: 'link_invalid' });
  t.is((await runtime.users.findById(user.id))!.email, user.email);
});

test('a verification link does not verify the address of an account disabled meanwhile', async (t) => {
  const { runtime } = opened;
  const { emailVerification } = runtime.flows;
  const user = await newUser({ emailVerified: false });
  await emailVerification.sendLink(user);
  const token = tokenOf(linkIn((await opened.mailTo(user.email)).at(-1)!.text));
  await runtime.users.setDisabled(user.id, true);
  t.deepEqual(await emailVerification.check(token), { ok: false, reason: 'account_disabled' });
  t.deepEqual(await emailVerification.verify(token, request()), { ok: false, reason: 'account_disabled' });
  t.false((await runtime.users.findById(user.id))!.emailVerified);
});

test('email change request: nothing happens until the door runs its work; then a link to a free address that confirms it, an audit record, and a notice to the current address', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const newEmail = `asked-${randomUUID()}@example.com`;
  const seen = request();
  const work = runtime.flows.emailChange.request(user, newEmail, seen);
  t.deepEqual(await opened.mailTo(newEmail), [], 'the door sends after its answer');
  await work.link();
  await work.audit();
  await work.notice();
  const [link, ...more] = await opened.mailTo(newEmail);
  t.is(more.length, 0);
  t.true(linkIn(link!.text).startsWith(`${runtime.config.issuer}/email/confirm-change?token=`));
  t.like(await runtime.flows.emailChange.checkConfirmLink(tokenOf(linkIn(link!.text))), { ok: true, newEmail, user: { id: user.id } });
  t.like((await audit('email_change.requested', about(user)))[0], { outcome: 'success', ip: seen.ip, detail: { newEmail } });
  const [notice] = await opened.mailTo(user.email);
  t.true(notice!.text.includes(NOW_IN_MAIL), notice!.text);
  t.true(notice!.text.includes(newEmail), 'a verified address is told the new one');
});

test('email change request to an address another account has: no link, a refusal in the audit trail, and the current address still hears of it', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const other = await newUser();
  const work = runtime.flows.emailChange.request(user, other.email, request());
  await Promise.all([work.link(), work.audit(), work.notice()]);
  t.deepEqual(await opened.mailTo(other.email), []);
  t.like((await audit('email_change.requested', about(user)))[0], { outcome: 'failure', detail: { newEmail: other.email, reason: 'email_taken' } });
  t.is((await opened.mailTo(user.email)).length, 1);
});

test('a second email change request ends the first one\'s link whether its address is free or taken: the link does not tell which', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const taken = (await newUser()).email;
  for (const next of [taken, `free-${randomUUID()}@example.com`]) {
    const mine = `mine-${randomUUID()}@example.com`;
    await runtime.flows.emailChange.request(user, mine, request()).link();
    const [link] = await opened.mailTo(mine);
    const token = tokenOf(linkIn(link!.text));
    t.like(await runtime.flows.emailChange.checkConfirmLink(token), { ok: true, newEmail: mine });
    await runtime.flows.emailChange.request(user, next, request()).link();
    t.deepEqual(await runtime.flows.emailChange.checkConfirmLink(token), { ok: false, reason: 'link_invalid' }, next === taken ? 'after a taken address' : 'after a free one');
  }
});

test('email change confirmation: the new address becomes the account\'s, verified; the previous one is told, with a link that undoes it', async (t) => {
  const { runtime } = opened;
  const { emailChange } = runtime.flows;
  const user = await newUser();
  const newEmail = `moved-${randomUUID()}@example.com`;
  const token = await runtime.accountTokens.issue(user.id, 'change_email', newEmail, 600);
  const resetToken = await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600);
  t.like(await emailChange.checkConfirmLink(token), { ok: true, newEmail, user: { id: user.id } });
  const seen = request();
  const confirmed = await emailChange.confirm(token, seen);
  if (!confirmed.ok) return t.fail(confirmed.reason);
  t.like(confirmed, { user: { id: user.id, email: newEmail, emailVerified: true }, previousEmail: user.email });
  t.like(await runtime.users.findById(user.id), { email: newEmail });
  const [row] = await audit('email.changed', about(user));
  t.like(row, { outcome: 'success', subjectEmail: newEmail, ip: seen.ip, detail: { previousEmail: user.email } });
  t.like(await emailChange.confirm(token, request()), { ok: false, reason: 'link_used', user: { id: user.id, email: newEmail } }, 'the link works once, and then says it did');

  t.deepEqual(await opened.mailTo(user.email), [], 'the notice is the door\'s to send');
  await confirmed.notice();
  const [notice] = await opened.mailTo(user.email);
  t.is(notice!.subject, 'Your email address was changed');
  t.true(notice!.text.includes(NOW_IN_MAIL), notice!.text);
  t.true(notice!.text.includes(newEmail), 'a verified address is told where the account went');
  const undo = linkIn(notice!.text);
  t.true(undo.startsWith(`${runtime.config.issuer}/email/restore?token=`));
  t.like(await emailChange.checkRestoreLink(tokenOf(undo)), { ok: true, previousEmail: user.email });
  // Were the account to come back to the previous address by another change, the link would work again.
  t.like(await runtime.accountTokens.peek(resetToken, 'reset_password'), { ok: false }, 'a reset link sent to the previous address dies with the change');

  // A second change in the run: the address it leaves is told that the way back went to the first.
  const lastEmail = `moved-again-${randomUUID()}@example.com`;
  const again = await emailChange.confirm(await runtime.accountTokens.issue(user.id, 'change_email', lastEmail, 600), request());
  if (!again.ok) return t.fail(again.reason);
  await again.notice();
  const [secondNotice] = await opened.mailTo(newEmail);
  t.regex(secondNotice!.text, /The address it had before this one was sent a link that undoes the changes/);
  t.deepEqual(secondNotice!.text.match(/https?:\/\/\S+/g), null, 'no link: a reset would not reach the account from this address');
  t.like(await emailChange.checkRestoreLink(tokenOf(undo)), { ok: true, previousEmail: user.email }, 'the first address keeps the way back');
});

test('email change confirmation: an address never verified is told of the change, not where the account went', async (t) => {
  const { runtime } = opened;
  const user = await newUser({ emailVerified: false });
  const newEmail = `moved-${randomUUID()}@example.com`;
  const confirmed = await runtime.flows.emailChange.confirm(await runtime.accountTokens.issue(user.id, 'change_email', newEmail, 600), request());
  if (!confirmed.ok) return t.fail(confirmed.reason);
  await confirmed.notice();
  const [notice] = await opened.mailTo(user.email);
  t.is(notice!.subject, 'Your email address was changed');
  t.false(notice!.text.includes(newEmail), notice!.text);
  // The way back would hand the account to whoever reads an address its owner never proved to be theirs.
  t.deepEqual(notice!.text.match(/https?:\/\/\S+/g), null, 'no undo link');
  t.regex(notice!.text, /ask the administrators of .+ for help/);
  t.truthy(await runtime.accountTokens.issueUnlessPending(user.id, 'restore_email', user.email, 600), 'no undo link was issued');
});

test('email change confirmation: an address another account took since is email_taken, a made-up link is link_invalid, both audited', async (t) => {
  const { runtime } = opened;
  const { emailChange } = runtime.flows;
  const user = await newUser();
  const other = await newUser();
  const token = await runtime.accountTokens.issue(user.id, 'change_email', other.email, 600);
  t.like(await emailChange.confirm(token, request()), { ok: false, reason: 'email_taken', newEmail: other.email, user: { id: user.id, email: user.email } });
  t.like(await runtime.users.findById(user.id), { email: user.email });
  const [taken] = await audit('email.changed', about(user));
  t.like(taken, { outcome: 'failure', detail: { newEmail: other.email, reason: 'email_taken' } });

  const madeUp = request();
  t.deepEqual(await emailChange.confirm('B'.repeat(43), madeUp), { ok: false, reason: 'link_invalid' });
  const [invalid] = await audit('email.changed', (event) => event.userAgent === madeUp.userAgent);
  t.like(invalid, { outcome: 'failure', detail: { reason: 'link_invalid' } });
});

test('email restore: the previous address comes back, everyone is signed out, links and a second factor set up since go, and a reset link follows', async (t) => {
  const { runtime } = opened;
  const { emailChange, passwordReset } = runtime.flows;
  const owner = await newUser();
  const takenBy = `intruder-${randomUUID()}@example.com`;
  const confirmed = await emailChange.confirm(await runtime.accountTokens.issue(owner.id, 'change_email', takenBy, 600), request());
  if (!confirmed.ok) return t.fail(confirmed.reason);
  await confirmed.notice();
  const undoToken = tokenOf(linkIn((await opened.mailTo(owner.email))[0]!.text));
  // What whoever made the change may have left: a session with a grant, a second factor, links.
  const intruderSession = await signedIn(opened.runtime, CLIENT_ID, owner.id);
  await withSecondFactor(opened.runtime, owner);
  const intrudersReset = await runtime.accountTokens.issue(owner.id, 'reset_password', takenBy, 600);
  const intrudersChange = await runtime.accountTokens.issue(owner.id, 'change_email', `next-${randomUUID()}@example.com`, 600);

  const seen = request();
  const restored = await emailChange.restore(undoToken, seen);
  if (!restored.ok) return t.fail(restored.reason);
  t.like(restored, { user: { id: owner.id, email: owner.email }, replacedEmail: takenBy, secondFactorRemoved: true, sessionsEnded: 1, grantsRevoked: 1 });
  t.like(await runtime.users.findById(owner.id), { email: owner.email });
  t.deepEqual(await stillSignedIn(intruderSession), { session: false, grant: false });
  t.false((await runtime.secondFactor.status(owner.id)).enabled);
  t.like(await runtime.accountTokens.peek(intrudersReset, 'reset_password'), { ok: false });
  t.like(await runtime.accountTokens.peek(intrudersChange, 'change_email'), { ok: false });
  t.like(await passwordReset.checkLink(restored.resetToken), { ok: true, user: { id: owner.id } }, 'the reset link it gives works');
  const [row] = await audit('email.restored', about(owner));
  t.like(row, { outcome: 'success', subjectEmail: owner.email, userAgent: seen.userAgent, detail: { replacedEmail: takenBy, sessionsEnded: 1, grantsRevoked: 1 } });
  const [removed] = await audit('second_factor.removed', about(owner));
  t.like(removed, { detail: { reason: 'email_restored' } });
  t.like(await emailChange.restore(undoToken, request()), { ok: false, reason: 'link_used', user: { id: owner.id, email: owner.email } }, 'the link works once, and then says it did');
});

test('email restore: a second factor enabled before the change stays; an address taken since is email_taken', async (t) => {
  const { runtime } = opened;
  const { emailChange } = runtime.flows;
  const owner = await newUser();
  await withSecondFactor(opened.runtime, owner);
  const movedTo = `moved-${randomUUID()}@example.com`;
  await runtime.users.changeEmail(owner.id, movedTo);
  const undoToken = await runtime.accountTokens.issue(owner.id, 'restore_email', owner.email, 600);
  t.like(await emailChange.restore(undoToken, request()), { ok: true, secondFactorRemoved: false });
  t.true((await runtime.secondFactor.status(owner.id)).enabled);

  const other = await newUser();
  await runtime.users.changeEmail(other.id, `elsewhere-${randomUUID()}@example.com`);
  const otherUndo = await runtime.accountTokens.issue(other.id, 'restore_email', other.email, 600);
  await runtime.users.create({ email: other.email, password: PASSWORD });
  t.deepEqual(await emailChange.restore(otherUndo, request()), { ok: false, reason: 'email_taken', previousEmail: other.email });
  const [taken] = await audit('email.restored', about(other));
  t.like(taken, { outcome: 'failure', detail: { previousEmail: other.email, reason: 'email_taken' } });
});

test('administrator\'s second-factor reset: the factor and its codes go, audited as the administrator, sessions end, and the notice says so', async (t) => {
  const { runtime } = opened;
  const user = await newUser({ roles: ['admin'] });
  await withSecondFactor(opened.runtime, user);
  const session = await signedIn(opened.runtime, CLIENT_ID, user.id);
  const actor = { type: 'admin' as const, id: 'cli:flows-test' };
  const reset = await runtime.flows.secondFactorReset.reset({ email: user.email.toUpperCase(), actor, endSessions: true });
  if (!reset.ok || reset.removed !== 'second_factor') return t.fail(JSON.stringify(reset));
  t.like(reset, { user: { id: user.id }, unusedRecoveryCodesRemoved: 10, requiredByRole: true, sessions: { ended: true, sessions: 1, grants: 1 } });
  t.like(await runtime.secondFactor.status(user.id), { enabled: false, recoveryCodesLeft: 0 });
  t.deepEqual(await stillSignedIn(session), { session: false, grant: false });
  const [row, ...more] = await audit('second_factor.removed', about(user));
  t.is(more.length, 0);
  t.like(row, { actorType: 'admin', actorId: 'cli:flows-test', detail: { reason: 'admin_reset', wasEnabled: true, method: 'totp' } });
  const [endedAll] = await audit('sessions.ended_all', about(user));
  t.like(endedAll, { actorType: 'admin', actorId: 'cli:flows-test', detail: { reason: 'ended_by_administrator' } }, 'the administrator\'s act, not the person\'s');

  await reset.notice();
  const [notice] = await opened.mailTo(user.email);
  t.is(notice!.subject, 'Your two-factor authentication was changed');
  t.true(notice!.text.includes(`turned off for your account at ${new URL(runtime.config.issuer).host} on ${NOW_IN_MAIL} by an administrator`), notice!.text);
});

test('administrator\'s second-factor reset: an unknown address, none to remove, an unfinished setup, and sessions out of reach each say so', async (t) => {
  const { runtime } = opened;
  const { secondFactorReset } = runtime.flows;
  const actor = { type: 'admin' as const, id: 'cli:flows-test' };
  t.deepEqual(await secondFactorReset.reset({ email: `nobody-${randomUUID()}@example.com`, actor, endSessions: true }), { ok: false, reason: 'unknown_account' });

  const without = await newUser();
  t.like(await secondFactorReset.reset({ email: without.email, actor, endSessions: true }), { ok: true, removed: 'nothing' });
  t.deepEqual(await audit('second_factor.removed', about(without)), []);

  const unfinished = await newUser();
  await runtime.secondFactor.startEnrollment(unfinished.id);
  t.like(await secondFactorReset.reset({ email: unfinished.email, actor, endSessions: true }), { ok: true, removed: 'unfinished_setup' });
  t.is(await runtime.secondFactor.pendingEnrollment(unfinished.id), undefined);
  const [row] = await audit('second_factor.removed', about(unfinished));
  t.like(row, { actorType: 'admin', detail: { wasEnabled: false } });

  const outOfReach = await newUser();
  await withSecondFactor(opened.runtime, outOfReach);
  const session = await signedIn(opened.runtime, CLIENT_ID, outOfReach.id);
  const reset = await secondFactorReset.reset({ email: outOfReach.email, actor, endSessions: false });
  t.like(reset, { ok: true, removed: 'second_factor', requiredByRole: false, sessions: { ended: false, reason: 'out_of_reach' } });
  t.deepEqual(await stillSignedIn(session), { session: true, grant: true });
});

test('disabling an account: it no longer signs in, every session and grant ends, audited as the administrator; again is no error; enabling lets it sign in', async (t) => {
  const user = await newUser();
  const signedInNow = await signedIn(opened.runtime, CLIENT_ID, user.id);
  const { accountAdministration } = opened.runtime.flows;
  const actor = { type: 'admin' as const, id: 'cli:flows-test' };

  const disabled = await accountAdministration.disable(user.email.toUpperCase(), actor);
  t.like(disabled, { ok: true, changed: true, sessionsEnded: 1, grantsRevoked: 1 });
  t.deepEqual(await stillSignedIn(signedInNow), { session: false, grant: false });
  t.like(await opened.runtime.users.checkCredentials(user.email, PASSWORD), { ok: false, reason: 'account_disabled' });
  const [event] = await audit('account.disabled', about(user));
  t.like(event, { actorType: 'admin', actorId: 'cli:flows-test', detail: { alreadyDisabled: false, sessionsEnded: 1, grantsRevoked: 1 } });
  t.like(await accountAdministration.disable(user.email, actor), { ok: true, changed: false });

  t.like(await accountAdministration.enable(user.email, actor), { ok: true, changed: true });
  t.true((await opened.runtime.users.checkCredentials(user.email, PASSWORD)).ok);
  t.like(await accountAdministration.enable(user.email, actor), { ok: true, changed: false });
  t.is((await audit('account.enabled', about(user))).length, 2);
  t.deepEqual(await accountAdministration.disable(`nobody-${randomUUID()}@example.com`, actor), { ok: false, reason: 'unknown_account' });
});

test('password reset lifts the second factor\'s lock too: whoever guessed the codes knew the old password, and the owner with the new one is asked a code again', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const { recoveryCodes } = await withSecondFactor(runtime, user);
  const codeRequest = { ip: '198.51.100.11', userAgent: 'flows-test', sessionUid: randomUUID() };
  for (const code of ['aaaa-bbbb-cccc-dddd', 'aaaa-bbbb-cccc-eeee', 'aaaa-bbbb-cccc-ffff']) await runtime.flows.secondFactorSettings.turnOff(user, code, codeRequest);
  t.like(await runtime.flows.secondFactorSettings.turnOff(user, recoveryCodes[0]!, codeRequest), { ok: false, reason: 'too_many_attempts' });

  const token = await runtime.accountTokens.issue(user.id, 'reset_password', user.email, 600);
  t.like(await runtime.flows.passwordReset.complete({ token, password: NEW_PASSWORD, newPasswordErrors: noErrors }, request()), { ok: true, secondFactorRemoved: false });
  t.like(await runtime.flows.secondFactorSettings.turnOff(user, recoveryCodes[0]!, codeRequest), { ok: true }, 'a right code is taken again');
});

test('unlocking an account lifts both its lockouts, the password\'s and the second factor\'s, audited as the administrator', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const { recoveryCodes } = await withSecondFactor(runtime, user);
  const codeRequest = { ip: '198.51.100.10', userAgent: 'flows-test', sessionUid: randomUUID() };
  const passwordAttempt = { email: user.email, ip: codeRequest.ip };
  // LOGIN_LOCKOUT_THRESHOLD=3 in this file: three wrong passwords lock the password, three wrong codes the second factor.
  for (const code of ['aaaa-bbbb-cccc-dddd', 'aaaa-bbbb-cccc-eeee', 'aaaa-bbbb-cccc-ffff']) {
    await runtime.limits.login.beforeAttempt(passwordAttempt);
    await runtime.limits.login.afterFailure(passwordAttempt);
    await runtime.flows.secondFactorSettings.turnOff(user, code, codeRequest);
  }
  t.like(await runtime.limits.login.beforeAttempt(passwordAttempt), { allowed: false, reason: 'locked' });
  t.like(await runtime.flows.secondFactorSettings.turnOff(user, recoveryCodes[0]!, codeRequest), { ok: false, reason: 'too_many_attempts' });

  t.like(await runtime.flows.accountAdministration.unlock(user.email, { type: 'admin', id: 'cli:flows-test' }), { ok: true });
  t.like(await runtime.limits.login.beforeAttempt(passwordAttempt), { allowed: true });
  t.like(await runtime.flows.secondFactorSettings.turnOff(user, recoveryCodes[0]!, codeRequest), { ok: true }, 'a right code is taken again');
  t.like((await audit('account.unlocked', about(user)))[0], { actorType: 'admin', actorId: 'cli:flows-test' });
});

test('a person\'s own second factor: a setup is confirmed from the session that started it by a right code (a wrong one is counted and shown again), recovery codes are renewed and the old ones stop working, then it is turned off; each change mailed and audited', async (t) => {
  const { runtime } = opened;
  const { secondFactorSettings } = runtime.flows;
  const user = await newUser();
  const sessionUid = randomUUID();
  const request = { ip: '198.51.100.8', userAgent: 'flows-test', sessionUid };
  const enrollment = (await secondFactorSettings.startSetup(user, sessionUid))!;
  t.like(await secondFactorSettings.confirmSetup(user, await generate({ secret: enrollment.secret }), { ...request, sessionUid: randomUUID() }), { ok: false, reason: 'nothing_to_confirm' }, 'only from the session that started it');

  const wrong = await secondFactorSettings.confirmSetup(user, '000000' === await generate({ secret: enrollment.secret }) ? '111111' : '000000', request);
  t.like(wrong, { ok: false, reason: 'wrong', enrollment: { secret: enrollment.secret } });
  t.like((await audit('second_factor.failed', about(user)))[0], { ip: request.ip, detail: { reason: 'wrong', during: 'enrollment' } });

  const confirmed = await secondFactorSettings.confirmSetup(user, await generate({ secret: enrollment.secret }), request);
  if (!confirmed.ok) return t.fail(JSON.stringify(confirmed));
  t.is(confirmed.recoveryCodes.length, 10);
  t.true((await runtime.secondFactor.status(user.id)).enabled);
  t.like((await audit('second_factor.enrolled', about(user)))[0], { detail: { method: 'totp', during: 'account' } });
  t.like(await secondFactorSettings.confirmSetup(user, await generate({ secret: enrollment.secret }), request), { ok: false, reason: 'nothing_to_confirm' });

  const [first, second] = confirmed.recoveryCodes;
  const renewed = await secondFactorSettings.renewRecoveryCodes(user, first!, request);
  if (!renewed.ok) return t.fail(JSON.stringify(renewed));
  t.notDeepEqual(renewed.recoveryCodes, confirmed.recoveryCodes);
  t.like(await secondFactorSettings.renewRecoveryCodes(user, second!, request), { ok: false, reason: 'wrong' }, 'the old codes stop working');
  t.like((await audit('recovery_code.used', about(user)))[0], { detail: { during: 'recovery_codes', remaining: 9 } });
  t.is((await audit('recovery_codes.regenerated', about(user))).length, 1);

  const off = await secondFactorSettings.turnOff(user, renewed.recoveryCodes[0]!, request);
  if (!off.ok) return t.fail(JSON.stringify(off));
  t.false((await runtime.secondFactor.status(user.id)).enabled);
  t.like((await audit('second_factor.removed', about(user)))[0], { detail: { method: 'totp' } });
  t.like(await secondFactorSettings.turnOff(user, renewed.recoveryCodes[1]!, request), { ok: false, reason: 'not_enabled' });

  await confirmed.notice();
  await renewed.notice();
  await off.notice();
  const notices = await opened.mailTo(user.email);
  t.is(notices.length, 3);
  for (const notice of notices) {
    t.is(notice.subject, 'Your two-factor authentication was changed');
    t.true(notice.text.includes(NOW_IN_MAIL), notice.text);
  }
});

test('a person\'s own second factor: wrong codes lock it (audited once), and then even a right code is refused until the lock ends', async (t) => {
  const { runtime } = opened;
  const { secondFactorSettings } = runtime.flows;
  const user = await newUser();
  const request = { ip: '198.51.100.9', userAgent: 'flows-test', sessionUid: randomUUID() };
  const enrollment = (await secondFactorSettings.startSetup(user, request.sessionUid))!;
  const confirmed = await secondFactorSettings.confirmSetup(user, await generate({ secret: enrollment.secret }), request);
  if (!confirmed.ok) return t.fail(JSON.stringify(confirmed));
  const answers = [];
  // LOGIN_LOCKOUT_THRESHOLD=3 in this file: the third wrong code locks.
  for (const code of ['aaaa-bbbb-cccc-dddd', 'aaaa-bbbb-cccc-eeee', 'aaaa-bbbb-cccc-ffff']) answers.push(await secondFactorSettings.turnOff(user, code, request));
  t.like(answers[0], { ok: false, reason: 'wrong' });
  t.like(answers[1], { ok: false, reason: 'wrong' });
  t.like(answers[2], { ok: false, reason: 'too_many_attempts', refusal: { reason: 'locked', lockedNow: true } });
  t.like(await secondFactorSettings.turnOff(user, confirmed.recoveryCodes[0]!, request), { ok: false, reason: 'too_many_attempts', refusal: { lockedNow: false } });
  t.true((await runtime.secondFactor.status(user.id)).enabled, 'still on');
  t.is((await audit('second_factor.locked_out', about(user))).length, 1);
});
