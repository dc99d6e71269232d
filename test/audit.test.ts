// The audit trail: client registration, refresh-token reuse and grant revocation land in audit_events
// and in the log; no credential ever does; a database failure never fails the caller; and the
// `gatehouse audit` command filters by person, action and time.
import { Writable } from 'node:stream';
import path from 'node:path';
import test from 'ava';
import pino from 'pino';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { cleanEnvironment, runNode, type Finished } from './helpers/process.ts';
import {
  PASSWORD, POST_LOGOUT_REDIRECT_URI, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa,
} from './helpers/oauth.ts';
import { UserAgent, formAction, formField } from './helpers/user-agent.ts';
import { AuditTrail, type AuditEvent } from '../src/audit/audit.ts';
import { AuditRetention } from '../src/audit/retention.ts';
import { systemClock } from '../src/clock.ts';
import { parseSince } from '../src/audit/report.ts';
import { openDatabase, type Prisma } from '../src/db/index.ts';
import { migrate } from '../src/db/migrate.ts';
import { openTestRuntime } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

const COMMAND_TIMEOUT_MS = 180_000;
const TEST_USER_AGENT = 'audit-test-agent/1.0';

let server: TestServer;
/** Every credential the tests see, to look for in the trail at the end. */
const credentials = new Set<string>([PASSWORD]);

test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

/** Logs into a pino logger whose lines the test can read. */
function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

async function eventsFor(query: Parameters<AuditTrail['list']>[0]): Promise<AuditEvent[]> {
  await server.runtime.auditTrail.flush();
  return server.runtime.auditTrail.list(query);
}

/** Signs in to a new SPA and remembers every credential it saw, for the no-secrets scan. */
async function signedInSpa() {
  const signedIn = await signInToNewSpa(server);
  credentials.add(signedIn.parameters.get('code')!);
  for (const token of [signedIn.tokens.access_token, signedIn.tokens.refresh_token, signedIn.tokens.id_token]) if (token) credentials.add(token);
  return signedIn;
}

/** Requests as a browser app would send them, with a recognisable User-Agent. */
const fromTestAgent = {
  ...insecure,
  headers: { 'user-agent': TEST_USER_AGENT },
};

test.serial('registering a client is audited with the administrator who did it, and without its secret', async (t) => {
  const metadata = await server.runtime.clients.create({ name: 'Audited web app', type: 'web', redirectUris: [REDIRECT_URI] }, { type: 'admin', id: 'cli:ada' });
  credentials.add(String(metadata.client_secret));
  const [event] = (await eventsFor({ action: 'client.created', limit: 50 })).filter((row) => row.clientId === metadata.client_id);
  t.truthy(event);
  t.is(event!.outcome, 'success');
  t.is(event!.actorType, 'admin');
  t.is(event!.actorId, 'cli:ada');
  t.deepEqual(event!.detail, { name: 'Audited web app', type: 'web', redirectUris: [REDIRECT_URI] });
  t.false(JSON.stringify(event).includes(String(metadata.client_secret)));
});

test.serial('refresh-token reuse is audited as reuse and as the revocation of the grant it caused', async (t) => {
  const { as, client, user, tokens } = await signedInSpa();
  const refreshed = await oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, fromTestAgent));
  credentials.add(refreshed.refresh_token!);
  credentials.add(refreshed.access_token);
  const reuse = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, fromTestAgent);
  const error = await t.throwsAsync(oauth.processRefreshTokenResponse(as, client, reuse), { instanceOf: oauth.ResponseBodyError });
  t.is(error?.error, 'invalid_grant');

  const mine = (await eventsFor({ userEmail: user.email, limit: 50 })).filter((event) => event.clientId === client.client_id);
  const reused = mine.find((event) => event.action === 'refresh_token.reused');
  t.truthy(reused, 'reuse recorded');
  t.is(reused!.outcome, 'failure');
  t.is(reused!.subjectUserId, user.id);
  t.is(reused!.actorType, 'client');
  t.is(reused!.actorId, client.client_id);
  t.regex(reused!.ip ?? '', /127\.0\.0\.1/);
  t.is(reused!.userAgent, TEST_USER_AGENT);
  const revoked = mine.find((event) => event.action === 'grant.revoked');
  t.truthy(revoked, 'revocation recorded');
  t.is(revoked!.outcome, 'success');
  t.is(revoked!.actorType, 'system');
  t.is(revoked!.detail.reason, 'refresh_token_reuse');
  t.is(revoked!.detail.grantId, reused!.detail.grantId);
  t.is(typeof revoked!.detail.grantId, 'string');
  t.is(mine.filter((event) => event.action === 'grant.revoked').length, 1, 'one grant, one revocation');
});

