// The sign-up and email verification flows (src/accounts/flows/sign-up.ts, email-verification.ts) called directly
// on a runtime with its own database and store, no HTTP server: each answer of their result unions, the account
// rows, the audit trail, and the mail the notices send — never with the name a stranger typed in it.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { AuditEvent } from '../src/audit/audit.ts';
import { about, auditEvents, linkIn, openTestRuntime, tokenOf, type TestRuntime } from './helpers/runtime.ts';

const PASSWORD = 'correct horse battery staple';
const OTHER_PASSWORD = 'velvet harbour lantern quartz';
const CLIENT_ID = 'flows-sign-up-client';
/** A name written to be read as an instruction, were it ever put in a message. */
const HOSTILE_NAME = 'Security team: your account is locked, sign in at https://evil.example/now';

let opened: TestRuntime;

test.before(async () => {
  opened = await openTestRuntime();
});
test.after.always(async () => {
  await opened?.close();
});

/** A request as a door passes it; the user agent is unique, so a test finds its own audit rows. */
function origin() {
  return { ip: '198.51.100.9', userAgent: `flows-sign-up-test ${randomUUID()}`, clientId: CLIENT_ID };
}

const newAddress = () => `sign-up-${randomUUID()}@example.com`;

const audit = (action: string, filter: (event: AuditEvent) => boolean) => auditEvents(opened.runtime, action, filter);

test('a new address: an unverified account, and after the answer its audit record and a verification link that verifies it once', async (t) => {
  const { signUp, emailVerification } = opened.runtime.flows;
  const address = newAddress();
  const seen = origin();
  const result = await signUp.signUp({ name: HOSTILE_NAME, email: `  ${address.toUpperCase()}`, password: PASSWORD }, seen);
  if (!result.ok) return t.fail(`refused: ${result.reason}`);
  t.is(result.email, address, 'the address as normalized');
  t.true(result.created);

  const user = await opened.runtime.users.findByEmail(address);
  if (!user) return t.fail('no account');
  t.like(user, { email: address, emailVerified: false, name: HOSTILE_NAME, disabled: false });
  t.true(await opened.runtime.users.verifyPassword(user.id, PASSWORD));
  // Nothing is audited or mailed before the door runs the notice, after its answer.
  t.deepEqual(await audit('account.created', about(user)), []);
  t.deepEqual(await opened.mailTo(address), []);

  await result.notice();
  const [created, ...moreCreated] = await audit('account.created', about(user));
  t.like(created, { outcome: 'success', subjectEmail: address, ip: seen.ip, userAgent: seen.userAgent, clientId: CLIENT_ID, detail: { via: 'sign-up' } });
  t.is(moreCreated.length, 0);
  const [mail, ...moreMail] = await opened.mailTo(address);
  if (!mail) return t.fail('no verification mail');
  t.is(moreMail.length, 0);
  t.is(mail.subject, 'Confirm your email address');
  t.false(mail.text.includes('Security team') || mail.text.includes('evil.example'), 'the name is in no mail');
  const link = linkIn(mail.text);
  t.true(link.startsWith('http://127.0.0.1:3999/verify-email?token='));

  // Opening the link uses nothing; confirming it verifies the address, once, and is audited.
  const checked = await emailVerification.check(tokenOf(link));
  t.like(checked, { ok: true, user: { id: user.id, emailVerified: false } });
  t.false((await opened.runtime.users.findById(user.id))?.emailVerified);
  const request = { ip: '203.0.113.4', userAgent: `verify ${randomUUID()}` };
  const verified = await emailVerification.verify(tokenOf(link), request);
  t.like(verified, { ok: true, user: { id: user.id, emailVerified: true } });
  t.true((await opened.runtime.users.findById(user.id))?.emailVerified);
  const [verifiedRow, ...moreVerified] = await audit('email.verified', about(user));
  t.like(verifiedRow, { outcome: 'success', subjectEmail: address, ip: request.ip, userAgent: request.userAgent });
  t.is(moreVerified.length, 0);
  t.deepEqual(await emailVerification.verify(tokenOf(link), request), { ok: false, reason: 'used' });
  t.is((await audit('email.verified', about(user))).length, 1, 'a used link is not audited as a verification');
});

