// The real `gatehouse` command (bin/gatehouse.js) as a child process: usage and its errors, migrate,
// users and clients — and the CLI working on the embedded database while the server runs on it.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { deleteKeysWithPrefix, findFreePort } from './helpers/redis.ts';
import { cleanEnvironment, runNode, startNode, type Finished } from './helpers/process.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, insecure, signIn } from './helpers/oauth.ts';
import { UserAgent } from './helpers/user-agent.ts';
import { loadConfig } from '../src/config/index.ts';
import { loadSecrets } from '../src/keys/secrets.ts';

/** The embedded database's first start runs initdb; on a busy machine a command can take a while. */
const COMMAND_TIMEOUT_MS = 180_000;

const cleanups: Array<() => Promise<unknown>> = [];
test.after.always(async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function temporaryDirectory(prefix: string): Promise<string> {
  // Short: the embedded database's socket path (<dir>/data/.s.PGSQL.5432) must stay under ~107 bytes.
  const directory = await mkdtemp(path.join(os.tmpdir(), prefix));
  cleanups.push(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** A database of this file's own (on DATABASE_URL's server when set, else embedded) and the environment that names it. */
let database: TestDatabase;
let environment: NodeJS.ProcessEnv;
test.before(async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  database = await createTestDatabase();
  cleanups.push(() => database.drop());
  environment = cleanEnvironment({
    DATA_DIR: database.dataDir,
    KEYS_DIR: path.join(database.dataDir, 'keys'),
    DATABASE_URL: database.databaseUrl,
    LOG_LEVEL: 'warn',
  });
});

function gatehouse(args: string[], env: NodeJS.ProcessEnv = environment): Promise<Finished> {
  return runNode(['bin/gatehouse.js', ...args], env, COMMAND_TIMEOUT_MS);
}

function uniqueEmail(): string {
  return `cli-${crypto.randomUUID()}@example.com`;
}

// --- usage ---------------------------------------------------------------------------------------

test('--help exits 0 and prints the usage to stdout', async (t) => {
  for (const flag of ['--help', '-h', 'help']) {
    const result = await gatehouse([flag]);
    t.is(result.code, 0, flag);
    t.regex(result.stdout, /^Usage: gatehouse <command>/);
    for (const command of ['migrate', 'users create', 'clients create', '--type spa|web|native|service']) t.true(result.stdout.includes(command), command);
    t.is(result.stderr, '');
  }
});

const usageErrors: Array<[what: string, args: string[], message: RegExp | undefined]> = [
  ['no arguments', [], undefined],
  ['an unknown command', ['frobnicate'], /^gatehouse: unknown command: frobnicate\n/],
  ['an unknown subcommand', ['users', 'frobnicate'], /^gatehouse: unknown command: users frobnicate\n/],
  ['users create without --email', ['users', 'create', '--password', PASSWORD], /^gatehouse: users create needs --email\n/],
  ['users create without --password', ['users', 'create', '--email', 'a@example.com'], /^gatehouse: users create needs either --password or --password-stdin\n/],
  ['an unknown option', ['users', 'create', '--email', 'a@example.com', '--password', PASSWORD, '--admin'], /^gatehouse: .*--admin/],
  ['clients create with a bad --type', ['clients', 'create', '--name', 'X', '--type', 'mobile'], /^gatehouse: --type must be one of spa, web, native, service\n/],
  ['clients create without --type', ['clients', 'create', '--name', 'X'], /^gatehouse: clients create needs --name and --type\n/],
  ['migrate with an argument', ['migrate', '--force'], /^gatehouse: /],
  // A script's unset $SID must not sign the person out everywhere.
  ['users end-sessions with an empty --session', ['users', 'end-sessions', '--email', 'a@example.com', '--session', ''], /^gatehouse: --session takes a session id/],
  ['audit --since before year 1', ['audit', '--since', '0000-01-01'], /^gatehouse: --since takes a real ISO date or date-time from year 1 to 9999/],
  ['audit --until an age before year 1', ['audit', '--until', '999999w'], /^gatehouse: --until takes/],
];

for (const [what, args, message] of usageErrors) {
  test(`${what}: exits non-zero with the usage on stderr and nothing on stdout`, async (t) => {
    const result = await gatehouse(args);
    t.not(result.code, 0);
    t.is(result.stdout, '');
    if (message) t.regex(result.stderr, message);
    t.regex(result.stderr, /Usage: gatehouse <command>/);
  });
}

// --- commands on this file's database --------------------------------------------------------------

test.serial('migrate applies the migrations, and a second run says the database is up to date', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const first = await gatehouse(['migrate']);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /^applied: \d+_\w+/);
  const second = await gatehouse(['migrate']);
  t.is(second.code, 0, second.stderr);
  t.is(second.stdout, 'the database is up to date\n');
});