test.serial('a client revoking its refresh token revokes the grant, audited with the client as actor', async (t) => {
  const { as, client, user, tokens } = await signedInSpa();
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  const revoked = (await eventsFor({ userEmail: user.email, action: 'grant.revoked', limit: 10 }));
  t.is(revoked.length, 1);
  t.is(revoked[0]!.detail.reason, 'token_revoked');
  t.is(revoked[0]!.actorType, 'client');
  t.is(revoked[0]!.actorId, client.client_id);
  t.is(revoked[0]!.subjectUserId, user.id);
  t.is((await eventsFor({ userEmail: user.email, action: 'refresh_token.reused', limit: 10 })).length, 0, 'no reuse here');
});

test.serial('signing out revokes the grants of the apps of the session, each audited with the person as actor and its own app as client', async (t) => {
  const { as, client, user, tokens, agent } = await signedInSpa();
  // A second app signed in through the same session (single sign-on): the logout that the first asks for ends its grant too.
  const { client: other } = await registerSpa(server);
  const otherRequest = await authorizationRequest(as, other.client_id);
  const otherCallback = await signIn(agent, otherRequest.url, { email: user.email, password: PASSWORD });
  t.truthy(oauth.validateAuthResponse(as, other, otherCallback, otherRequest.state).get('code'));
  const logout = new URL(as.end_session_endpoint!);
  logout.searchParams.set('id_token_hint', tokens.id_token!);
  logout.searchParams.set('post_logout_redirect_uri', POST_LOGOUT_REDIRECT_URI);
  const { response } = await agent.follow(logout);
  const page = await response.text();
  const { response: after } = await agent.submit(formAction(page, /session\/end\/confirm/), { xsrf: formField(page, 'xsrf'), logout: 'yes' });
  t.is(after.status, 303);
  const revoked = await eventsFor({ userEmail: user.email, action: 'grant.revoked', limit: 10 });
  t.is(revoked.length, 2);
  t.deepEqual(revoked.map((event) => event.clientId).sort(), [client.client_id, other.client_id].sort());
  for (const event of revoked) {
    t.like(event, { actorType: 'user', actorId: user.id, subjectUserId: user.id });
    t.is(event.detail.reason, 'logout');
  }
});

test.serial('sign-ins are audited: success with the account, failure with the address typed (and its account) and why, and the lockout', async (t) => {
  const lockout = await startTestServer({ LOGIN_LOCKOUT_THRESHOLD: '2', LOGIN_LOCKOUT_SECONDS: '60' });
  t.teardown(() => lockout.close());
  const as = await discover(lockout);
  const { client } = await registerSpa(lockout);
  const user = await createUser(lockout);
  const attempt = async (email: string, password: string) => {
    const agent = new UserAgent();
    const request = await authorizationRequest(as, client.client_id);
    const { response, url } = await agent.follow(request.url, { headers: { 'user-agent': TEST_USER_AGENT } });
    const page = await response.text();
    return agent.submit(new URL(`${url.pathname}/login`, url), { csrf: formField(page, 'csrf'), email, password });
  };
  await attempt(user.email, PASSWORD);
  await attempt(user.email, 'wrong password, twice over');
  await attempt(user.email, 'wrong password, twice over');
  await lockout.runtime.auditTrail.flush();
  const events = await lockout.runtime.auditTrail.list({ userEmail: user.email, limit: 10 });
  const actions = events.map((event) => `${event.action}:${event.outcome}`);
  t.deepEqual([...actions].sort(), ['login.failed:failure', 'login.failed:failure', 'login.locked_out:failure', 'login.succeeded:success'].sort());
  const success = events.find((event) => event.action === 'login.succeeded')!;
  t.is(success.subjectUserId, user.id);
  const failures = events.filter((event) => event.action === 'login.failed');
  t.deepEqual(failures.map((event) => [event.subjectUserId, event.detail.reason]), [[user.id, 'wrong_password'], [user.id, 'wrong_password']], 'failures name the account when the address has one');
  await attempt(`nobody-${crypto.randomUUID()}@example.com`, PASSWORD);
  await lockout.runtime.auditTrail.flush();
  const [unknown] = await lockout.runtime.auditTrail.list({ action: 'login.failed', limit: 1 });
  t.is(unknown!.subjectUserId, null);
  t.is(unknown!.detail.reason, 'unknown_email');
  t.is(success.clientId, client.client_id);
  t.truthy(success.ip);
  for (const event of events) t.false(JSON.stringify(event).includes(PASSWORD), 'no password in the trail');
});

