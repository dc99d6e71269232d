// Mail that must not be lost while the mail server is out (src/mail/queue.ts), against a real SMTP server on
// loopback that is stopped and started again on the same port: a reset asked for meanwhile arrives and works,
// 4xx replies are retried, 5xx ones are not, old messages are dropped loudly, instances sharing Redis send
// each queued message exactly once, and a refused link does not cost a change of email its audit or notice.
// Nothing here waits a fixed time: every check waits for its outcome (or moves the queue's clock). The tests
// that start a whole server run one at a time, before the rest (ava runs serial tests first): starting an
// embedded database holds this process's event loop for seconds, which would eat into the others' deadlines.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../src/clock.ts';
import { DependencyUnavailable } from '../src/errors.ts';
import { MailRejected, NodemailerMailer } from '../src/mail/mailer.ts';
import { MailQueue, type MailQueueTimings } from '../src/mail/queue.ts';
import { Sealer } from '../src/keys/sealed.ts';
import { DurableQueue } from '../src/store/durable-queue.ts';
import { createStore } from '../src/store/index.ts';
import type { Store } from '../src/store/store.ts';
import { signInToAccount } from './helpers/account.ts';
import * as oauth from 'oauth4webapi';
import { createUser, discover, insecure, PASSWORD } from './helpers/oauth.ts';
import { withSecondFactor } from './helpers/runtime.ts';
import { deleteKeysWithPrefix, findFreePort } from './helpers/redis.ts';
import { capturingLogger, startTestServer, type TestServer } from './helpers/server.ts';
import { linkIn, startSmtpServer, type SmtpServerOptions, type TestSmtpServer } from './helpers/smtp.ts';
import { UserAgent, formField, post } from './helpers/user-agent.ts';
import { until } from './helpers/wait.ts';

/** Retries within a fraction of a second, so that the tests see several without waiting long. */
const FAST: Partial<MailQueueTimings> = { firstRetryDelayMs: 100, maxRetryDelayMs: 400, pollIntervalMs: 50 };
const NEW_PASSWORD = 'velvet harbour lantern quartz';
const redisUrl = process.env.REDIS_URL;

const cleanups: Array<() => Promise<unknown>> = [];
test.after.always(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

/** A port where the mail server will be, with nothing listening yet: the mail server is down. */
async function downSmtp(): Promise<{ port: number; url: string; start(options?: SmtpServerOptions): Promise<TestSmtpServer> }> {
  const port = await findFreePort();
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    async start(options = {}) {
      const smtp = await startSmtpServer({ ...options, port });
      cleanups.push(() => smtp.close());
      return smtp;
    },
  };
}

/**
 * A queue on this run's backend (Redis when REDIS_URL is set) with its own prefix, and a mailer for smtpUrl;
 * `clock`: where it reads the time (the system clock unless a test moves one by hand).
 */
function queueFor(smtpUrl: string, logger: Logger, timings: Partial<MailQueueTimings> = FAST, clock?: Clock): { queue: MailQueue; store: Store } {
  const prefix = `gatehouse-test-${randomBytes(6).toString('hex')}:`;
  const store = createStore({ redis: redisUrl === undefined ? undefined : { url: redisUrl }, prefix });
  const mailer = new NodemailerMailer({
    mode: 'production', smtpUrl, from: { name: 'Gatehouse', address: 'no-reply@id.example.net' },
    outboxDir: path.join(os.tmpdir(), 'unused-outbox'), issuer: 'https://id.example.com', logger, cacheTemplates: false,
  });
  const queue = new MailQueue({ store, sealer: new Sealer([randomBytes(32)]), mailer, logger, timings, ...(clock ? { clock } : {}) });
  queue.start();
  cleanups.push(async () => {
    await queue.close();
    await mailer.close();
    await store.close();
    if (redisUrl) await deleteKeysWithPrefix(redisUrl, prefix);
  });
  return { queue, store };
}

function notice(to: string) {
  return {
    to, template: 'email-change-requested' as const,
    data: { newEmail: 'ada.new@example.org', requestedAt: new Date('2026-11-22T03:04:05Z'), link: 'https://id.example.com/password/forgot' },
  };
}