test.serial('users create prints the user as JSON without any password or hash; the same email in another case is refused', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const email = uniqueEmail();
  const created = await gatehouse(['users', 'create', '--email', email.toUpperCase(), '--password', PASSWORD, '--name', 'Ada Lovelace', '--verified']);
  t.is(created.code, 0, created.stderr);
  const user = JSON.parse(created.stdout) as Record<string, unknown>;
  t.like(user, { email, name: 'Ada Lovelace', emailVerified: true, disabled: false });
  t.regex(String(user.id), /^[0-9a-f-]{36}$/);
  t.false(Object.keys(user).some((key) => /password|hash/i.test(key)), `fields: ${Object.keys(user).join(', ')}`);
  t.false(created.stdout.includes(PASSWORD));
  t.false(created.stdout.includes('$argon2'));

  const duplicate = await gatehouse(['users', 'create', '--email', email.replace('cli-', 'CLI-'), '--password', 'another long password']);
  t.is(duplicate.code, 1);
  t.is(duplicate.stdout, '');
  t.is(duplicate.stderr, 'gatehouse: an account with that email exists\n');
});

test.serial('users create --password-stdin reads the password from standard input, and the user can sign in with it', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const email = uniqueEmail();
  const created = await runNode(['bin/gatehouse.js', 'users', 'create', '--email', email, '--password-stdin'], environment, COMMAND_TIMEOUT_MS, `${PASSWORD}\n`);
  t.is(created.code, 0, created.stderr);
  t.is((JSON.parse(created.stdout) as { email: string }).email, email);
  const both = await gatehouse(['users', 'create', '--email', uniqueEmail(), '--password', PASSWORD, '--password-stdin']);
  t.is(both.code, 2);
  t.regex(both.stderr, /either --password or --password-stdin/);
  const empty = await runNode(['bin/gatehouse.js', 'users', 'create', '--email', uniqueEmail(), '--password-stdin'], environment, COMMAND_TIMEOUT_MS, '');
  t.is(empty.code, 2);
  t.regex(empty.stderr, /read no password/);
});

test('keys generate and keys encryption print keys the server accepts as JWKS and ENCRYPTION_KEYS', async (t) => {
  const generated = await gatehouse(['keys', 'generate']);
  t.is(generated.code, 0, generated.stderr);
  const jwks = JSON.parse(generated.stdout) as { keys: Array<{ kty: string; alg: string; d?: string }> };
  t.deepEqual(jwks.keys.map((key) => key.alg), ['RS256', 'ES256', 'EdDSA']);
  t.true(jwks.keys.every((key) => typeof key.d === 'string'));
  const encryptionKey = await gatehouse(['keys', 'encryption']);
  t.is(encryptionKey.code, 0, encryptionKey.stderr);
  t.regex(encryptionKey.stdout, /^[\w-]{43}\n$/, '32 bytes in base64url');
  const secrets = await loadSecrets(loadConfig({ JWKS: generated.stdout.trim(), COOKIE_SECRETS: 'z'.repeat(32), ENCRYPTION_KEYS: encryptionKey.stdout.trim() }));
  t.false(secrets.development);
});

test.serial('users create refuses a bad email or a short password with a clear message', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const badEmail = await gatehouse(['users', 'create', '--email', 'not-an-email', '--password', PASSWORD]);
  t.is(badEmail.code, 1);
  t.is(badEmail.stderr, 'gatehouse: that is not an email address\n');
  const shortPassword = await gatehouse(['users', 'create', '--email', uniqueEmail(), '--password', 'short']);
  t.is(shortPassword.code, 1);
  t.regex(shortPassword.stderr, /^gatehouse: the password must have between 8 and 256 characters\n$/);
  t.false(shortPassword.stderr.includes('short'), 'the password is not echoed');
});

test.serial('clients create --type spa prints a client_id and no client_secret', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const result = await gatehouse([
    'clients', 'create', '--name', 'My SPA', '--type', 'spa', '--redirect-uri', 'http://localhost:5173/callback',
    '--post-logout-redirect-uri', 'http://localhost:5173/',
  ]);
  t.is(result.code, 0, result.stderr);
  const client = JSON.parse(result.stdout) as Record<string, unknown>;
  t.regex(String(client.client_id), /^[\w-]{16,}$/);
  t.false('client_secret' in client);
  t.like(client, {
    client_name: 'My SPA', token_endpoint_auth_method: 'none', redirect_uris: ['http://localhost:5173/callback'],
    post_logout_redirect_uris: ['http://localhost:5173/'], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
  });
});

test.serial('clients create --type web and --type service print a client_secret', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const web = await gatehouse(['clients', 'create', '--name', 'Web app', '--type', 'web', '--redirect-uri', 'https://app.example.com/callback']);
  t.is(web.code, 0, web.stderr);
  const webClient = JSON.parse(web.stdout) as Record<string, unknown>;
  t.is(typeof webClient.client_secret, 'string');
  t.true(String(webClient.client_secret).length >= 32);
  t.is(webClient.token_endpoint_auth_method, 'client_secret_basic');

  const service = await gatehouse(['clients', 'create', '--name', 'Orders API', '--type', 'service']);
  t.is(service.code, 0, service.stderr);
  const serviceClient = JSON.parse(service.stdout) as Record<string, unknown>;
  t.is(typeof serviceClient.client_secret, 'string');
  t.true(String(serviceClient.client_secret).length >= 32);
  t.deepEqual(serviceClient.grant_types, ['client_credentials']);
  t.not(serviceClient.client_secret, webClient.client_secret);
});