test.serial('record() writes a structured log line as well as the row, and list() filters', async (t) => {
  const { logger, lines } = capturingLogger();
  const trail = new AuditTrail(server.runtime.database.prisma, logger);
  const email = `Someone-${crypto.randomUUID()}@Example.com`;
  await trail.record({
    action: 'login.failed', outcome: 'failure', subjectEmail: email, ip: '203.0.113.9', userAgent: `Mozilla/5.0 ${'x'.repeat(1000)}`, clientId: 'some-client',
  });
  const line = lines.find((entry) => (entry.audit as { action?: string } | undefined)?.action === 'login.failed');
  t.truthy(line, 'a log line for the event');
  t.is(line!.level, 40, 'failures log at warn');
  t.is(line!.component, 'audit');
  t.like(line!.audit as object, { outcome: 'failure', subjectEmail: email.toLowerCase(), ip: '203.0.113.9', clientId: 'some-client', actorType: 'user' });

  const [row] = await trail.list({ userEmail: email, limit: 10 });
  t.is(row?.action, 'login.failed');
  t.is(row?.subjectEmail, email.toLowerCase());
  t.is(row?.subjectUserId, null);
  t.true(row!.userAgent!.length <= 256, 'user agent truncated');
  t.is((await trail.list({ userEmail: email, action: 'login.*', limit: 10 })).length, 1);
  t.is((await trail.list({ userEmail: email, action: 'login.succeeded', limit: 10 })).length, 0);
  t.is((await trail.list({ userEmail: email, since: new Date(Date.now() + 60_000), limit: 10 })).length, 0);
});

test.serial('a database failure does not fail the caller: the event is logged in full at error level', async (t) => {
  const { logger, lines } = capturingLogger();
  const broken = { auditEvent: { create: () => Promise.reject(new Error('connection refused')) } } as unknown as Prisma;
  const trail = new AuditTrail(broken, logger);
  await t.notThrowsAsync(trail.record({ action: 'login.succeeded', outcome: 'success', subjectUserId: crypto.randomUUID(), ip: '198.51.100.1' }));
  const failure = lines.find((entry) => entry.level === 50);
  t.truthy(failure);
  t.like(failure!.audit as object, { action: 'login.succeeded', ip: '198.51.100.1' });
  t.regex(String(failure!.msg), /could not be stored/);
});

test.serial('no password, token, code or secret reaches the audit trail', async (t) => {
  // Careless callers: a password typed into the email field, and credentials in the detail.
  const secretlike = `${PASSWORD} ${crypto.randomUUID()}`;
  credentials.add(secretlike);
  const { logger, lines } = capturingLogger();
  const trail = new AuditTrail(server.runtime.database.prisma, logger);
  await trail.record({
    action: 'login.failed', outcome: 'failure', subjectEmail: secretlike,
    detail: { password: secretlike, refresh_token: secretlike, client_secret: secretlike, code: secretlike, reason: 'wrong password' },
  });
  const everything = await eventsFor({ limit: 10_000 });
  t.true(everything.length >= 6, `the earlier tests recorded events (${everything.length})`);
  const careless = everything.find((event) => event.detail.reason === 'wrong password');
  t.truthy(careless);
  t.is(careless!.subjectEmail, null, 'what is not an email address is not kept');
  t.deepEqual(careless!.detail, { reason: 'wrong password', subjectEmailMalformed: true });

  const stored = JSON.stringify(everything);
  const logged = JSON.stringify(lines);
  for (const credential of credentials) {
    t.false(stored.includes(credential), `a stored row holds a credential (${credential.slice(0, 6)}…)`);
    t.false(logged.includes(credential), `a log line holds a credential (${credential.slice(0, 6)}…)`);
  }
});

test('--since accepts ISO dates and ages, and nothing else', (t) => {
  const now = new Date('2026-11-22T12:00:00Z');
  t.deepEqual(parseSince('24h', now), new Date('2026-11-21T12:00:00Z'));
  t.deepEqual(parseSince('7d', now), new Date('2026-11-15T12:00:00Z'));
  t.deepEqual(parseSince('30m', now), new Date('2026-11-22T11:30:00Z'));
  t.deepEqual(parseSince('2026-11-20', now), new Date('2026-11-20T00:00:00Z'));
  t.deepEqual(parseSince('2026-11-20T08:15:00Z', now), new Date('2026-11-20T08:15:00Z'));
  for (const bad of ['yesterday', 'March 7', '7', '-1d', '2026-13-45', '']) t.is(parseSince(bad, now), undefined, bad);
});