test('a registered address: the same answer, no account, and the owner alone is told (without the name typed) and audited', async (t) => {
  const { signUp } = opened.runtime.flows;
  const owner = await opened.runtime.users.create({ email: newAddress(), password: PASSWORD, name: 'Ada Lovelace', emailVerified: true });
  const seen = origin();
  const result = await signUp.signUp({ name: HOSTILE_NAME, email: owner.email.toUpperCase(), password: OTHER_PASSWORD }, seen);
  if (!result.ok) return t.fail(`refused: ${result.reason}`);
  t.is(result.email, owner.email);
  t.false(result.created);

  t.deepEqual(await opened.runtime.users.findByEmail(owner.email), owner, 'the account is untouched');
  t.true(await opened.runtime.users.verifyPassword(owner.id, PASSWORD));
  t.false(await opened.runtime.users.verifyPassword(owner.id, OTHER_PASSWORD));
  t.deepEqual(await audit('account.created', about(owner)), []);
  t.deepEqual(await opened.mailTo(owner.email), []);

  await result.notice();
  const [attempt, ...more] = await audit('account.created', about(owner));
  t.like(attempt, { outcome: 'failure', subjectEmail: owner.email, ip: seen.ip, userAgent: seen.userAgent, clientId: CLIENT_ID, detail: { reason: 'email_taken' } });
  t.is(more.length, 0);
  const mails = await opened.mailTo(owner.email);
  t.deepEqual(mails.map((mail) => mail.subject), ['You already have an account'], 'a notice, not a verification link');
  t.is(linkIn(mails[0]!.text), 'http://127.0.0.1:3999/account');
  t.false(mails[0]!.text.includes('Security team') || mails[0]!.text.includes('evil.example'), 'the name is in no mail');
  t.false(mails[0]!.text.includes('Ada Lovelace'), 'nor the account\'s own');
  t.deepEqual(await opened.runtime.accountTokens.peek('nothing', 'verify_email'), { ok: false, reason: 'unknown' });
});

test('an address at an internationalized domain is one account whether typed in Unicode or as punycode (as browsers differ)', async (t) => {
  const { signUp } = opened.runtime.flows;
  const local = `juergen-${randomUUID()}`;
  const result = await signUp.signUp({ name: 'Jürgen', email: `${local}@Bücher.example`, password: PASSWORD }, origin());
  if (!result.ok) return t.fail(`refused: ${result.reason}`);
  t.is(result.email, `${local}@xn--bcher-kva.example`, 'kept as mail writes it');
  const user = await opened.runtime.users.findByEmail(`${local}@xn--bcher-kva.example`);
  t.truthy(user);
  t.is((await opened.runtime.users.findByEmail(`${local}@bücher.example`))?.id, user?.id);
  await result.notice();
});

test('refusals name the field, and leave no account, audit record or mail', async (t) => {
  const { signUp } = opened.runtime.flows;
  const cases = [
    { input: { name: 'x'.repeat(201), password: PASSWORD }, expected: { ok: false, reason: 'invalid_name', problem: 'too_long' } },
    { input: { name: 'Ada\nNew line: sign in at https://evil.example', password: PASSWORD }, expected: { ok: false, reason: 'invalid_name', problem: 'control_characters' } },
    { input: { name: 'Ada\u202fLovelace\u0085', password: PASSWORD }, expected: { ok: false, reason: 'invalid_name', problem: 'control_characters' } },
    { input: { name: '', password: 'short' }, expected: { ok: false, reason: 'weak_password' } },
  ] as const;
  for (const { input, expected } of cases) {
    const address = newAddress();
    const seen = origin();
    const result = await signUp.signUp({ ...input, email: address }, seen);
    t.like(result, expected, input.name.slice(0, 20));
    t.is(await opened.runtime.users.findByEmail(address), null);
    t.deepEqual(await audit('account.created', (event) => event.userAgent === seen.userAgent), []);
    t.deepEqual(await opened.mailTo(address), []);
  }
  const weak = await signUp.signUp({ name: '', email: newAddress(), password: 'short' }, origin());
  if (weak.ok || weak.reason !== 'weak_password') return t.fail('not refused as weak');
  t.regex(weak.problem, /\d+ characters/, 'the policy says what is missing');
  t.deepEqual(await signUp.signUp({ name: 'Ada', email: 'not an address', password: PASSWORD }, origin()), { ok: false, reason: 'invalid_email' });
  // 200 characters is allowed, and an empty name is no name.
  const longest = await signUp.signUp({ name: 'y'.repeat(200), email: newAddress(), password: PASSWORD }, origin());
  t.like(longest, { ok: true, created: true });
  const nameless = newAddress();
  t.like(await signUp.signUp({ name: '', email: nameless, password: PASSWORD }, origin()), { ok: true, created: true });
  t.is((await opened.runtime.users.findByEmail(nameless))?.name, null);
});

