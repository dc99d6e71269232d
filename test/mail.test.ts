// Email: every template delivered through a real SMTP server on loopback (text and HTML parts, the same link
// in both, no person's name, data escaped, proper headers), mail-server outages, the development outbox, the logs, config.
import test from 'ava';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig, type Mode } from '../src/config/index.ts';
import { DependencyUnavailable } from '../src/errors.ts';
import { MailRejected, NodemailerMailer, type MailerOptions } from '../src/mail/mailer.ts';
import { TEMPLATE_NAMES, type TemplateData, type TemplateName } from '../src/mail/templates.ts';
import { parseMail, startSilentServer, startSmtpServer, unusedSmtpUrl, type ReceivedMail } from './helpers/smtp.ts';
import { capturingLogger, startTestServer } from './helpers/server.ts';

// What someone signing up with another person's address could choose as a name, were it ever mailed.
const HOSTILE_NAME = `Your account was locked: sign in at http://evil.example/unlock <script>alert("owned")</script> & 'Ada'`;
const CHANGED_AT = new Date('2026-11-22T03:04:05Z');
const SAMPLES: { [Name in TemplateName]: TemplateData[Name] } = {
  'verify-email': { link: 'https://id.example.com/verify?token=verify-secret-1&step=2', expiresInMinutes: 1440 },
  'reset-password': { link: 'https://id.example.com/reset?token=reset-secret-2&step=2', expiresInMinutes: 30 },
  'password-changed': { changedAt: CHANGED_AT, link: 'https://id.example.com/reset?from=notice&x=1' },
  'email-changed': { newEmail: 'ada.new@example.org', changedAt: CHANGED_AT, undo: { link: 'https://id.example.com/email/restore?token=revert-secret-3', expiresIn: 'in 7 days' } },
  'account-exists': { link: 'https://id.example.com/account?from=notice' },
  'confirm-email-change': { link: 'https://id.example.com/email/confirm-change?token=change-secret-4&step=2', expiresInMinutes: 1440 },
  'email-change-requested': { newEmail: 'ada.new@example.org', requestedAt: CHANGED_AT, link: 'https://id.example.com/password/forgot?from=notice&x=1' },
  'second-factor-changed': { change: 'disabled', changedAt: CHANGED_AT, link: 'https://id.example.com/password/forgot?from=2fa&x=1' },
};
const SUBJECTS: Record<TemplateName, string> = {
  'verify-email': 'Confirm your email address',
  'reset-password': 'Reset your password',
  'password-changed': 'Your password was changed',
  'email-changed': 'Your email address was changed',
  'account-exists': 'You already have an account',
  'confirm-email-change': 'Confirm your new email address',
  'email-change-requested': 'A change of your email address was requested',
  'second-factor-changed': 'Your two-factor authentication was changed',
};


/** The production timeout: a loaded CI machine can take seconds over one SMTP step; only the silent-server test shortens it. */
function mailer(options: Partial<MailerOptions> & { mode: Mode }) {
  const { logger, lines } = capturingLogger();
  const instance = new NodemailerMailer({
    smtpUrl: undefined, from: { name: 'Gatehouse', address: 'no-reply@example.com' }, outboxDir: path.join(os.tmpdir(), 'unused-outbox'),
    issuer: 'https://id.example.com', logger, cacheTemplates: false, timeoutMs: 10_000, ...options,
  });
  return { mailer: instance, lines };
}

function sample<Name extends TemplateName>(template: Name) {
  return { to: 'ada@example.com', template, data: SAMPLES[template] };
}

/** The one link a sample mail carries (the notice of a changed address carries its undo's). */
function linkOf(template: TemplateName): string {
  const data: TemplateData[TemplateName] = SAMPLES[template];
  return 'link' in data ? data.link : data.undo!.link;
}