test.serial('clients create and update take a back-channel and a front-channel logout URI; an empty one removes it', async (t) => {
  t.timeout(2 * COMMAND_TIMEOUT_MS);
  const created = await gatehouse([
    'clients', 'create', '--name', 'Web app with logout', '--type', 'web', '--redirect-uri', 'https://app.example.com/callback',
    '--backchannel-logout-uri', 'https://app.example.com/backchannel-logout', '--frontchannel-logout-uri', 'https://app.example.com/frontchannel-logout',
  ]);
  t.is(created.code, 0, created.stderr);
  const client = JSON.parse(created.stdout) as Record<string, unknown>;
  t.like(client, {
    backchannel_logout_uri: 'https://app.example.com/backchannel-logout', backchannel_logout_session_required: true,
    frontchannel_logout_uri: 'https://app.example.com/frontchannel-logout', frontchannel_logout_session_required: true,
  });
  const updated = await gatehouse(['clients', 'update', '--client-id', String(client.client_id), '--backchannel-logout-uri', '']);
  t.is(updated.code, 0, updated.stderr);
  const after = JSON.parse(updated.stdout) as Record<string, unknown>;
  t.false('backchannel_logout_uri' in after);
  t.is(after.frontchannel_logout_uri, 'https://app.example.com/frontchannel-logout');
});

test.serial('--json: the commands that answer in a sentence print one JSON object instead, named as the admin API names it', async (t) => {
  t.timeout(16 * COMMAND_TIMEOUT_MS);
  const email = uniqueEmail();
  t.is((await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD])).code, 0);
  const json = async (args: string[]) => {
    const result = await gatehouse([...args, '--json']);
    t.is(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    return JSON.parse(result.stdout) as unknown;
  };
  t.deepEqual(await json(['users', 'unlock', '--email', email]), { email, unlocked: true });
  t.deepEqual(await json(['users', 'end-sessions', '--email', email]), { email, sessions_ended: 0, grants_revoked: 0 });
  t.deepEqual(await json(['users', 'password-reset', '--email', email]), { email });
  t.deepEqual(await json(['users', 'reset-second-factor', '--email', email]), { email, removed: 'nothing' });
  t.deepEqual(await json(['users', 'disable', '--email', email]), { email, disabled: true, changed: true, sessions_ended: 0, grants_revoked: 0 });
  t.deepEqual(await json(['users', 'enable', '--email', email]), { email, disabled: false, changed: true });
  t.deepEqual(await json(['users', 'delete', '--email', email]), { email, deleted: true, sessions_ended: 0, grants_revoked: 0 });

  const client = JSON.parse((await gatehouse(['clients', 'create', '--name', 'Short-lived', '--type', 'service'])).stdout) as { client_id: string };
  t.deepEqual(await json(['clients', 'delete', '--client-id', client.client_id]), { client_id: client.client_id, deleted: true });
  const identifier = `https://api-${crypto.randomUUID()}.example.com/`;
  t.is((await gatehouse(['apis', 'create', '--identifier', identifier, '--name', 'Short-lived', '--scope', 'x:read'])).code, 0);
  t.deepEqual(await json(['apis', 'delete', '--identifier', identifier]), { identifier, deleted: true });
  const role = `temp-${crypto.randomUUID().slice(0, 8)}`;
  t.is((await gatehouse(['roles', 'create', role])).code, 0);
  t.deepEqual(await json(['roles', 'delete', role]), { name: role, deleted: true, people_who_had_it: 0 });
  t.deepEqual(await json(['migrate']), { applied: [] });

  // Without --json, still the sentence; a failure stays on stderr with exit status 1, --json or not.
  t.is((await gatehouse(['roles', 'create', role])).code, 0);
  t.is((await gatehouse(['roles', 'delete', role])).stdout, `deleted ${role}; 0 people lost it\n`);
  const missing = await gatehouse(['users', 'unlock', '--email', email, '--json']);
  t.is(missing.code, 1);
  t.is(missing.stdout, '');
  t.regex(missing.stderr, /no account has the email/);
});

test.serial('clients update --require-second-factor and --no-require-second-factor turn the second factor for its sign-ins on and off', async (t) => {
  t.timeout(6 * COMMAND_TIMEOUT_MS);
  const created = await gatehouse(['clients', 'create', '--name', 'Back office', '--type', 'spa', '--redirect-uri', 'https://office.example.com/callback']);
  t.is(created.code, 0, created.stderr);
  const { client_id: clientId, require_second_factor: before } = JSON.parse(created.stdout) as { client_id: string; require_second_factor?: boolean };
  t.not(before, true);
  const on = await gatehouse(['clients', 'update', '--client-id', clientId, '--require-second-factor']);
  t.is(on.code, 0, on.stderr);
  t.is((JSON.parse(on.stdout) as { require_second_factor?: boolean }).require_second_factor, true);
  t.is((JSON.parse((await gatehouse(['clients', 'show', clientId])).stdout) as { require_second_factor?: boolean }).require_second_factor, true, 'stored');
  const off = await gatehouse(['clients', 'update', '--client-id', clientId, '--no-require-second-factor']);
  t.is(off.code, 0, off.stderr);
  t.not((JSON.parse(off.stdout) as { require_second_factor?: boolean }).require_second_factor, true);
  const both = await gatehouse(['clients', 'update', '--client-id', clientId, '--require-second-factor', '--no-require-second-factor']);
  t.is(both.code, 2);
  t.regex(both.stderr, /^gatehouse: clients update takes --require-second-factor or --no-require-second-factor, not both\n/);
  const service = JSON.parse((await gatehouse(['clients', 'create', '--name', 'Batch', '--type', 'service'])).stdout) as { client_id: string };
  const refused = await gatehouse(['clients', 'update', '--client-id', service.client_id, '--require-second-factor']);
  t.is(refused.code, 1);
  t.is(refused.stderr, 'gatehouse: a service client signs nobody in: it cannot require a second factor\n');
});

