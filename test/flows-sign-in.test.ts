// The sign-in and re-authentication flows (src/accounts/flows/sign-in.ts, reauthentication.ts) called directly on
// a runtime with its own database and store, no HTTP server: what each step answers, when the engine is told to
// finish the sign-in (and with which strength), what is kept between the password and the second factor, and the
// audit trail each writes.
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { generate } from 'otplib';
import type { AuditEvent } from '../src/audit/audit.ts';
import type { Clock } from '../src/clock.ts';
import type { User } from '../src/accounts/users.ts';
import { createSignInFlow, type SignInRequest, type SignInStrength } from '../src/accounts/flows/sign-in.ts';
import { ACR_SECOND_FACTOR } from '../src/oidc/assurance.ts';
import { about, auditEvents, openTestRuntime, signedIn, withSecondFactor, type TestRuntime } from './helpers/runtime.ts';

const PASSWORD = 'correct horse battery staple';
const CLIENT_ID = 'flows-sign-in-client';
const NOW = new Date('2031-02-03T04:05:06.000Z');
const clock: Clock = { now: () => new Date(NOW) };
let opened: TestRuntime;

test.before(async () => {
  opened = await openTestRuntime({ LOGIN_LOCKOUT_THRESHOLD: '3' }, { clock });
});
test.after.always(async () => {
  await opened?.close();
});

/** A sign-in as the interaction pages pass it, ten minutes from its end by the flows' clock. */
function signInRequest(overrides: Partial<SignInRequest> = {}): SignInRequest {
  return {
    id: randomUUID(), expiresAt: Math.floor(NOW.getTime() / 1000) + 600, clientId: CLIENT_ID, acrValues: undefined,
    ip: '198.51.100.21', userAgent: `flows-sign-in-test ${randomUUID()}`, ...overrides,
  };
}

function newUser(options: { emailVerified?: boolean } = {}): Promise<User> {
  return opened.runtime.users.create({ email: `sign-in-${randomUUID()}@example.com`, password: PASSWORD, emailVerified: options.emailVerified ?? true });
}

/** A FinishSignIn that remembers what the engine was told. */
function engineSide() {
  const finished: Array<{ accountId: string; strength: SignInStrength }> = [];
  return { finished, finish: async (accountId: string, strength: SignInStrength) => { finished.push({ accountId, strength }); } };
}

/**
 * A right code, and a wrong one (any other six digits). The right one is the next time step's (one step of
 * drift is accepted): the current step's was spent confirming the setup, and a spent step is refused.
 */
async function codes(secret: string): Promise<{ right: string; wrong: string }> {
  const right = await generate({ secret, epoch: (Math.floor(Date.now() / 30_000) + 1) * 30 + 1 });
  return { right, wrong: right === '000000' ? '111111' : '000000' };
}

const audit = (action: string, filter: (event: AuditEvent) => boolean) => auditEvents(opened.runtime, action, filter);
const byAgent = (request: SignInRequest) => (event: AuditEvent) => event.userAgent === request.userAgent;

test('the right password of an account without a second factor: the engine finishes with the password, audited as a login', async (t) => {
  const user = await newUser();
  const request = signInRequest();
  const engine = engineSide();
  const result = await opened.runtime.flows.signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish);
  t.deepEqual(result, { ok: true, next: 'signed_in' });
  t.deepEqual(engine.finished, [{ accountId: user.id, strength: 'password' }]);
  const [login] = await audit('login.succeeded', byAgent(request));
  t.like(login, { subjectUserId: user.id, subjectEmail: user.email, clientId: CLIENT_ID, ip: request.ip, detail: { amr: ['pwd'] } });
  t.is(await opened.runtime.flows.signIn.pendingStep(request), undefined, 'nothing waits for a second factor');
});