function decodeHtmlAttribute(value: string): string {
  return value.replace(/&(amp|lt|gt|quot|#39);/g, (_all, entity: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'" })[entity]!);
}

function linksIn(received: { text?: string | undefined; html?: string | undefined }) {
  return {
    text: [...(received.text ?? '').matchAll(/https?:\/\/\S+/g)].map((match) => match[0]),
    html: [...(received.html ?? '').matchAll(/href="([^"]*)"/g)].map((match) => decodeHtmlAttribute(match[1]!)),
  };
}

function header(mail: ReceivedMail, key: string): string | undefined {
  return mail.email.headers.find((entry) => entry.key === key)?.value;
}

for (const template of TEMPLATE_NAMES) {
  test(`${template}: delivered over SMTP with a text and an HTML part carrying the same link, greeting no one by name`, async (t) => {
    const smtp = await startSmtpServer();
    const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
    t.teardown(async () => { await sender.close(); await smtp.close(); });
    const before = Date.now();
    const sent = await sender.send(sample(template));
    const mail = await smtp.nextMail();

    t.deepEqual(mail.envelope, { from: 'no-reply@example.com', to: ['ada@example.com'] });
    t.deepEqual(mail.email.from, { name: 'Gatehouse', address: 'no-reply@example.com' });
    t.deepEqual(mail.email.to, [{ name: '', address: 'ada@example.com' }]);
    t.is(mail.email.subject, SUBJECTS[template]);
    t.is(mail.email.messageId, sent.messageId);
    t.regex(sent.messageId, /^<[0-9a-f-]{36}@example\.com>$/);
    const date = Date.parse(mail.email.date ?? '');
    t.true(date >= Math.floor(before / 1000) * 1000 && date <= Date.now(), 'Date header is the sending time');
    t.is(header(mail, 'auto-submitted'), 'auto-generated');
    t.regex(header(mail, 'content-type') ?? '', /^multipart\/alternative/);

    const link = linkOf(template);
    const links = linksIn(mail.email);
    t.deepEqual(links.text, [link], 'the text part carries the link, exactly once and nothing else');
    t.true(links.html.length >= 1);
    t.deepEqual(new Set(links.html), new Set([link]), 'every HTML link is that same link');

    const html = mail.email.html!;
    t.true(mail.email.text!.startsWith('Hello,\n\n'), 'the text part greets no one by name');
    t.true(html.includes('<p>Hello,</p>'), 'nor does the HTML part');
    t.notRegex(html, /<img|src=|<link|<script/i, 'no images, external resources or scripts: nothing can track the reader');
    t.true(mail.email.text!.includes('id.example.com'), 'the message names the server it comes from');
  });
}

test('a name passed in anyway, past the types, reaches no message: the templates never see it', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  for (const template of TEMPLATE_NAMES) {
    // As a caller written before names left mail would pass it: TypeScript refuses the literal, not a spread.
    const withName = { ...SAMPLES[template], name: HOSTILE_NAME };
    await sender.send({ to: 'ada@example.com', template, data: withName as TemplateData[typeof template] });
    const { text, html } = (await smtp.nextMail()).email;
    for (const fragment of ['locked', 'evil.example', 'owned', 'Ada']) {
      t.false(text!.includes(fragment) || html!.includes(fragment), `${template}: no "${fragment}"`);
    }
  }
});

test('the notice of a changed address without an undo link of its own says where the way back is, and links nowhere', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  const { undo: _undo, ...withoutUndo } = SAMPLES['email-changed'];
  await sender.send({ ...sample('email-changed'), data: { ...withoutUndo, undoSentEarlier: true } });
  const earlier = (await smtp.nextMail()).email;
  t.regex(earlier.text!, /The address it had before this one was sent a link that undoes the changes; if you cannot use it, ask the administrators of .+ for help\./);
  await sender.send({ ...sample('email-changed'), data: { changedAt: CHANGED_AT } });
  const unconfirmed = (await smtp.nextMail()).email;
  t.regex(unconfirmed.text!, /If you did not, someone else has access to your account: ask the administrators of .+ for help\./);
  for (const email of [earlier, unconfirmed]) {
    t.deepEqual(linksIn(email), { text: [], html: [] }, 'no undo link, and no password reset, which could not reach the account from here');
  }
});

test('data cannot forge lines in the text part nor markup in the HTML part', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  await sender.send({ ...sample('email-changed'), data: { ...SAMPLES['email-changed'], undo: { link: linkOf('email-changed'), expiresIn: `in 7 days\r\n\r\nReply with <script>alert("owned")</script> & 'your' password` } } });
  const { text, html } = (await smtp.nextMail()).email;
  t.true(text!.includes(`expires in 7 days Reply with <script>alert("owned")</script> & 'your' password.\n`), 'the text part shows it as written, on one line');
  t.false(html!.includes('<script>'), 'no markup injected');
  t.true(html!.includes('Reply with &lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; &#39;your&#39; password'));
});

test('a link that is not an absolute web URL, or a recipient that is not one address, is refused before anything is sent', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  await t.throwsAsync(sender.send({ to: 'ada@example.com', template: 'reset-password', data: { link: 'javascript:alert(1)', expiresInMinutes: 30 } }), { message: /absolute http/ });
  await t.throwsAsync(sender.send({ to: 'ada@example.com', template: 'reset-password', data: { link: '/reset?token=x', expiresInMinutes: 30 } }), { message: /absolute http/ });
  for (const to of ['ada@example.com, eve@evil.example', 'Ada <ada@example.com>', 'ada@example.com\r\nBcc: eve@evil.example', 'not-an-address']) {
    await t.throwsAsync(sender.send({ ...sample('verify-email'), to }), { instanceOf: MailRejected }, to);
  }
  t.is(smtp.received.length, 0);
});