test.serial('apis update --scope-description alone rewords the scopes named and keeps the others; a scope the API does not define is refused', async (t) => {
  t.timeout(6 * COMMAND_TIMEOUT_MS);
  const identifier = `https://api-${crypto.randomUUID()}.example.com/orders`;
  const created = await gatehouse(['apis', 'create', '--identifier', identifier, '--name', 'Orders API', '--scope', 'orders:read orders:write', '--scope-description', 'orders:read=See your orders']);
  t.is(created.code, 0, created.stderr);
  const reworded = await gatehouse(['apis', 'update', '--identifier', identifier, '--scope-description', 'orders:write=Place orders for you']);
  t.is(reworded.code, 0, reworded.stderr);
  t.deepEqual(JSON.parse(reworded.stdout).scopes, [{ name: 'orders:read', description: 'See your orders' }, { name: 'orders:write', description: 'Place orders for you' }]);
  const cleared = await gatehouse(['apis', 'update', '--identifier', identifier, '--scope-description', 'orders:read=']);
  t.is(cleared.code, 0, cleared.stderr);
  t.deepEqual(JSON.parse(cleared.stdout).scopes, [{ name: 'orders:read' }, { name: 'orders:write', description: 'Place orders for you' }]);
  const unknown = await gatehouse(['apis', 'update', '--identifier', identifier, '--scope-description', 'orders:cancel=Cancel your orders']);
  t.is(unknown.code, 1);
  t.is(unknown.stderr, `gatehouse: ${identifier} defines no scope orders:cancel (its scopes: orders:read orders:write); --scope sets the whole list\n`);
  t.deepEqual(JSON.parse((await gatehouse(['apis', 'show', identifier])).stdout).scopes, [{ name: 'orders:read' }, { name: 'orders:write', description: 'Place orders for you' }], 'nothing changed');
  const noApi = await gatehouse(['apis', 'update', '--identifier', `${identifier}-gone`, '--scope-description', 'orders:read=X']);
  t.is(noApi.code, 1);
  t.is(noApi.stderr, `gatehouse: no API ${identifier}-gone\n`);
});

test.serial('users list, show, update, unlock, sessions, end-sessions, password-reset and delete; clients rotate-secret; audit by client and outcome: what the admin API does, by the same flows', async (t) => {
  const email = uniqueEmail();
  t.is((await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD, '--name', 'Ada'])).code, 0);
  const listed = await gatehouse(['users', 'list', '--email', email.split('@')[0]!, '--json']);
  t.is(listed.code, 0, listed.stderr);
  const [account] = listed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { id: string; email: string; emailVerified: boolean; secondFactorEnabled: boolean });
  t.like(account, { email, emailVerified: false, secondFactorEnabled: false });
  const table = await gatehouse(['users', 'list', '--disabled']);
  t.false(table.stdout.includes(email), 'an enabled account is not listed as disabled');

  const updated = await gatehouse(['users', 'update', '--email', email, '--name', 'Ada Lovelace', '--verified', 'true']);
  t.is(updated.code, 0, updated.stderr);
  t.like(JSON.parse(updated.stdout), { name: 'Ada Lovelace', emailVerified: true });
  t.like(JSON.parse((await gatehouse(['users', 'show', '--email', email])).stdout), { id: account!.id, name: 'Ada Lovelace' });
  const unlocked = await gatehouse(['users', 'unlock', '--email', email]);
  t.regex(unlocked.stdout, /^unlocked /);
  // Nor are its counts of failed attempts: it says so, and where to unlock instead.
  t.regex(unlocked.stderr, /keeps its failed-attempt counts in its own memory, out of this command's reach: unlock through the admin API/);
  const sessions = await gatehouse(['users', 'sessions', '--email', email]);
  t.regex(sessions.stdout, /is signed in nowhere/);
  // This command's store is in-process: a running server's sessions are out of its reach, and it says so.
  t.regex(sessions.stderr, /out of this command's reach, so they are not listed/);
  t.regex((await gatehouse(['users', 'end-sessions', '--email', email])).stdout, /out everywhere: 0 sessions ended/);
  const reset = await gatehouse(['users', 'password-reset', '--email', email]);
  t.is(reset.code, 0, reset.stderr);
  t.regex(reset.stdout, /on its way to/);
  const deleted = await gatehouse(['users', 'delete', '--email', email]);
  t.regex(deleted.stdout, /^deleted /);
  const gone = await gatehouse(['users', 'show', '--email', email]);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /no account has the email/);

  const service = JSON.parse((await gatehouse(['clients', 'create', '--name', 'Nightly', '--type', 'service'])).stdout) as { client_id: string; client_secret: string };
  const rotated = await gatehouse(['clients', 'rotate-secret', '--client-id', service.client_id, '--overlap', '0']);
  t.is(rotated.code, 0, rotated.stderr);
  const { client_secret: newSecret } = JSON.parse(rotated.stdout) as { client_secret: string };
  t.not(newSecret, service.client_secret);
  const audited = await gatehouse(['audit', '--client', service.client_id, '--outcome', 'success', '--json']);
  t.deepEqual(audited.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { action: string }).action), ['client.created', 'client.secret_rotated']);
  t.is((await gatehouse(['audit', '--outcome', 'maybe'])).code, 2);
});