test('a wrong password and an unknown address: wrong_credentials, the engine not told, each audited with its reason; an empty field is neither', async (t) => {
  const { signIn } = opened.runtime.flows;
  const user = await newUser();
  const engine = engineSide();
  const attempts = [
    { credentials: { email: user.email, password: 'not the password at all' }, reason: 'wrong_password', subjectUserId: user.id },
    { credentials: { email: `nobody-${randomUUID()}@example.com`, password: PASSWORD }, reason: 'unknown_email', subjectUserId: null },
  ];
  for (const { credentials, reason, subjectUserId } of attempts) {
    const request = signInRequest();
    t.deepEqual(await signIn.withPassword(request, credentials, engine.finish), { ok: false, reason: 'wrong_credentials' });
    const [failed, ...more] = await audit('login.failed', byAgent(request));
    t.like(failed, { detail: { reason }, subjectUserId, clientId: CLIENT_ID });
    t.is(more.length, 0);
  }
  // A slip, not a guess: said, never counted toward a lockout or audited.
  for (const [credentials, field] of [[{ email: ' ', password: PASSWORD }, 'email'], [{ email: user.email, password: '' }, 'password']] as const) {
    const request = signInRequest();
    t.deepEqual(await signIn.withPassword(request, credentials, engine.finish), { ok: false, reason: 'missing_credentials', field });
    t.deepEqual(await audit('login.failed', byAgent(request)), []);
  }
  t.deepEqual(engine.finished, []);
});

test('wrong passwords lock the account (audited once); then even the right one is too_many_attempts, audited as locked', async (t) => {
  const { signIn } = opened.runtime.flows;
  const user = await newUser();
  const engine = engineSide();
  const request = signInRequest({ ip: '198.51.100.22' });
  const outcomes = [];
  for (let attempt = 0; attempt < 3; attempt++) outcomes.push(await signIn.withPassword(request, { email: user.email, password: 'wrong password entirely' }, engine.finish));
  t.like(outcomes[1], { ok: false, reason: 'wrong_credentials' });
  t.like(outcomes[2], { ok: false, reason: 'too_many_attempts', untrustDevice: false, refusal: { reason: 'locked', lockedNow: true } });
  const right = await signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish);
  t.like(right, { ok: false, reason: 'too_many_attempts', refusal: { reason: 'locked', lockedNow: false } });
  t.deepEqual(engine.finished, []);
  t.is((await audit('login.locked_out', byAgent(request))).length, 1);
  t.is((await audit('login.failed', (event) => byAgent(request)(event) && (event.detail as { reason?: string }).reason === 'locked')).length, 1);
});

test('an unconfirmed address where UNVERIFIED_LOGIN_ALLOWED is off: the right password signs nobody in, and says so', async (t) => {
  const { runtime } = opened;
  // The same flow as built in runtime.ts, with the setting off: its dependencies are narrow enough to build here.
  const signIn = createSignInFlow({
    users: runtime.users, passwordAttempts: runtime.limits.login, secondFactor: runtime.secondFactor, codeAttempts: runtime.limits.secondFactor,
    store: runtime.store, auditTrail: runtime.auditTrail, mail: runtime.mailQueue, links: { forgotPassword: 'http://127.0.0.1:3999/password/forgot' }, clock,
    unverifiedLoginAllowed: false, needsSecondFactor: async () => false, sessionAccount: async () => undefined,
  });
  const user = await newUser({ emailVerified: false });
  const request = signInRequest();
  const engine = engineSide();
  t.deepEqual(await signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish), { ok: false, reason: 'email_not_verified', email: user.email });
  t.deepEqual(engine.finished, []);
  t.like((await audit('login.failed', about(user)))[0], { detail: { reason: 'email_not_verified' } });
});

