// Opens a whole runtime (services and flows, no HTTP server) with its own database and store prefix, the way
// startTestServer does without the app around it, for tests of the flows; close() leaves nothing behind.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/logger.ts';
import { openRuntime, type Runtime, type RuntimeOptions } from '../../src/runtime.ts';
import type { AuditEvent } from '../../src/audit/audit.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { deleteServerKeys } from './redis.ts';
import { parseMail } from './smtp.ts';
import { randomUUID } from 'node:crypto';
import { generate } from 'otplib';
import type { User } from '../../src/accounts/users.ts';

/** A message the runtime wrote to its outbox (no SMTP_URL): it is there once the call sending it returned. */
export interface OutboxMail {
  to: string;
  subject: string;
  text: string;
}

export interface TestRuntime {
  runtime: Runtime;
  /** Every message sent so far to this address, oldest first. */
  mailTo(address: string): Promise<OutboxMail[]>;
  close(): Promise<void>;
}

/**
 * The configuration of a test run's own Gatehouse: its database, keys folder and store prefix, DATABASE_URL
 * and REDIS_URL when the environment has them, then the test's own settings (`environment`).
 */
export function testConfig(database: TestDatabase, keysDir: string, environment: Record<string, string>) {
  return loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: database.dataDir,
    KEYS_DIR: keysDir,
    STORE_PREFIX: `gatehouse-test-${randomBytes(6).toString('hex')}:`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
    ...(process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL } : {}),
    ...environment,
  });
}

/** Uses DATABASE_URL and REDIS_URL when the environment has them; `options`: e.g. a fixed clock. */
export async function openTestRuntime(environment: Record<string, string> = {}, options: RuntimeOptions = {}): Promise<TestRuntime> {
  const database = await createTestDatabase();
  const keysDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-keys-'));
  // Nothing listens at the issuer: it only goes into links and tokens.
  const config = testConfig(database, keysDir, { ISSUER: 'http://127.0.0.1:3999', OUTBOX_DIR: path.join(keysDir, 'outbox'), ...environment });
  let runtime: Runtime;
  try {
    runtime = await openRuntime(config, createLogger(config), options);
  } catch (error) {
    await Promise.allSettled([database.drop(), rm(keysDir, { recursive: true, force: true })]);
    throw error;
  }
  const outboxDir = config.mail.outboxDir;
  return {
    runtime,
    async mailTo(address) {
      // The file names begin with the time written, so their order is the order sent.
      const files = (await readdir(outboxDir).catch(() => [])).filter((name) => name.endsWith('.eml')).sort();
      const messages = await Promise.all(files.map(async (name) => parseMail(await readFile(path.join(outboxDir, name)))));
      return messages
        .filter((email) => email.to?.some((recipient) => recipient.address === address))
        .map((email) => ({ to: address, subject: email.subject ?? '', text: email.text ?? '' }));
    },
    async close() {
      await runtime.close();
      await database.drop();
      if (config.redis) await deleteServerKeys(config.redis, config.storePrefix);
      await rm(keysDir, { recursive: true, force: true });
    },
  };
}

/** The audit events of one action that a test's filter keeps, newest first. */
export async function auditEvents(runtime: Runtime, action: string, filter: (event: AuditEvent) => boolean): Promise<AuditEvent[]> {
  return (await runtime.auditTrail.list({ action, limit: 1000 })).filter(filter);
}

/** Keeps the events about this account. */
export const about = (user: { id: string }) => (event: AuditEvent) => event.subjectUserId === user.id;

/** The one link a mail's text holds. */
export function linkIn(text: string): string {
  const links = [...text.matchAll(/https?:\/\/\S+/g)].map((match) => match[0]);
  if (links.length !== 1) throw new Error(`expected one link, got ${links.length}`);
  return links[0]!;
}

/** The token an emailed link carries. */
export const tokenOf = (link: string) => new URL(link).searchParams.get('token') ?? '';

/** A signed-in session of the account in the engine's store, with a grant made through it. */
export async function signedIn(runtime: Runtime, clientId: string, accountId: string): Promise<{ sessionUid: string; grantId: string }> {
  const { provider } = runtime;
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope('openid email');
  const grantId = await grant.save();
  const session = new provider.Session();
  Object.assign(session, { accountId, loginTs: Math.floor(Date.now() / 1000), amr: ['pwd'], authorizations: { [clientId]: { grantId, sid: randomUUID() } } });
  await session.save(3600);
  return { sessionUid: session.uid, grantId };
}

/** The second factor turned on, as the account page does: its secret, and ten recovery codes. */
export async function withSecondFactor(runtime: Runtime, user: Pick<User, 'id'>): Promise<{ secret: string; recoveryCodes: string[] }> {
  const { secondFactor } = runtime;
  const enrollment = await secondFactor.startEnrollment(user.id);
  if (!enrollment) throw new Error('enrollment not started');
  const confirmed = await secondFactor.confirmEnrollment(user.id, await generate({ secret: enrollment.secret }));
  if (!confirmed.ok) throw new Error(`enrollment not confirmed: ${confirmed.reason}`);
  return { secret: enrollment.secret, recoveryCodes: confirmed.recoveryCodes };
}