test.serial('tokens create prints an initial access token for dynamic registration, when the store is shared; on the in-process store it says why not', async (t) => {
  const inProcess = await gatehouse(['tokens', 'create']);
  t.is(inProcess.code, 1);
  t.regex(inProcess.stderr, /in-process.*\/admin\/v1\/initial-access-tokens/);
  const redisUrl = process.env.REDIS_URL;
  if (!redisUrl) return;
  const prefix = `gatehouse-cli-${crypto.randomUUID()}:`;
  t.teardown(() => deleteKeysWithPrefix(redisUrl, prefix));
  const shared = await gatehouse(['tokens', 'create', '--uses', '3', '--expires-in', '3600'], { ...environment, REDIS_URL: redisUrl, STORE_PREFIX: prefix });
  t.is(shared.code, 0, shared.stderr);
  const issued = JSON.parse(shared.stdout) as { initial_access_token: string; id: string; uses: number };
  t.is(issued.uses, 3);
  t.regex(issued.id, /^[0-9a-f]{32}$/, 'an id a command line takes as one');
  t.regex(issued.initial_access_token, /^[\w-]{40,}$/);
  const withRedis = { ...environment, REDIS_URL: redisUrl, STORE_PREFIX: prefix };
  const listed = await gatehouse(['tokens', 'list'], withRedis);
  t.regex(listed.stdout, new RegExp(`${issued.id}\\s+\\S+\\s+3 of 3`));
  t.false(listed.stdout.includes(issued.initial_access_token), 'never the token itself');
  const revoked = await gatehouse(['tokens', 'revoke', issued.id, '--json'], withRedis);
  t.is(revoked.code, 0, revoked.stderr);
  t.deepEqual(JSON.parse(revoked.stdout), { id: issued.id, revoked: true });
  t.regex((await gatehouse(['tokens', 'revoke', issued.id], withRedis)).stderr, /no initial access token has the id/);
  t.is((await gatehouse(['tokens', 'list'], withRedis)).stdout, 'no initial access token can register a client\n');
});

test.serial('keys rotate publishes new signing keys that sign after the delay, refusing a second rotation meanwhile; keys list shows what each key does', async (t) => {
  const rotated = await gatehouse(['keys', 'rotate']);
  t.is(rotated.code, 0, rotated.stderr);
  const { published, signsFrom } = JSON.parse(rotated.stdout) as { published: Array<{ kid: string; alg: string }>; signsFrom: string };
  t.deepEqual(published.map((key) => key.alg).sort(), ['ES256', 'EdDSA', 'RS256']);
  // KEY_ROTATION_DELAY's default: an hour.
  const delay = Date.parse(signsFrom) - Date.now();
  t.true(delay > 3500_000 && delay <= 3600_000, String(delay));

  const again = await gatehouse(['keys', 'rotate']);
  t.is(again.code, 1);
  t.regex(again.stderr, /a rotation is under way: its new keys do not sign yet/);

  const listed = await gatehouse(['keys', 'list', '--json']);
  t.is(listed.code, 0, listed.stderr);
  const keys = listed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { kid: string; state: string; signsFrom: string; retiresAt?: string });
  const next = keys.filter((key) => key.state === 'next');
  t.deepEqual(next.map((key) => key.kid).sort(), published.map((key) => key.kid).sort());
  const signing = keys.filter((key) => key.state === 'signing');
  t.is(signing.length, 3);
  t.true(signing.every((key) => key.retiresAt === signsFrom), 'the keys signing now retire when the new ones start');
});