test('with a second factor: the password keeps the sign-in for the code; a wrong code is counted and audited; the right one finishes with both, once', async (t) => {
  const { signIn } = opened.runtime.flows;
  const user = await newUser();
  const { secret } = await withSecondFactor(opened.runtime, user);
  const request = signInRequest();
  const engine = engineSide();
  t.deepEqual(await signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish), { ok: true, next: 'second_factor' });
  t.deepEqual(engine.finished, [], 'not signed in on the password alone');
  const step = await signIn.pendingStep(request);
  if (!step) return t.fail('no pending step');
  t.deepEqual(await signIn.page(step), { show: 'code' });
  const { right, wrong } = await codes(secret);
  t.deepEqual(await signIn.enterCode(step, 'totp', wrong, engine.finish), { ok: false, reason: 'wrong' });
  t.like((await audit('second_factor.failed', byAgent(request)))[0], { detail: { method: 'totp', reason: 'wrong', during: 'sign_in' } });
  t.deepEqual(await signIn.enterCode(step, 'totp', right, engine.finish), { ok: true });
  t.deepEqual(engine.finished, [{ accountId: user.id, strength: 'second_factor' }]);
  t.like((await audit('login.succeeded', byAgent(request)))[0], { subjectUserId: user.id, detail: { amr: ['pwd', 'otp'] } });
  t.like((await audit('second_factor.used', byAgent(request)))[0], { detail: { method: 'totp', via: 'password' } });
  t.is(await signIn.pendingStep(request), undefined, 'the step is spent');
});

test('a recovery code finishes the sign-in too, and is spent', async (t) => {
  const { runtime } = opened;
  const user = await newUser();
  const confirmed = await withSecondFactor(runtime, user);
  const request = signInRequest();
  const engine = engineSide();
  await runtime.flows.signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish);
  const step = await runtime.flows.signIn.pendingStep(request);
  t.deepEqual(await runtime.flows.signIn.enterCode(step!, 'recovery', confirmed.recoveryCodes[0]!, engine.finish), { ok: true });
  t.like((await audit('recovery_code.used', byAgent(request)))[0], { detail: { remaining: 9, during: 'sign_in' } });
  const again = signInRequest();
  await runtime.flows.signIn.withPassword(again, { email: user.email, password: PASSWORD }, engine.finish);
  t.deepEqual(await runtime.flows.signIn.enterCode((await runtime.flows.signIn.pendingStep(again))!, 'recovery', confirmed.recoveryCodes[0]!, engine.finish), { ok: false, reason: 'used' });
  t.is(engine.finished.length, 1);
});

test('a password change, or signing out everywhere, while the code is awaited ends the step, audited as credentials_changed', async (t) => {
  const { runtime } = opened;
  for (const change of [
    (user: User) => runtime.users.setPassword(user.id, 'velvet harbour lantern quartz'),
    (user: User) => runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' }),
  ]) {
    const user = await newUser();
    const { secret } = await withSecondFactor(runtime, user);
    const request = signInRequest();
    const engine = engineSide();
    await runtime.flows.signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish);
    const step = await runtime.flows.signIn.pendingStep(request);
    await change(user);
    t.is(await runtime.flows.signIn.pendingStep(request), undefined);
    t.like((await audit('login.failed', byAgent(request)))[0], { detail: { reason: 'credentials_changed', during: 'second_factor' } });
    // A step read before the change cannot finish either: the account is read again at the end.
    t.deepEqual(await runtime.flows.signIn.enterCode(step!, 'totp', (await codes(secret)).right, engine.finish), { ok: false, reason: 'stale' });
    t.deepEqual(engine.finished, []);
  }
});