test('a recipient the mail server refuses for good is a MailRejected, not an outage', async (t) => {
  const smtp = await startSmtpServer({ refuseRecipient: (address) => address === 'gone@example.com' });
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  await t.throwsAsync(sender.send({ ...sample('verify-email'), to: 'gone@example.com' }), { instanceOf: MailRejected });
  t.is(smtp.received.length, 0);
});

test('a mail server that refuses connections: DependencyUnavailable naming the mail server', async (t) => {
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: await unusedSmtpUrl() });
  t.teardown(() => sender.close());
  const error = await t.throwsAsync(sender.send(sample('reset-password')), { instanceOf: DependencyUnavailable });
  t.is(error.dependency, 'mail');
  t.is(error.message, 'the mail server is unavailable');
  t.false(error.describe().includes('reset-secret'), 'the reason names no link');
});

test('a mail server that accepts but never answers: DependencyUnavailable after the timeout, not a hang', async (t) => {
  // Only the mailer's own timeout can end the wait: the server keeps the connection open and silent. Without
  // one, the send would hang until this test's timeout failed it.
  t.timeout(5000);
  const silent = await startSilentServer();
  const { mailer: sender } = mailer({ mode: 'production', smtpUrl: silent.url, timeoutMs: 300 });
  t.teardown(async () => { await sender.close(); await silent.close(); });
  const error = await t.throwsAsync(sender.send(sample('verify-email')), { instanceOf: DependencyUnavailable });
  t.is(error.dependency, 'mail');
  t.is((error.cause as { code?: unknown }).code, 'ETIMEDOUT', `ended by the timeout: ${String(error.cause)}`);
});

test('development without SMTP_URL: each message is an .eml file in the outbox that parses, and a log line with its link', async (t) => {
  const outboxDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-outbox-'));
  t.teardown(() => rm(outboxDir, { recursive: true, force: true }));
  const { mailer: sender, lines } = mailer({ mode: 'development', outboxDir: path.join(outboxDir, 'outbox') });
  t.is(sender.delivery, 'outbox');
  const sent = [];
  for (const template of TEMPLATE_NAMES) sent.push({ template, result: await sender.send(sample(template)) });

  const files = (await readdir(path.join(outboxDir, 'outbox'))).sort();
  t.is(files.length, TEMPLATE_NAMES.length);
  for (const { template, result } of sent) {
    t.truthy(result.outboxFile);
    t.true(files.includes(path.basename(result.outboxFile!)));
    t.regex(path.basename(result.outboxFile!), new RegExp(`-${template}-[0-9a-f]{8}\\.eml$`));
    t.is((await stat(result.outboxFile!)).mode & 0o777, 0o600, 'the links inside are credentials');
    const raw = await readFile(result.outboxFile!);
    t.true(raw.includes('\r\n'), 'lines end in CRLF as on the wire');
    const email = await parseMail(raw);
    t.is(email.subject, SUBJECTS[template]);
    t.is(email.messageId, result.messageId);
    t.deepEqual(linksIn(email).text, [linkOf(template)]);
    t.deepEqual(new Set(linksIn(email).html), new Set([linkOf(template)]));

    const line = lines.map((text) => JSON.parse(text)).find((entry) => entry.mail?.outboxFile === result.outboxFile);
    t.truthy(line, `a log line for ${template}`);
    t.is(line.mail.to, 'ada@example.com');
    t.is(line.mail.subject, SUBJECTS[template]);
    t.true(line.text.includes(linkOf(template)), 'the logged text carries the link to follow');
  }
});

test('production: a delivered message leaves no link, token, recipient or name in the log', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer: sender, lines } = mailer({ mode: 'production', smtpUrl: smtp.url });
  t.teardown(async () => { await sender.close(); await smtp.close(); });
  for (const template of TEMPLATE_NAMES) await sender.send(sample(template));
  t.is(smtp.received.length, TEMPLATE_NAMES.length);
  t.true(lines.length > 0, 'the capture works: sending is logged, at debug level');
  const log = lines.join('');
  for (const forbidden of ['secret', 'token=', 'https://id.example.com/', 'ada@example.com', 'ada.new@example.org', 'owned', 'Hello']) {
    t.false(log.includes(forbidden), `the log has no "${forbidden}"`);
  }
});

test('production without SMTP_URL: sending fails as an outage, and writes nothing to the log or the outbox', async (t) => {
  const outboxDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-outbox-'));
  t.teardown(() => rm(outboxDir, { recursive: true, force: true }));
  const { mailer: sender, lines } = mailer({ mode: 'production', outboxDir });
  t.is(sender.delivery, 'none');
  const error = await t.throwsAsync(sender.send(sample('reset-password')), { instanceOf: DependencyUnavailable });
  t.is(error.describe(), 'the mail server is unavailable (SMTP_URL is not set)');
  t.deepEqual(await readdir(outboxDir), []);
  t.deepEqual(lines, []);
});