test.serial('apis create, list, update and delete; roles create and grant; users roles; clients create --scope names the API scopes a client may ask for', async (t) => {
  t.timeout(12 * COMMAND_TIMEOUT_MS);
  const identifier = `https://api-${crypto.randomUUID()}.example.com/orders`;
  const created = await gatehouse([
    'apis', 'create', '--identifier', identifier, '--name', 'Orders API', '--scope', 'orders:read orders:write',
    '--scope-description', 'orders:read=See your orders', '--ttl', '600', '--alg', 'RS256',
  ]);
  t.is(created.code, 0, created.stderr);
  t.like(JSON.parse(created.stdout), {
    identifier, name: 'Orders API', accessTokenFormat: 'jwt', accessTokenTtl: 600, signingAlg: 'RS256',
    scopes: [{ name: 'orders:read', description: 'See your orders' }, { name: 'orders:write' }],
  });

  const client = await gatehouse(['clients', 'create', '--name', 'Orders service', '--type', 'service', '--scope', 'orders:read', '--default-api', identifier]);
  t.is(client.code, 0, client.stderr);
  t.like(JSON.parse(client.stdout), { api_scopes: 'orders:read', default_resource: identifier });
  const unknownScope = await gatehouse(['clients', 'create', '--name', 'Typo', '--type', 'service', '--scope', 'ordres:read']);
  t.is(unknownScope.code, 1);
  t.is(unknownScope.stderr, 'gatehouse: no registered API defines the scope "ordres:read"\n');

  const listed = await gatehouse(['apis', 'list']);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, new RegExp(`${identifier.replace(/[.]/g, '\\.')}\\s+jwt\\s+Orders API\\s+orders:read orders:write`));

  // A role that permits orders:read, a person given it at creation, then taken away.
  const role = `orders-reader-${crypto.randomUUID().slice(0, 8)}`;
  t.is((await gatehouse(['roles', 'create', role, '--description', 'Reads orders'])).code, 0);
  const granted = await gatehouse(['roles', 'grant', role, '--api', identifier, '--scope', 'orders:read']);
  t.is(granted.code, 0, granted.stderr);
  t.like(JSON.parse(granted.stdout), { name: role, description: 'Reads orders', permissions: [{ api: identifier, scopes: ['orders:read'] }] });
  const reworded = await gatehouse(['roles', 'update', role, '--description', 'Reads and tracks orders']);
  t.is(reworded.code, 0, reworded.stderr);
  t.like(JSON.parse(reworded.stdout), { name: role, description: 'Reads and tracks orders', permissions: [{ api: identifier, scopes: ['orders:read'] }] });
  t.is((await gatehouse(['roles', 'update', 'no-such-role', '--description', 'x'])).stderr, 'gatehouse: no role no-such-role\n');
  t.is((await gatehouse(['roles', 'update', role])).code, 2, 'nothing to change');
  const email = uniqueEmail();
  const person = await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD, '--role', role]);
  t.is(person.code, 0, person.stderr);
  const removed = await gatehouse(['users', 'roles', 'remove', '--email', email, '--role', role]);
  t.is(removed.code, 0, removed.stderr);
  t.deepEqual(JSON.parse(removed.stdout), { email, roles: [], changed: true });
  const unknownRole = await gatehouse(['users', 'roles', 'add', '--email', email, '--role', 'no-such-role']);
  t.is(unknownRole.code, 1);
  t.is(unknownRole.stderr, 'gatehouse: no role no-such-role\n');

  const updated = await gatehouse(['apis', 'update', '--identifier', identifier, '--format', 'opaque']);
  t.is(updated.code, 0, updated.stderr);
  t.is(JSON.parse(updated.stdout).accessTokenFormat, 'opaque');

  const refused = await gatehouse(['apis', 'create', '--identifier', 'http://api.example.com/orders', '--name', 'Plain', '--scope', 'x:read']);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^gatehouse: an API identifier must use https/);

  const deleted = await gatehouse(['apis', 'delete', '--identifier', identifier]);
  t.is(deleted.code, 0, deleted.stderr);
  const gone = await gatehouse(['apis', 'show', identifier]);
  t.is(gone.code, 1);
  t.is(gone.stderr, `gatehouse: no API ${identifier}\n`);
});

test.serial('roles delete takes the role from everyone who has it; the last person with admin is never disabled, deleted or stripped of it', async (t) => {
  t.timeout(16 * COMMAND_TIMEOUT_MS);
  const role = `temp-${crypto.randomUUID().slice(0, 8)}`;
  t.is((await gatehouse(['roles', 'create', role])).code, 0);
  const people = [uniqueEmail(), uniqueEmail()];
  for (const email of people) t.is((await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD, '--role', role])).code, 0);
  const deleted = await gatehouse(['roles', 'delete', role]);
  t.is(deleted.code, 0, deleted.stderr);
  t.is(deleted.stdout, `deleted ${role}; 2 people lost it\n`);
  t.like(JSON.parse((await gatehouse(['users', 'show', '--email', people[0]!])).stdout), { roles: [] });
  t.is((await gatehouse(['roles', 'create', role])).code, 0);
  t.is((await gatehouse(['users', 'list', '--role', role, '--json'])).stdout, '', 'a role made again with the name gives nobody anything back');
  const audited = (await gatehouse(['audit', '--action', 'role.deleted', '--json'])).stdout.trim().split('\n').map((line) => JSON.parse(line) as { actorType: string; detail: { role?: string } });
  t.like(audited.find((event) => event.detail.role === role), { actorType: 'admin', detail: { people: 2 } });
  const adminRole = await gatehouse(['roles', 'delete', 'admin']);
  t.is(adminRole.code, 1);
  t.is(adminRole.stderr, 'gatehouse: the admin role cannot be deleted\n');

  // Nobody in this file's database has the admin role but the people made here.
  const last = uniqueEmail();
  t.is((await gatehouse(['users', 'create', '--email', last, '--password', PASSWORD, '--role', 'admin'])).code, 0);
  for (const refused of [['users', 'disable', '--email', last], ['users', 'delete', '--email', last], ['users', 'roles', 'remove', '--email', last, '--role', 'admin']]) {
    const answer = await gatehouse(refused);
    t.is(answer.code, 1, refused.join(' '));
    // After the refusal's audit line (a failure is logged at warn).
    t.true(answer.stderr.endsWith(`\ngatehouse: ${last} is the last enabled person with the admin role: give the role to someone else first (users roles add)\n`), answer.stderr);
  }
  t.like(JSON.parse((await gatehouse(['users', 'show', '--email', last])).stdout), { disabled: false, roles: ['admin'] });
  t.is((await gatehouse(['users', 'create', '--email', uniqueEmail(), '--password', PASSWORD, '--role', 'admin'])).code, 0);
  const removed = await gatehouse(['users', 'roles', 'remove', '--email', last, '--role', 'admin']);
  t.is(removed.code, 0, removed.stderr);
  t.deepEqual(JSON.parse(removed.stdout), { email: last, roles: [], changed: true });
});