/** What no log line may hold: the address, the link or its token. */
function assertNothingSecretLogged(t: { false(value: boolean, message?: string): void }, lines: string[], address: string): void {
  // The audit trail's lines name the account on purpose; the start-up line names migrations (one is about tokens).
  const logged = lines.filter((line) => (JSON.parse(line) as { component?: string }).component !== 'audit' && !line.includes('"msg":"database migrated"')).join('\n');
  t.false(logged.includes(address), 'no address');
  t.false(logged.includes('@example.com'), 'no address (nor a reply quoting one)');
  t.false(/token|https?:\/\//i.test(logged), 'no link or token');
}

test.serial('a reset asked for while the mail server is down gets the usual page; once it is back the link arrives and works', async (t) => {
  const smtpPort = await downSmtp();
  const { logger, lines } = capturingLogger();
  const server = await startTestServer({ SMTP_URL: smtpPort.url }, { logger, runtime: { mailQueue: FAST } });
  cleanups.push(() => server.close());
  const user = await createUser(server);
  const agent = new UserAgent();
  const formResponse = await agent.request(`${server.issuer}/password/forgot`);
  const answer = await post(agent, `${server.issuer}/password/forgot`, { csrf: formField(await formResponse.text(), 'csrf'), email: user.email });
  t.is(answer.status, 200, 'not a 503: the person is told to check their email, as always');
  t.regex(answer.html, /Check your email/);

  // The first attempt failed after the page went out, and the message waits in the store.
  await until(() => lines.some((line) => line.includes('queued for a retry')), 'the first attempt to fail');
  t.true(await server.runtime.mailQueue.queuedCount() >= 1);
  await until(async () => (await server.runtime.auditTrail.list({ userEmail: user.email, action: 'password_reset.requested', limit: 5 }))
    .some((event) => event.outcome === 'success' && event.detail.mail === 'queued'), 'the request to be audited as queued');

  const smtp = await smtpPort.start();
  const mail = await smtp.nextMail(20_000);
  t.deepEqual(mail.envelope.to, [user.email]);
  t.is(mail.email.subject, 'Reset your password');
  await until(async () => await server.runtime.mailQueue.queuedCount() === 0, 'the queue to empty');

  const link = linkIn(mail);
  t.true(link.startsWith(`${server.issuer}/password/reset?token=`));
  const resetBrowser = new UserAgent();
  const form = await resetBrowser.request(link);
  t.is(form.status, 200);
  const formHtml = await form.text();
  const done = await post(resetBrowser, `${server.issuer}/password/reset`, {
    csrf: formField(formHtml, 'csrf'), token: formField(formHtml, 'token'), password: NEW_PASSWORD, confirm: NEW_PASSWORD,
  });
  t.is(done.status, 200);
  t.regex(done.html, /Your password is changed/);
  t.true(await server.runtime.users.verifyPassword(user.id, NEW_PASSWORD));
  t.false(await server.runtime.users.verifyPassword(user.id, PASSWORD));
  t.true(lines.some((line) => line.includes('queued mail sent')));
  assertNothingSecretLogged(t, lines, user.email);
});

test.serial('the admin API turning off a second factor says whether the person was told: not while the mail server is down, so the administrator tells them', async (t) => {
  const smtpPort = await downSmtp();
  const server = await startTestServer({ SMTP_URL: smtpPort.url }, { runtime: { mailQueue: FAST } });
  cleanups.push(() => server.close());
  const user = await createUser(server);
  await withSecondFactor(server.runtime, user);
  const as = await discover(server);
  const admin = `${server.issuer}/admin/v1`;
  const metadata = await server.runtime.clients.create({ name: 'Admin script', type: 'service', apiScopes: ['admin:write'] });
  const client: oauth.Client = { client_id: metadata.client_id };
  const { access_token: token } = await oauth.processClientCredentialsResponse(as, client, await oauth.clientCredentialsGrantRequest(as, client,
    oauth.ClientSecretBasic(String(metadata.client_secret)), new URLSearchParams({ resource: admin, scope: 'admin:write' }), insecure));
  const answer = await fetch(`${admin}/users/${user.id}/second-factor`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  t.is(answer.status, 200);
  t.deepEqual(await answer.json(), { removed: 'second_factor', notified: false });
});

test('a receiver still failing holds back only its own messages on a pass: another receiver\'s are tried (one application down delays no other\'s logout notices)', async (t) => {
  const prefix = `gatehouse-test-${randomBytes(6).toString('hex')}:`;
  const store = createStore({ redis: redisUrl === undefined ? undefined : { url: redisUrl }, prefix });
  let now = Date.now();
  const attempts: string[] = [];
  let upTries = 0;
  const queue = new DurableQueue<{ to: string; n: number }>({
    store, sealer: new Sealer([randomBytes(32)]), logger: capturingLogger().logger, clock: { now: () => new Date(now) },
    timings: { firstRetryDelayMs: 1000, maxRetryDelayMs: 1000, maxAgeMs: 60_000, pollIntervalMs: 60_000, claimLeaseMs: 10_000 },
    kind: {
      keyPrefix: 'test-queue', noun: 'message', receiver: 'the receiver',
      receiverOf: (message) => message.to,
      async perform(message) {
        attempts.push(message.to);
        if (message.to === 'down' || (upTries += 1) === 1) throw new Error('unavailable');
      },
      isTransient: () => true, failureReason: () => 'unavailable', describe: (message) => ({ to: message.to }),
      isMessage: (value): value is { to: string; n: number } => typeof (value as { to?: unknown }).to === 'string',
    },
  });
  cleanups.push(async () => {
    await queue.close();
    await store.close();
    if (redisUrl) await deleteKeysWithPrefix(redisUrl, prefix);
  });
  for (let n = 0; n < 5; n++) t.is(await queue.deliver({ to: 'down', n }), 'queued');
  now += 10;
  t.is(await queue.deliver({ to: 'up', n: 0 }), 'queued');
  now += 2000;
  attempts.length = 0;
  await queue.retryDue();
  t.deepEqual(attempts, ['down', 'up'], 'one attempt at the receiver still down, then the other\'s message, which goes');
  t.is(await queue.queuedCount(), 5);
});

test('a reply of "try again later" (4xx) is retried until the message is taken, its dates intact', async (t) => {
  let deferring = true;
  let attempts = 0;
  const smtp = await startSmtpServer({ deferRecipient: () => { attempts++; return deferring; } });
  cleanups.push(() => smtp.close());
  const { logger, lines } = capturingLogger();
  const { queue } = queueFor(smtp.url, logger);

  t.is(await queue.deliver(notice('greylisted@example.com')), 'queued');
  await until(() => attempts >= 3, 'two retries');
  t.is(smtp.received.length, 0);
  deferring = false;
  const mail = await smtp.nextMail(20_000);
  t.deepEqual(mail.envelope.to, ['greylisted@example.com']);
  t.regex(mail.email.text ?? '', /2026-11-22 03:04 UTC/, 'the request time survived the store');
  await until(async () => await queue.queuedCount() === 0, 'the queue to empty');
  t.true(lines.some((line) => line.includes('"reason":"SMTP 451"')));
  assertNothingSecretLogged(t, lines, 'greylisted@example.com');
});

test('a queued message is kept sealed: whoever reads the store finds neither the address nor the link in it', async (t) => {
  const smtp = await downSmtp();
  const { logger } = capturingLogger();
  const { queue, store } = queueFor(smtp.url, logger);
  const link = `https://id.example.com/password/reset?token=${randomBytes(16).toString('hex')}`;
  t.is(await queue.deliver({ to: 'sealed@example.com', template: 'reset-password', data: { link, expiresInMinutes: 30 } }), 'queued');

  const records = await Promise.all((await store.indexMembers('mail-queue:messages')).map((id) => store.get(`mail-queue:message:${id}`)));
  t.true(records.length >= 1);
  for (const record of records) {
    t.false(record!.value.includes('sealed@example.com'), 'no address');
    t.false(record!.value.includes(link.slice(-32)), 'no token');
    t.false(record!.value.includes('reset-password'), 'not even which mail');
  }
  const mail = await (await smtp.start()).nextMail(20_000);
  t.is(linkIn(mail), link, 'the link arrives whole once the mail server is back');
});

test('an instance without the key that sealed a queued message leaves it for one that has the key, and says why', async (t) => {
  const smtp = await downSmtp();
  const { logger } = capturingLogger();
  const { queue, store } = queueFor(smtp.url, logger);
  const mailer = new NodemailerMailer({
    mode: 'production', smtpUrl: smtp.url, from: { name: 'Gatehouse', address: 'no-reply@id.example.net' },
    outboxDir: path.join(os.tmpdir(), 'unused-outbox'), issuer: 'https://id.example.com', logger, cacheTemplates: false,
  });
  const misconfigured = capturingLogger();
  const otherKeys = new MailQueue({ store, sealer: new Sealer([randomBytes(32)]), mailer, logger: misconfigured.logger, timings: FAST });
  cleanups.push(async () => { await otherKeys.close(); await mailer.close(); });
  t.is(await queue.deliver(notice('kept@example.com')), 'queued');

  await otherKeys.retryDue();
  t.is(await queue.queuedCount(), 1, 'still queued');
  t.true(misconfigured.lines.some((line) => line.includes('ENCRYPTION_KEYS') && line.includes('"level":50')));
  const mail = await (await smtp.start()).nextMail(20_000);
  t.deepEqual(mail.envelope.to, ['kept@example.com']);
});

test('a message the mail server refuses for good (5xx) is not retried', async (t) => {
  const rcptRefusals: string[] = [];
  const senderRefusals: string[] = [];
  const smtp = await startSmtpServer({
    refuseRecipient: (address) => { rcptRefusals.push(address); return true; },
  });
  const strict = await startSmtpServer({ refuseSender: (address) => { senderRefusals.push(address); return true; } });
  cleanups.push(() => smtp.close(), () => strict.close());
  const { logger, lines } = capturingLogger();
  const { queue } = queueFor(smtp.url, logger);
  const { queue: strictQueue } = queueFor(strict.url, logger);

  await t.throwsAsync(queue.deliver(notice('gone@example.com')), { instanceOf: MailRejected });
  // A 5xx to the sender is the mail server's problem, not the address's: still final, not retried.
  const error = await t.throwsAsync(strictQueue.deliver(notice('someone@example.com')), { instanceOf: DependencyUnavailable });
  t.is((error?.cause as { responseCode?: number }).responseCode, 550);

  t.is(await queue.queuedCount(), 0);
  t.is(await strictQueue.queuedCount(), 0);
  for (let pass = 0; pass < 3; pass++) await Promise.all([queue.retryDue(), strictQueue.retryDue()]);
  t.is(rcptRefusals.length, 1, 'the refused recipient was tried once');
  t.is(senderRefusals.length, 1, 'the refused sender was tried once');
  t.is(smtp.received.length + strict.received.length, 0);
  t.is(lines.filter((line) => line.includes('not retried')).length, 2);
  assertNothingSecretLogged(t, lines, 'gone@example.com');
});

test('a message still not sent when too old is dropped, logged at error level with why, never what', async (t) => {
  const smtpPort = await downSmtp();
  const { logger, lines } = capturingLogger();
  // Two seconds: time for the first attempt to fail and be queued even on a loaded machine (with less, the message
  // could be too old before it is queued, and deliver would refuse it).
  const { queue } = queueFor(smtpPort.url, logger, { ...FAST, maxAgeMs: 2000 });

  t.is(await queue.deliver(notice('late@example.com')), 'queued');
  await until(() => lines.some((line) => line.includes('queued mail dropped')), 'the message to be dropped');
  const dropped = JSON.parse(lines.find((line) => line.includes('queued mail dropped'))!) as { level: number; msg: string; reason?: string; template: string };
  t.is(dropped.level, 50, 'error level');
  t.is(dropped.template, 'email-change-requested');
  t.is(dropped.reason, 'ESOCKET', 'the error code only (connection refused)');
  t.is(await queue.queuedCount(), 0);
  // Back now, it gets nothing: the message is gone for good.
  const smtp = await smtpPort.start();
  for (let pass = 0; pass < 3; pass++) await queue.retryDue();
  t.is(smtp.received.length, 0);
  assertNothingSecretLogged(t, lines, 'late@example.com');
});

test('a message found too old by a later pass is dropped with the reason its last attempt failed', async (t) => {
  const smtpPort = await downSmtp();
  const { logger, lines } = capturingLogger();
  // No pass runs on its own (a minute between passes): the one below comes after the message's last chance,
  // reached by moving the queue's clock, not by waiting. Until then the message has two seconds: time for the
  // first attempt to fail and be queued even on a loaded machine.
  const maxAgeMs = 2000;
  let movedMs = 0;
  const clock: Clock = { now: () => new Date(Date.now() + movedMs) };
  const { queue } = queueFor(smtpPort.url, logger, { firstRetryDelayMs: 50, maxRetryDelayMs: 50, pollIntervalMs: 60_000, maxAgeMs }, clock);

  t.is(await queue.deliver(notice('later@example.com')), 'queued');
  // Counted from after the message was queued: surely past its last chance.
  movedMs = maxAgeMs + 100;
  // Nothing happened by itself meanwhile: only the pass below can find the message too old.
  t.false(lines.some((line) => line.includes('queued mail dropped')));
  await queue.retryDue();
  const dropped = JSON.parse(lines.find((line) => line.includes('queued mail dropped'))!) as { level: number; attempts: number; reason?: string };
  t.is(dropped.level, 50);
  t.is(dropped.attempts, 1);
  t.is(dropped.reason, 'ESOCKET', 'the first attempt\'s failure, kept with the message');
  t.is(await queue.queuedCount(), 0);
  assertNothingSecretLogged(t, lines, 'later@example.com');
});

test.serial('a one-shot runtime (the CLI) makes no passes over the queue: what it queued waits for the servers', async (t) => {
  const smtpPort = await downSmtp();
  const { logger, lines } = capturingLogger();
  const oneShot = await startTestServer({ SMTP_URL: smtpPort.url }, { logger, runtime: { oneShot: true, mailQueue: FAST } });
  cleanups.push(() => oneShot.close());
  t.is(await oneShot.runtime.mailQueue.deliver(notice('waiting@example.com')), 'queued');
  // A queue that makes passes, with the same timings and the same unreachable server, queues a message after
  // it: once that one has been tried again twice, a one-shot runtime that made passes would have too.
  const passing = capturingLogger();
  const { queue } = queueFor(smtpPort.url, passing.logger);
  t.is(await queue.deliver(notice('passing@example.com')), 'queued');
  await until(() => passing.lines.filter((line) => line.includes('queued for a retry')).length >= 3, 'two passes to retry the other queue\'s message');
  t.is(lines.filter((line) => line.includes('queued for a retry')).length, 1, 'the first attempt only');
  t.is(await oneShot.runtime.mailQueue.queuedCount(), 1, 'kept for the servers to send');
});

test.serial('changing the email: when the link to the new address is refused, the audit record and the notice to the current address still happen', async (t) => {
  const smtp = await startSmtpServer({ refuseRecipient: (address) => address.startsWith('refused-') });
  cleanups.push(() => smtp.close());
  const { logger, lines } = capturingLogger();
  const server = await startTestServer({ SMTP_URL: smtp.url }, { logger, runtime: { mailQueue: FAST } });
  cleanups.push(() => server.close());
  const user = await createUser(server);
  const agent = new UserAgent();
  const { html } = await signInToAccount(server, agent, { email: user.email, password: PASSWORD }, '/account/email');
  const newEmail = `refused-${randomBytes(4).toString('hex')}@example.org`;

  const sent = await post(agent, `${server.issuer}/account/email`, { csrf: formField(html, 'csrf'), email: newEmail, current_password: PASSWORD });
  t.is(sent.status, 200);
  const notice = await smtp.nextMail(20_000);
  t.deepEqual(notice.envelope.to, [user.email]);
  t.is(notice.email.subject, 'A change of your email address was requested');
  await until(async () => (await server.runtime.auditTrail.list({ userEmail: user.email, action: 'email_change.requested', limit: 5 })).length === 1, 'the request to be audited');
  await until(() => lines.some((line) => line.includes('email change link failed after the response (MailRejected)')), 'the refused link to be logged');
  t.is(smtp.received.length, 1, 'nothing reached the refused address');
});

(redisUrl ? test.serial : test.skip)('two runtimes sharing one Redis prefix send each queued message exactly once', async (t) => {
  const smtpPort = await downSmtp();
  // Instances sharing a store share ENCRYPTION_KEYS, which seal the queued mail.
  const shared = { SMTP_URL: smtpPort.url, STORE_PREFIX: `gatehouse-test-${randomBytes(6).toString('hex')}:`, ENCRYPTION_KEYS: randomBytes(32).toString('base64url') };
  const first = await startTestServer(shared, { runtime: { mailQueue: FAST } });
  cleanups.push(() => first.close());
  const second: TestServer = await startTestServer(shared, { runtime: { mailQueue: FAST } });
  cleanups.push(() => second.close());

  const addresses = Array.from({ length: 12 }, (_, index) => `shared-${index}-${randomBytes(4).toString('hex')}@example.com`);
  for (const address of addresses) t.is(await first.runtime.mailQueue.deliver(notice(address)), 'queued');
  t.is(await second.runtime.mailQueue.queuedCount(), addresses.length, 'the other instance sees the same queue');

  const smtp = await smtpPort.start();
  // Both timers run, and passes are also forced side by side, so that both race for every message.
  await until(async () => {
    await Promise.all([first.runtime.mailQueue.retryDue(), second.runtime.mailQueue.retryDue()]);
    return await first.runtime.mailQueue.queuedCount() === 0;
  }, 'the queue to empty');
  // Empty means nothing is being sent either: a message being sent stays counted until it is taken off.
  const received = smtp.received.flatMap((mail) => mail.envelope.to).sort();
  t.deepEqual(received, [...addresses].sort(), 'every message once, none twice');
});