test('--since refuses days and times that do not exist, reads a date-time without a zone as UTC and honours an offset', (t) => {
  const now = new Date('2026-11-22T12:00:00Z');
  for (const impossible of ['2026-02-31', '2026-02-29', '2026-04-31', '2026-00-10', '2026-11-00', '2026-11-20T24:00', '2026-11-20T12:60', '2026-11-20T12:00:60', '2026-11-20T12:00+24:00']) {
    t.is(parseSince(impossible, now), undefined, impossible);
  }
  t.deepEqual(parseSince('2028-02-29', now), new Date('2028-02-29T00:00:00Z'), 'a leap day');
  t.deepEqual(parseSince('2026-11-20T08:15', now), new Date('2026-11-20T08:15:00Z'));
  t.deepEqual(parseSince('2026-11-20 08:15:30.25', now), new Date('2026-11-20T08:15:30.250Z'));
  t.deepEqual(parseSince('2026-11-20T09:15+01:00', now), new Date('2026-11-20T08:15:00Z'));
  t.deepEqual(parseSince('2026-11-20T03:45-0430', now), new Date('2026-11-20T08:15:00Z'));
});

// --- the `gatehouse audit` command, on a database of its own ----------------------------------------

test.serial('gatehouse audit filters by person, action and time, as a table or JSON lines', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS * 2);
  const database: TestDatabase = await createTestDatabase();
  try {
    const environment = cleanEnvironment({
      DATA_DIR: database.dataDir, KEYS_DIR: path.join(database.dataDir, 'keys'), DATABASE_URL: database.databaseUrl, LOG_LEVEL: 'warn',
    });
    const gatehouse = (args: string[]): Promise<Finished> => runNode(['bin/gatehouse.js', ...args], environment, COMMAND_TIMEOUT_MS);

    // Seed: a person, failed logins for them and for an unknown address, and an old event.
    const email = 'grace@example.com';
    const created = await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD]);
    t.is(created.code, 0, created.stderr);
    const userId = (JSON.parse(created.stdout) as { id: string }).id;
    const opened = await openDatabase({ databaseUrl: database.databaseUrl, dataDir: database.dataDir });
    try {
      await migrate(opened.connectionString);
      const trail = new AuditTrail(opened.prisma, pino({ level: 'silent' }));
      await trail.record({ action: 'login.failed', outcome: 'failure', subjectEmail: 'GRACE@example.com', ip: '192.0.2.1' });
      await trail.record({ action: 'login.succeeded', outcome: 'success', subjectUserId: userId, ip: '192.0.2.1' });
      await trail.record({ action: 'login.failed', outcome: 'failure', subjectEmail: 'nobody@example.com', ip: '192.0.2.66' });
      await opened.prisma.auditEvent.create({
        data: { action: 'login.failed', outcome: 'failure', actorType: 'user', subjectEmail: email, occurredAt: new Date(Date.now() - 10 * 86_400_000) },
      });
    } finally {
      await opened.close();
    }
    const client = await gatehouse(['clients', 'create', '--name', 'CLI audited', '--type', 'spa', '--redirect-uri', REDIRECT_URI]);
    t.is(client.code, 0, client.stderr);
    const clientId = (JSON.parse(client.stdout) as { client_id: string }).client_id;

    const json = async (args: string[]) => {
      const result = await gatehouse(['audit', '--json', ...args]);
      t.is(result.code, 0, result.stderr);
      return result.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as AuditEvent & { occurredAt: string });
    };
    // The first start records the admin API it makes (actor: Gatehouse itself).
    const all = (await json([])).filter((event) => event.actorType !== 'system');
    t.deepEqual(all.map((event) => event.action), ['login.failed', 'account.created', 'login.failed', 'login.succeeded', 'login.failed', 'client.created'], 'oldest first');
    const clientCreated = all.at(-1)!;
    t.is(clientCreated.clientId, clientId);
    t.is(clientCreated.actorType, 'admin');
    t.regex(clientCreated.actorId ?? '', /^cli/);

    const graces = await json(['--user', 'Grace@Example.com']);
    t.deepEqual(graces.map((event) => event.action), ['login.failed', 'account.created', 'login.failed', 'login.succeeded'], 'by address and by account');
    t.deepEqual((await json(['--user', email, '--since', '7d'])).map((event) => event.action), ['account.created', 'login.failed', 'login.succeeded']);
    t.is((await json(['--action', 'login.failed'])).length, 3);
    t.is((await json(['--action', 'login.failed', '--since', '24h'])).length, 2);
    t.is((await json(['--action', 'client.*'])).length, 1);
    t.is((await json(['--since', new Date(Date.now() + 3_600_000).toISOString()])).length, 0);
    t.is((await json(['--limit', '2'])).map((event) => event.action).join(), 'login.failed,client.created', 'the newest two');
    // A date-time without a zone is UTC, whatever the zone of the machine (New York is UTC-5: read as
    // local time, an hour ago would be four hours ahead, and match nothing).
    const anHourAgo = new Date(Date.now() - 3_600_000).toISOString().slice(0, 16);
    const inNewYork = await runNode(['bin/gatehouse.js', 'audit', '--json', '--since', anHourAgo], { ...environment, TZ: 'America/New_York' }, COMMAND_TIMEOUT_MS);
    t.is(inNewYork.code, 0, inNewYork.stderr);
    t.is(inNewYork.stdout.trim().split('\n').length, 7, `since ${anHourAgo} (UTC): all but the old event`);

    const table = await gatehouse(['audit', '--user', email]);
    t.is(table.code, 0, table.stderr);
    const [heading, ...rows] = table.stdout.trimEnd().split('\n');
    t.regex(heading!, /^TIME\s+ACTION\s+OUTCOME\s+ACTOR\s+SUBJECT\s+CLIENT\s+IP/);
    t.is(rows.length, 4);
    t.regex(rows[3]!, /login\.succeeded\s+success\s+user:/);
    const none = await gatehouse(['audit', '--action', 'email.changed']);
    t.is(none.stdout, 'no audit events match\n');

    for (const args of [['--since', 'yesterday'], ['--since', '2026-02-31'], ['--since', '2026-11-22T25:00'], ['--limit', '0'], ['--action', 'DROP TABLE'], ['--frobnicate'], ['--user']]) {
      const refused = await gatehouse(['audit', ...args]);
      t.is(refused.code, 2, `${args.join(' ')}: ${refused.stderr}`);
      t.is(refused.stdout, '');
      t.regex(refused.stderr, /^gatehouse: [^\n]+\n\nUsage: gatehouse/);
    }
  } finally {
    await database.drop();
  }
});