test.serial('at the default LOG_LEVEL, clients create writes its audit event to stderr as a JSON line, without the secret', async (t) => {
  t.timeout(COMMAND_TIMEOUT_MS);
  const { LOG_LEVEL: _level, ...defaults } = environment;
  const result = await gatehouse(['clients', 'create', '--name', 'Logged web app', '--type', 'web', '--redirect-uri', 'https://app.example.com/callback'], defaults);
  t.is(result.code, 0, result.stderr);
  const client = JSON.parse(result.stdout) as { client_id: string; client_secret: string };
  // Nothing but JSON log lines on stderr; the audit event is one of them.
  const lines = result.stderr.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { component?: string; audit?: Record<string, unknown> });
  const audited = lines.filter((line) => line.component === 'audit');
  t.is(audited.length, 1, result.stderr);
  t.like(audited[0]!.audit!, { action: 'client.created', outcome: 'success', actorType: 'admin', clientId: client.client_id });
  t.regex(String(audited[0]!.audit!.actorId), /^cli/);
  t.true(client.client_secret.length >= 32);
  t.false(result.stderr.includes(client.client_secret), 'the secret printed on stdout is not logged');
});

const refusedClients: Array<[what: string, args: string[], message: RegExp]> = [
  ['a service client with a redirect URI', ['--type', 'service', '--redirect-uri', 'https://app.example.com/callback'], /redirect URI/],
  ['an spa without a redirect URI', ['--type', 'spa'], /needs at least one redirect URI/],
  ['an spa with a javascript: redirect URI', ['--type', 'spa', '--redirect-uri', 'javascript:alert(1)'], /redirect_uris/],
  ['an spa with a redirect URI that has a fragment', ['--type', 'spa', '--redirect-uri', 'http://localhost:5173/callback#token'], /fragment/],
  ['an spa with a redirect URI that is not a URI', ['--type', 'spa', '--redirect-uri', 'not a uri'], /redirect_uris/],
  ['an spa with a back-channel logout URI', ['--type', 'spa', '--redirect-uri', 'https://app.example.com/cb', '--backchannel-logout-uri', 'https://app.example.com/logout'], /only a web client takes a back-channel logout URI/],
  ['a web client with a back-channel logout URI on plain http', ['--type', 'web', '--redirect-uri', 'https://app.example.com/cb', '--backchannel-logout-uri', 'http://app.example.com/logout'], /backchannel_logout_uri must use https/],
  ['a web client with an invalid post-logout redirect URI', ['--type', 'web', '--redirect-uri', 'https://app.example.com/cb', '--post-logout-redirect-uri', 'javascript:alert(1)'], /post_logout_redirect_uris/],
];

for (const [what, args, message] of refusedClients) {
  test.serial(`clients create refuses ${what}`, async (t) => {
    t.timeout(COMMAND_TIMEOUT_MS);
    const result = await gatehouse(['clients', 'create', '--name', 'Refused', ...args]);
    t.is(result.code, 1, result.stdout);
    t.is(result.stdout, '', 'nothing registered is printed');
    t.regex(result.stderr, /^gatehouse: /);
    t.regex(result.stderr, message);
    t.is(result.stderr.trimEnd().split('\n').length, 1, 'one line, no stack trace');
  });
}

test('an unreachable database is reported in one line, without a stack trace', async (t) => {
  const result = await gatehouse(['users', 'create', '--email', uniqueEmail(), '--password', PASSWORD], cleanEnvironment({
    DATA_DIR: database.dataDir, KEYS_DIR: path.join(database.dataDir, 'keys'), LOG_LEVEL: 'silent',
    DATABASE_URL: 'postgresql://gatehouse:db-password@127.0.0.1:1/gatehouse',
  }));
  t.is(result.code, 1);
  t.is(result.stdout, '');
  t.regex(result.stderr, /^gatehouse: the database is unavailable/);
  t.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
  t.false(result.stderr.includes('db-password'));
});

// --- the CLI next to a running server on the embedded defaults -------------------------------------