// Serial (ava runs these first): an embedded database starting holds the event loop, which the timeout tests would feel.
test.serial('the runtime builds its mailer from SMTP_URL and MAIL_FROM', async (t) => {
  t.timeout(60_000); // a whole server: database, migrations, keys
  const smtp = await startSmtpServer();
  const server = await startTestServer({ SMTP_URL: smtp.url, MAIL_FROM: '"Example, Inc. sign-in" <accounts@example.net>' });
  t.teardown(async () => { await server.close(); await smtp.close(); });
  t.is(server.runtime.mailer.delivery, 'smtp');
  await server.runtime.mailer.send(sample('verify-email'));
  const mail = await smtp.nextMail();
  t.deepEqual(mail.email.from, { name: 'Example, Inc. sign-in', address: 'accounts@example.net' });
  t.deepEqual(mail.envelope.to, ['ada@example.com'], 'a comma in the sender name adds no recipient');
  t.regex(mail.email.text!, new RegExp(`your account at 127\\.0\\.0\\.1:\\d+\\.`), 'the message names this server');
});

test('mail configuration: SMTP_URL, MAIL_FROM and OUTBOX_DIR', (t) => {
  const defaults = loadConfig({});
  t.deepEqual(defaults.mail, { smtpUrl: undefined, from: { name: 'Gatehouse', address: 'no-reply@localhost' }, outboxDir: path.resolve('outbox') });
  t.is(loadConfig({ SMTP_URL: 'smtps://user:pass@smtp.example.com:465' }).mail.smtpUrl, 'smtps://user:pass@smtp.example.com:465');
  t.is(loadConfig({ SMTP_URL: 'smtp://127.0.0.1:2525' }).mail.smtpUrl, 'smtp://127.0.0.1:2525');
  t.deepEqual(loadConfig({ MAIL_FROM: 'no-reply@example.com' }).mail.from, { name: undefined, address: 'no-reply@example.com' });
  t.deepEqual(loadConfig({ MAIL_FROM: 'Example Sign-in <no-reply@example.com>' }).mail.from, { name: 'Example Sign-in', address: 'no-reply@example.com' });
  t.is(loadConfig({ OUTBOX_DIR: 'somewhere/else' }).mail.outboxDir, path.resolve('somewhere/else'));
  for (const url of ['http://smtp.example.com', 'smtp.example.com:25', 'smtp://']) {
    const error = t.throws(() => loadConfig({ SMTP_URL: url }), { instanceOf: ConfigError, message: /^SMTP_URL: / }, url);
    t.false(error.message.includes('pass'), 'the refusal does not repeat the URL');
  }
  t.throws(() => loadConfig({ SMTP_URL: 'smtp://user:secret-password@' }), { instanceOf: ConfigError, message: /^SMTP_URL: (?!.*secret)/ });
  for (const from of ['not an address', 'a@example.com, b@example.com', 'Name <a@example.com> b@example.com']) {
    t.throws(() => loadConfig({ MAIL_FROM: from }), { instanceOf: ConfigError, message: /^MAIL_FROM: / }, from);
  }
});

test('production needs SMTP_URL and a MAIL_FROM at a real domain', (t) => {
  const production = {
    NODE_ENV: 'production', DATABASE_URL: 'postgresql://gatehouse@db.internal:5432/gatehouse', REDIS_URL: 'redis://redis.internal:6379',
    JWKS: '{"keys":[]}', COOKIE_SECRETS: 'a'.repeat(32), ISSUER: 'https://id.example.com', TRUST_PROXY: 'true',
    ENCRYPTION_KEYS: Buffer.alloc(32, 1).toString('base64url'),
  };
  t.throws(() => loadConfig(production), { instanceOf: ConfigError, message: /^production needs SMTP_URL/ });
  t.throws(() => loadConfig({ ...production, SMTP_URL: 'smtps://smtp.example.com' }), { instanceOf: ConfigError, message: /^production needs MAIL_FROM/ });
  t.throws(() => loadConfig({ ...production, SMTP_URL: 'smtps://smtp.example.com', MAIL_FROM: 'x@LOCALHOST' }), { instanceOf: ConfigError, message: /^production needs MAIL_FROM/ });
  t.is(loadConfig({ ...production, SMTP_URL: 'smtps://smtp.example.com', MAIL_FROM: 'Example <no-reply@example.com>' }).mail.from.address, 'no-reply@example.com');
});