test('a sign-in that needs the second factor but has none sets it up inside: wrong code shown again, the right one gives recovery codes and a notice, "continue" finishes with both', async (t) => {
  const { runtime } = opened;
  const { signIn } = runtime.flows;
  const user = await newUser();
  const request = signInRequest({ acrValues: ACR_SECOND_FACTOR });
  const engine = engineSide();
  t.deepEqual(await signIn.withPassword(request, { email: user.email, password: PASSWORD }, engine.finish), { ok: true, next: 'second_factor' });
  const step = await signIn.pendingStep(request);
  const page = await signIn.page(step!);
  if (page.show !== 'enrollment') return t.fail(`shows ${page.show}`);
  t.like(await signIn.page((await signIn.pendingStep(request))!), { show: 'enrollment', enrollment: { secret: page.enrollment.secret } }, 'the same secret on reload');
  const enrolling = (await signIn.pendingStep(request))!;
  t.deepEqual(await signIn.continueAfterEnrollment(enrolling, engine.finish), { ok: false, reason: 'not_confirmed' });
  const right = await generate({ secret: page.enrollment.secret });
  t.like(await signIn.confirmEnrollment(enrolling, right === '000000' ? '111111' : '000000'), { ok: false, reason: 'wrong', enrollment: { secret: page.enrollment.secret } });
  const confirmed = await signIn.confirmEnrollment(enrolling, right);
  if (!confirmed.ok) return t.fail(`refused: ${confirmed.reason}`);
  t.is(confirmed.recoveryCodes.length, 10);
  await confirmed.notice();
  t.like((await opened.mailTo(user.email)).at(-1), { subject: 'Your two-factor authentication was changed' });
  t.like((await audit('second_factor.enrolled', byAgent(request)))[0], { detail: { during: 'sign_in' } });
  t.deepEqual(engine.finished, []);
  const shown = (await signIn.pendingStep(request))!;
  t.deepEqual(await signIn.page(shown), { show: 'recovery_codes' });
  t.deepEqual(await signIn.continueAfterEnrollment(shown, engine.finish), { ok: true });
  t.deepEqual(engine.finished, [{ accountId: user.id, strength: 'second_factor' }]);
});

test('cancelling forgets the password given: the step is gone', async (t) => {
  const { signIn } = opened.runtime.flows;
  const user = await newUser();
  await withSecondFactor(opened.runtime, user);
  const request = signInRequest();
  await signIn.withPassword(request, { email: user.email, password: PASSWORD }, engineSide().finish);
  t.truthy(await signIn.pendingStep(request));
  await signIn.cancel(request.id);
  t.is(await signIn.pendingStep(request), undefined);
});

test('step-up of a signed-in session: to the code when the account has one; to its own password when one must be set up; to the password once the session is gone', async (t) => {
  const { runtime } = opened;
  const { signIn } = runtime.flows;
  const withFactor = await newUser();
  await withSecondFactor(runtime, withFactor);
  const session = await signedIn(runtime, CLIENT_ID, withFactor.id);
  const request = signInRequest({ session: { uid: session.sessionUid, accountId: withFactor.id } });
  t.deepEqual(await signIn.stepUp(request), { next: 'second_factor' });
  t.like(await signIn.pendingStep(request), { pending: { via: 'session' } });

  const without = await newUser();
  const its = await signedIn(runtime, CLIENT_ID, without.id);
  t.deepEqual(await signIn.stepUp(signInRequest({ session: { uid: its.sessionUid, accountId: without.id } })), { next: 'password', email: without.email });

  await runtime.accountSessions.endAll(withFactor.id, { reason: 'signed_out_everywhere' });
  t.deepEqual(await signIn.stepUp(request), { next: 'password' });
  t.is(await signIn.pendingStep(request), undefined, 'the session stood for the first factor; it is gone');
  t.deepEqual(await signIn.stepUp(signInRequest()), { next: 'password' }, 'no session: nothing to step up');
});

test('re-authentication: the right password passes; a wrong one is audited with its purpose and counts toward the lockout, which then refuses the right one', async (t) => {
  const { reauthentication } = opened.runtime.flows;
  const user = await newUser();
  const request = { ip: '198.51.100.23', userAgent: `flows-sign-in-test ${randomUUID()}` };
  t.deepEqual(await reauthentication.checkPassword(user, PASSWORD, 'change_email', request), { ok: true });
  t.deepEqual(await reauthentication.checkPassword(user, 'not it', 'change_email', request), { ok: false });
  t.like((await audit('reauthentication.failed', about(user)))[0], { detail: { purpose: 'change_email' }, ip: request.ip });
  t.deepEqual(await reauthentication.checkPassword(user, '', 'change_password', request), { ok: false });
  t.like(await reauthentication.checkPassword(user, 'not it either', 'change_password', request), { ok: false, refusal: { reason: 'locked', lockedNow: true } });
  t.like((await audit('login.locked_out', about(user)))[0], { detail: { during: 'change_password' } });
  t.like(await reauthentication.checkPassword(user, PASSWORD, 'change_password', request), { ok: false, refusal: { reason: 'locked' } });
});