test.serial('the CLI works while the server runs on the embedded defaults, and after it stops', async (t) => {
  t.timeout(4 * COMMAND_TIMEOUT_MS);
  const home = await temporaryDirectory('gh-cli-');
  const port = await findFreePort();
  const issuer = `http://127.0.0.1:${port}`;
  // No DATABASE_URL, no REDIS_URL: embedded PGlite under DATA_DIR and the in-process store.
  const shared = cleanEnvironment({ DATA_DIR: path.join(home, 'data'), KEYS_DIR: path.join(home, 'keys'), LOG_LEVEL: 'warn' });
  const serverProcess = startNode(['src/main.ts'], { ...shared, PORT: String(port), HOST: '127.0.0.1', ISSUER: issuer, LOG_LEVEL: 'info' });
  cleanups.push(async () => {
    if (serverProcess.child.exitCode === null && serverProcess.child.signalCode === null) serverProcess.child.kill('SIGKILL');
    await serverProcess.finished;
  });
  const serverLog = async () => {
    const exited = serverProcess.child.exitCode !== null || serverProcess.child.signalCode !== null;
    return exited ? (await serverProcess.finished).stdout + (await serverProcess.finished).stderr : '(still running)';
  };

  // Wait for the server to say it listens (the first start runs initdb and migrates), then to answer.
  const listening = await new Promise<boolean>((resolve) => {
    let output = '';
    const timer = setTimeout(() => resolve(false), COMMAND_TIMEOUT_MS);
    serverProcess.child.stdout!.on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('Gatehouse is listening on')) { clearTimeout(timer); resolve(true); }
    });
    serverProcess.child.once('exit', () => { clearTimeout(timer); resolve(false); });
  });
  const healthy = listening && await fetch(`${issuer}/healthz`).then((response) => response.ok, () => false);
  if (!healthy) t.fail(`the server did not come up: ${await serverLog()}`);

  // The CLI joins the database the server hosts.
  const email = uniqueEmail();
  const user = await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD, '--name', 'Grace Hopper', '--verified'], shared);
  t.is(user.code, 0, user.stderr);
  const client = await gatehouse(['clients', 'create', '--name', 'Running SPA', '--type', 'spa', '--redirect-uri', REDIRECT_URI], shared);
  t.is(client.code, 0, client.stderr);
  const clientId = (JSON.parse(client.stdout) as { client_id: string }).client_id;

  // The running server sees both: the client gets a login page, and the person can sign in.
  const as = await oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), insecure));
  const spa: oauth.Client = { client_id: clientId, token_endpoint_auth_method: 'none' };
  const request = await authorizationRequest(as, clientId);
  const agent = new UserAgent();
  const { response: loginPage } = await agent.follow(request.url);
  t.is(loginPage.status, 200, 'a login page, not invalid_client');
  t.regex(await loginPage.text(), /name="password"/);
  const callback = await signIn(agent, request.url, { email, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, spa, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, spa,
    await oauth.authorizationCodeGrantRequest(as, spa, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce, requireIdToken: true });
  t.is(oauth.getValidatedIdTokenClaims(tokens)?.sub, (JSON.parse(user.stdout) as { id: string }).id);

  // The consent given on the server's page is the database's: the CLI lists it, and forgets it.
  const applications = await gatehouse(['users', 'applications', '--email', email], shared);
  t.regex(applications.stdout, new RegExp(`^CLIENT\\s+NAME\\s+ALLOWED\\s+SCOPES\n${clientId}\\s+Running SPA\\s+\\S+\\s+openid`));
  const withdrawn = await gatehouse(['users', 'withdraw-access', '--email', email, '--client-id', clientId, '--json'], shared);
  t.is(withdrawn.code, 0, withdrawn.stderr);
  t.deepEqual(JSON.parse(withdrawn.stdout), { email, client_id: clientId, grants_revoked: 0 });
  t.regex(withdrawn.stderr, /in its own memory, out of this command's reach: only the consent is forgotten/);
  t.is((await gatehouse(['users', 'applications', '--email', email, '--json'], shared)).stdout, '');
  const again = await gatehouse(['users', 'withdraw-access', '--email', email, '--client-id', clientId], shared);
  t.is(again.code, 1);
  t.true(again.stderr.endsWith(`gatehouse: ${email} has not allowed an application ${clientId}\n`));

  // SIGTERM: a graceful shutdown exits 0.
  serverProcess.child.kill('SIGTERM');
  const stopped = await serverProcess.finished;
  t.is(stopped.code, 0, `server exit: ${stopped.code} ${stopped.signal}\n${stopped.stderr}`);
  t.regex(stopped.stdout, /"msg":"shutting down: finishing the requests under way"/);

  // Without the server the CLI hosts the embedded database itself, and finds what it holds.
  const duplicate = await gatehouse(['users', 'create', '--email', email, '--password', PASSWORD], shared);
  t.is(duplicate.code, 1);
  t.is(duplicate.stderr, 'gatehouse: an account with that email exists\n');
  const another = await gatehouse(['users', 'create', '--email', uniqueEmail(), '--password', PASSWORD], shared);
  t.is(another.code, 0, another.stderr);
});