test('events older than AUDIT_RETENTION_DAYS are deleted at start and at each pass after, a batch at a time; younger ones stay', async (t) => {
  const { runtime, close } = await openTestRuntime({ AUDIT_RETENTION_DAYS: '30' }, { auditRetentionIntervalMs: 50 });
  t.teardown(close);
  t.is(await runtime.auditRetention.lastPass, 0, 'nothing to delete at start');
  const { prisma } = runtime.database;
  const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 3600 * 1000);
  const event = (days: number, action: string) => ({ action, outcome: 'success' as const, actorType: 'system' as const, actorId: 'retention-test', occurredAt: daysAgo(days) });
  const left = async () => (await prisma.auditEvent.findMany({ where: { actorId: 'retention-test' }, orderBy: { occurredAt: 'asc' } })).map((row) => row.action);
  await prisma.auditEvent.createMany({ data: [event(31, 'login.succeeded'), event(400, 'login.failed'), event(29, 'keys.rotated'), event(0, 'client.created')] });
  await until(async () => (await left()).length === 2, 'the next pass');
  t.deepEqual(await left(), ['keys.rotated', 'client.created']);

  // A batch at a time: five old events in batches of two.
  await runtime.auditRetention.close();
  await prisma.auditEvent.createMany({ data: Array.from({ length: 5 }, () => event(60, 'login.failed')) });
  t.is(await runtime.auditTrail.deleteBefore(daysAgo(30), 2), 5);
  t.deepEqual(await left(), ['keys.rotated', 'client.created']);
});

test('with AUDIT_RETENTION_DAYS=0 the audit trail keeps every event', async (t) => {
  const { runtime, close } = await openTestRuntime({ AUDIT_RETENTION_DAYS: '0' });
  t.teardown(close);
  const old = { action: 'login.failed', outcome: 'failure' as const, actorType: 'system' as const, actorId: 'kept-for-ever', occurredAt: new Date('2001-01-01T00:00:00Z') };
  await runtime.database.prisma.auditEvent.create({ data: old });
  // Started with what the runtime was configured with: a pass, had it begun, would delete everything before now.
  const retention = new AuditRetention(runtime.auditTrail, { retentionDays: runtime.config.auditRetentionDays, clock: systemClock, logger: runtime.logger });
  retention.start();
  t.teardown(() => retention.close());
  t.is(await retention.lastPass, 0);
  t.is(await runtime.database.prisma.auditEvent.count({ where: { actorId: 'kept-for-ever' } }), 1);
});