test('a new link goes only to an existing, enabled, unverified account, and replaces the one before', async (t) => {
  const { emailVerification } = opened.runtime.flows;
  const { users } = opened.runtime;
  const unknown = newAddress();
  t.deepEqual(await emailVerification.sendNewLink(unknown), { sent: false, reason: 'unknown_account' });
  const verified = await users.create({ email: newAddress(), password: PASSWORD, emailVerified: true });
  t.deepEqual(await emailVerification.sendNewLink(verified.email), { sent: false, reason: 'already_verified' });
  const disabled = await users.create({ email: newAddress(), password: PASSWORD, emailVerified: false });
  await users.setDisabled(disabled.id, true);
  t.deepEqual(await emailVerification.sendNewLink(disabled.email), { sent: false, reason: 'account_disabled' });
  t.deepEqual([...await opened.mailTo(unknown), ...await opened.mailTo(verified.email), ...await opened.mailTo(disabled.email)], []);

  const user = await users.create({ email: newAddress(), password: PASSWORD, name: HOSTILE_NAME, emailVerified: false });
  t.like(await emailVerification.sendNewLink(user.email.toUpperCase()), { sent: true, user: { id: user.id } });
  t.like(await emailVerification.sendNewLink(user.email), { sent: true });
  const mails = await opened.mailTo(user.email);
  t.deepEqual(mails.map((mail) => mail.subject), ['Confirm your email address', 'Confirm your email address']);
  t.false(mails.some((mail) => mail.text.includes('evil.example')), 'the name is in no mail');
  const [first, second] = mails.map((mail) => tokenOf(linkIn(mail.text)));
  t.like(await emailVerification.check(first!), { ok: false }, 'the newest link is the only one that works');
  t.like(await emailVerification.check(second!), { ok: true, user: { id: user.id } });
});

test('a link sent to an address the account has left verifies nothing', async (t) => {
  const { emailVerification } = opened.runtime.flows;
  const { users } = opened.runtime;
  const user = await users.create({ email: newAddress(), password: PASSWORD, emailVerified: false });
  await emailVerification.sendLink(user);
  const [mail] = await opened.mailTo(user.email);
  if (!mail) return t.fail('no link');
  const token = tokenOf(linkIn(mail.text));
  const moved = await users.changeEmail(user.id, newAddress());
  if (!moved) return t.fail('not moved');
  t.deepEqual(await emailVerification.check(token), { ok: false, reason: 'email_changed' });
  t.deepEqual(await emailVerification.verify(token, origin()), { ok: false, reason: 'email_changed' });
  // (a change of address is confirmed by its own link, which verifies the new address: nothing to assert there)
  t.is((await users.findById(user.id))?.email, moved.email);
  t.deepEqual(await audit('email.verified', about(user)), []);
  t.deepEqual(await emailVerification.verify('not-a-token', origin()), { ok: false, reason: 'unknown' });
});

test('an address mail cannot reach (over 64 characters before the @ or 254 in all, RFC 5321) is given to no account, while one that already has it still signs in', async (t) => {
  const { signUp } = opened.runtime.flows;
  const { users } = opened.runtime;
  const tooLong = `${'a'.repeat(65)}@example.com`;
  t.deepEqual(await signUp.signUp({ name: 'Ada', email: tooLong, password: PASSWORD }, origin()), { ok: false, reason: 'invalid_email' });
  await t.throwsAsync(users.create({ email: tooLong, password: PASSWORD }), { message: 'the part of an email address before the @ can have at most 64 characters' });
  const longest = `${'b'.repeat(63)}${randomUUID().slice(0, 1)}@example.com`;
  t.like(await signUp.signUp({ name: 'Ada', email: longest, password: PASSWORD }, origin()), { ok: true, created: true });
  const holder = await users.findByEmail(longest);
  if (!holder) return t.fail('no account');
  await t.throwsAsync(users.changeEmail(holder.id, tooLong), { message: /before the @ can have at most 64 characters/ });
  // Nor over 254 characters in all (a mail's envelope holds no more), with a short local part.
  const label = 'd'.repeat(60);
  const tooLongDomain = `ada@${[label, label, label, label].join('.')}.example.com`;
  t.true(tooLongDomain.length > 254 && tooLongDomain.length <= 320);
  t.deepEqual(await signUp.signUp({ name: 'Ada', email: tooLongDomain, password: PASSWORD }, origin()), { ok: false, reason: 'invalid_email' });
  await t.throwsAsync(users.changeEmail(holder.id, tooLongDomain), { message: 'an email address can have at most 254 characters' });

  // Made before the rule: found, and signs in.
  await opened.runtime.database.prisma.user.update({ where: { id: holder.id }, data: { email: tooLong } });
  t.is((await users.findByEmail(tooLong))?.id, holder.id);
  t.like(await users.checkCredentials(tooLong, PASSWORD), { ok: true, user: { id: holder.id } });
});
