// Configuration and keys: loadConfig with explicit environments (defaults, validation, production
// refusals), the real `node src/main.ts` refusing to start, and loadSecrets generating, reusing and
// refusing keys.
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { exportJWK, generateKeyPair } from 'jose';
import { ConfigError, loadConfig, readConfig, type Config } from '../src/config/index.ts';
import { KeyError, generateJwks, loadSecrets } from '../src/keys/secrets.ts';
import { cleanEnvironment, runNode } from './helpers/process.ts';

const temporaryDirectories: string[] = [];
async function temporaryDirectory(): Promise<string> {
  const directory = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-config-'));
  temporaryDirectories.push(directory);
  return directory;
}
test.after.always(async () => {
  await Promise.all(temporaryDirectories.map((directory) => rm(directory, { recursive: true, force: true })));
});

let privateJwks: string;
let publicOnlyJwks: string;
test.before(async () => {
  privateJwks = JSON.stringify(await generateJwks());
  const { publicKey } = await generateKeyPair('ES256', { extractable: true });
  publicOnlyJwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig', kid: 'public-only' }] });
});

const LONG_SECRET = 'x'.repeat(32);
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString('base64url');
function productionEnvironment(): Record<string, string> {
  return {
    NODE_ENV: 'production',
    DATABASE_URL: 'postgresql://gatehouse@db.internal:5432/gatehouse',
    REDIS_URL: 'rediss://cache.internal:6380',
    JWKS: privateJwks,
    COOKIE_SECRETS: `${LONG_SECRET},${'y'.repeat(40)}`,
    ISSUER: 'https://id.example.com',
    TRUST_PROXY: 'true',
    ENCRYPTION_KEYS: ENCRYPTION_KEY,
    SMTP_URL: 'smtps://smtp.example.com',
    MAIL_FROM: 'Example <no-reply@example.com>',
  };
}

// --- loadConfig --------------------------------------------------------------------------------

test('an empty environment gives the documented development defaults', (t) => {
  const config = loadConfig({});
  t.like(config, {
    mode: 'development',
    port: 3000,
    host: '0.0.0.0',
    issuer: 'http://localhost:3000',
    databaseUrl: undefined,
    redis: undefined,
    storePrefix: 'gatehouse:',
    dataDir: path.resolve('data'),
    keysDir: path.resolve('keys'),
    jwks: undefined,
    jwksFile: undefined,
    cookieSecrets: undefined,
    trustProxy: false,
    logLevel: 'info',
  });
  t.deepEqual(config.ttl, {
    accessToken: 600, authorizationCode: 60, idToken: 3600, refreshToken: 30 * 24 * 3600, session: 14 * 24 * 3600, interaction: 3600,
  });
  t.deepEqual(config.argon2, { memoryCost: 19456, timeCost: 2, parallelism: 1 });
});

test('loadConfig reads only the environment it is given, never process.env', (t) => {
  const saved = process.env.PORT;
  process.env.PORT = '4321';
  try {
    t.is(loadConfig({}).port, 3000);
  } finally {
    if (saved === undefined) delete process.env.PORT;
    else process.env.PORT = saved;
  }
});

test('PORT sets the port and the default issuer; ISSUER wins and loses a trailing slash', (t) => {
  t.like(loadConfig({ PORT: '8080' }), { port: 8080, issuer: 'http://localhost:8080' });
  t.like(loadConfig({ PORT: '8080', ISSUER: 'https://id.example.com/' }), { port: 8080, issuer: 'https://id.example.com' });
});

test('an empty variable counts as unset', (t) => {
  const config = loadConfig({ PORT: '', ISSUER: '', DATABASE_URL: '', REDIS_URL: '', COOKIE_SECRETS: '', LOG_LEVEL: '' });
  t.like(config, { port: 3000, issuer: 'http://localhost:3000', databaseUrl: undefined, redis: undefined, cookieSecrets: undefined, logLevel: 'info' });
});

test('CLIENT_CACHE_TTL is 30 s by default, 0 turns the client cache off, and more than 300 s is refused', (t) => {
  t.is(loadConfig({}).clientCacheTtl, 30);
  t.is(loadConfig({ CLIENT_CACHE_TTL: '0' }).clientCacheTtl, 0);
  t.is(loadConfig({ CLIENT_CACHE_TTL: '300' }).clientCacheTtl, 300);
  t.throws(() => loadConfig({ CLIENT_CACHE_TTL: '301' }), { instanceOf: ConfigError, message: /^CLIENT_CACHE_TTL: must be at most 300/ });
  t.throws(() => loadConfig({ CLIENT_CACHE_TTL: '-1' }), { instanceOf: ConfigError, message: /^CLIENT_CACHE_TTL:/ });
});

test('METRICS_PORT is a listener of its own: the port of the app itself is refused', (t) => {
  t.is(loadConfig({ PORT: '3000', METRICS_PORT: '9464' }).metrics.port, 9464);
  t.throws(() => loadConfig({ PORT: '3000', METRICS_PORT: '3000' }), { instanceOf: ConfigError, message: /^METRICS_PORT must differ from PORT/ });
});

test('AUDIT_RETENTION_DAYS is a year by default; 0 keeps the audit trail for ever; what is no number of days is refused', (t) => {
  t.is(loadConfig({}).auditRetentionDays, 365);
  t.is(loadConfig({ AUDIT_RETENTION_DAYS: '0' }).auditRetentionDays, 0);
  t.is(loadConfig({ AUDIT_RETENTION_DAYS: '2555' }).auditRetentionDays, 2555);
  for (const wrong of ['-1', '1.5', 'a year', '36501']) t.throws(() => loadConfig({ AUDIT_RETENTION_DAYS: wrong }), { instanceOf: ConfigError, message: /^AUDIT_RETENTION_DAYS:/ }, wrong);
});

test('other settings are honoured', (t) => {
  const config = loadConfig({
    HOST: '127.0.0.1', DATABASE_URL: 'postgres://u@h/db', REDIS_URL: 'redis://h:1', STORE_PREFIX: 'app-1:', DATA_DIR: '/var/lib/gh',
    KEYS_DIR: 'secrets', COOKIE_SECRETS: ' a , b ,', TRUST_PROXY: '1', LOG_LEVEL: 'warn', ACCESS_TOKEN_TTL: '300', REFRESH_TOKEN_TTL: '86400',
    ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '3', ARGON2_PARALLELISM: '4',
  });
  t.like(config, {
    host: '127.0.0.1', databaseUrl: 'postgres://u@h/db', redis: { url: 'redis://h:1', cluster: false }, storePrefix: 'app-1:', dataDir: '/var/lib/gh',
    keysDir: path.resolve('secrets'), trustProxy: true, logLevel: 'warn', ttl: { accessToken: 300, refreshToken: 86400 },
    argon2: { memoryCost: 65536, timeCost: 3, parallelism: 4 },
  });
  t.deepEqual(config.cookieSecrets, ['a', 'b'], 'secrets are trimmed and empty ones dropped');
  t.false(loadConfig({ TRUST_PROXY: 'false' }).trustProxy);
});

const invalidValues: Array<[variable: string, value: string]> = [
  ['PORT', 'abc'],
  ['PORT', '70000'],
  ['PORT', '3.5'],
  ['PORT', '-1'],
  ['PORT', '0x50'],
  ['PORT', ' '],
  ['ISSUER', 'not a url'],
  ['ISSUER', 'ftp://id.example.com'],
  ['ISSUER', 'javascript:alert(1)'],
  ['ISSUER', 'https://id.example.com/?tenant=1'],
  ['ISSUER', 'https://id.example.com/#top'],
  ['ISSUER', 'https://example.com/auth/'],
  ['DATABASE_URL', 'mysql://admin:hunter2-secret@db/gatehouse'],
  ['REDIS_URL', 'http://admin:hunter2-secret@cache:6379'],
  ['STORE_PREFIX', 'has space*'],
  ['NODE_ENV', 'staging'],
  ['TRUST_PROXY', 'yes'],
  ['LOG_LEVEL', 'verbose'],
  ['ACCESS_TOKEN_TTL', '0'],
  ['ACCESS_TOKEN_TTL', '1e3'],
  ['ACCESS_TOKEN_TTL', '86401'],
  ['REFRESH_TOKEN_TTL', 'forever'],
  ['SESSION_TTL', '-5'],
  ['ARGON2_MEMORY_KIB', '1024'],
  ['ARGON2_TIME_COST', '1'],
  ['ARGON2_PARALLELISM', '0'],
];

for (const [variable, value] of invalidValues) {
  test(`${variable}=${JSON.stringify(value)} is refused with a one-line ConfigError naming ${variable}`, (t) => {
    const error = t.throws(() => loadConfig({ [variable]: value }), { instanceOf: ConfigError });
    t.true(error!.message.startsWith(`${variable}: `), error!.message);
    t.false(error!.message.includes('\n'), 'one line');
    t.false(error!.message.includes('hunter2-secret'), 'credentials in a rejected URL are not repeated');
  });
}

const productionRefusals: Array<[what: string, change: Record<string, string | undefined>, reason: RegExp]> = [
  ['no DATABASE_URL', { DATABASE_URL: undefined }, /^production needs DATABASE_URL: the embedded database is for development$/],
  ['no REDIS_URL', { REDIS_URL: undefined }, /^production needs REDIS_URL: the in-process store is for development$/],
  ['no COOKIE_SECRETS', { COOKIE_SECRETS: undefined }, /^production needs COOKIE_SECRETS \(comma-separated, 32\+ characters each\)$/],
  ['only separators in COOKIE_SECRETS', { COOKIE_SECRETS: ' , ' }, /^production needs COOKIE_SECRETS/],
  ['a short cookie secret', { COOKIE_SECRETS: 'short-secret' }, /^COOKIE_SECRETS: every secret must be at least 32 characters$/],
  ['a short cookie secret among long ones', { COOKIE_SECRETS: `${LONG_SECRET},${'z'.repeat(31)}` }, /^COOKIE_SECRETS: every secret must be at least 32 characters$/],
  ['an http:// ISSUER', { ISSUER: 'http://id.example.com' }, /^production needs an https:\/\/ ISSUER$/],
  ['no ISSUER (the default is http://localhost)', { ISSUER: undefined }, /^production needs an https:\/\/ ISSUER$/],
  ['TRUST_PROXY off (cookies would lose Secure)', { TRUST_PROXY: undefined }, /^production needs TRUST_PROXY=true/],
  ['no ENCRYPTION_KEYS', { ENCRYPTION_KEYS: undefined }, /^production needs ENCRYPTION_KEYS/],
  ['no SMTP_URL (links go out by email)', { SMTP_URL: undefined }, /^production needs SMTP_URL/],
  ['a MAIL_FROM at localhost', { MAIL_FROM: 'x@LOCALHOST' }, /^production needs MAIL_FROM/],
  ['no MAIL_FROM (the default is at localhost)', { MAIL_FROM: undefined }, /^production needs MAIL_FROM/],
  ['a signing key rotated every hour', { KEY_ROTATION_INTERVAL: '3600' }, /^KEY_ROTATION_INTERVAL must be 0 \(rotation by command only\) or at least 86400 \(a day\) in production/],
];

for (const [what, change, reason] of productionRefusals) {
  test(`NODE_ENV=production refuses ${what}`, (t) => {
    const environment: Record<string, string | undefined> = { ...productionEnvironment(), ...change };
    const error = t.throws(() => loadConfig(environment as NodeJS.ProcessEnv), { instanceOf: ConfigError });
    t.regex(error!.message, reason);
  });
}

test('NODE_ENV=production accepts a complete configuration, with JWKS or with JWKS_FILE', (t) => {
  const config = loadConfig(productionEnvironment());
  t.like(config, {
    mode: 'production', issuer: 'https://id.example.com', databaseUrl: 'postgresql://gatehouse@db.internal:5432/gatehouse',
    redis: { url: 'rediss://cache.internal:6380' }, jwks: privateJwks,
  });
  t.deepEqual(config.cookieSecrets, [LONG_SECRET, 'y'.repeat(40)]);
  // Rotation by command only, or by itself daily at the most often.
  t.is(loadConfig({ ...productionEnvironment(), KEY_ROTATION_INTERVAL: '0' }).keyRotation.interval, 0);
  t.is(loadConfig({ ...productionEnvironment(), KEY_ROTATION_INTERVAL: '86400' }).keyRotation.interval, 86_400);
  const withFile = loadConfig({ ...productionEnvironment(), JWKS: '', JWKS_FILE: '/run/secrets/jwks.json' });
  t.like(withFile, { jwks: undefined, jwksFile: '/run/secrets/jwks.json' });
  // Neither: the signing keys live in the database, and rotate.
  t.like(loadConfig({ ...productionEnvironment(), JWKS: undefined }), { jwks: undefined, jwksFile: undefined });
});

test('REDIS_URL names one server, or with REDIS_SENTINEL_MASTER the Sentinels to ask, or with REDIS_CLUSTER nodes of a cluster', (t) => {
  t.like(loadConfig({ REDIS_URL: 'redis://:secret@s1:26379,s2/2', REDIS_SENTINEL_MASTER: 'main', REDIS_SENTINEL_PASSWORD: 'sentinel-secret' }), {
    redis: { url: 'redis://:secret@s1:26379,s2/2', sentinelMaster: 'main', sentinelPassword: 'sentinel-secret', cluster: false },
  });
  t.like(loadConfig({ REDIS_URL: 'rediss://n1:7000,[::1]:7001', REDIS_CLUSTER: 'true' }), { redis: { url: 'rediss://n1:7000,[::1]:7001', cluster: true } });
  const refusals: [Record<string, string>, RegExp][] = [
    [{ REDIS_URL: 'redis://n1:7000,n2:7001' }, /several hosts: say whether they are Sentinels \(REDIS_SENTINEL_MASTER=<master name>\) or cluster nodes \(REDIS_CLUSTER=true\)/],
    [{ REDIS_URL: 'redis://n1:7000', REDIS_CLUSTER: 'true', REDIS_SENTINEL_MASTER: 'main' }, /exclude each other/],
    [{ REDIS_URL: 'redis://n1:7000/3', REDIS_CLUSTER: 'true' }, /database 3, but a Redis Cluster has only database 0/],
    [{ REDIS_URL: 'redis://n1:7000,,n2', REDIS_CLUSTER: 'true' }, /REDIS_URL names a host that is not host:port/],
    [{ REDIS_URL: 'redis://n1/main', REDIS_SENTINEL_MASTER: 'main' }, /REDIS_URL has a path that is not a database number/],
    [{ REDIS_CLUSTER: 'true' }, /need REDIS_URL/],
    [{ REDIS_URL: 'redis://n1', REDIS_SENTINEL_PASSWORD: 'x' }, /REDIS_SENTINEL_PASSWORD needs REDIS_SENTINEL_MASTER/],
  ];
  for (const [environment, reason] of refusals) t.throws(() => loadConfig(environment), { instanceOf: ConfigError, message: reason }, JSON.stringify(environment));
});

test('ADMIN_API_CORS_ORIGINS takes origins only: https, or http on the loopback interface', (t) => {
  t.deepEqual(loadConfig({}).adminApiCorsOrigins, []);
  t.deepEqual(loadConfig({ ADMIN_API_CORS_ORIGINS: 'https://admin.example.com, http://127.0.0.1:5173' }).adminApiCorsOrigins, ['https://admin.example.com', 'http://127.0.0.1:5173']);
  for (const refused of ['http://admin.example.com', 'https://admin.example.com/console', '*']) {
    t.throws(() => loadConfig({ ADMIN_API_CORS_ORIGINS: refused }), { instanceOf: ConfigError, message: /ADMIN_API_CORS_ORIGINS/ }, refused);
  }
});

test('key rotation: an hour from publishing to signing by default; JWKS caching and key reads a quarter of that, at most 5 and 1 minutes', (t) => {
  t.deepEqual(loadConfig({}).keyRotation, { delay: 3600, interval: 90 * 24 * 3600, jwksMaxAge: 300, refreshInterval: 60 });
  t.deepEqual(loadConfig({ KEY_ROTATION_DELAY: '8', KEY_ROTATION_INTERVAL: '0' }).keyRotation, { delay: 8, interval: 0, jwksMaxAge: 2, refreshInterval: 2 });
  t.throws(() => loadConfig({ KEY_ROTATION_DELAY: '3' }), { instanceOf: ConfigError, message: /KEY_ROTATION_DELAY/ });
});

test('the same unsafe settings are accepted outside production', (t) => {
  for (const mode of ['development', 'test'] as const) {
    const config = loadConfig({ NODE_ENV: mode, COOKIE_SECRETS: 'short', ISSUER: 'http://localhost:3000' });
    t.is(config.mode, mode);
    t.deepEqual(config.cookieSecrets, ['short']);
  }
});

// --- the real process ----------------------------------------------------------------------------

test('node src/main.ts in production without its settings exits non-zero listing every one it needs', async (t) => {
  const dataDir = await temporaryDirectory();
  const result = await runNode(['src/main.ts'], cleanEnvironment({ NODE_ENV: 'production', DATA_DIR: dataDir, KEYS_DIR: dataDir, PORT: '1' }));
  t.not(result.code, 0);
  t.is(result.stdout, '');
  const [first, ...rest] = result.stderr.trimEnd().split('\n');
  t.is(first, 'gatehouse: refusing to start: 8 settings to fix:');
  t.is(rest.length, 8, result.stderr);
  t.regex(rest[0]!, /^ {2}- production needs DATABASE_URL/);
  t.deepEqual(await readdir(dataDir), [], 'nothing was created before refusing');
});

test('node src/main.ts with an invalid value exits non-zero with one line naming the variable', async (t) => {
  const result = await runNode(['src/main.ts'], cleanEnvironment({ PORT: 'eighty' }));
  t.not(result.code, 0);
  t.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
  t.regex(result.stderr, /^gatehouse: refusing to start: PORT: /);
});

test('node src/main.ts in production with a public-only JWKS refuses to start in one line, before touching the database', async (t) => {
  const result = await runNode(['src/main.ts'], cleanEnvironment({
    ...productionEnvironment(), JWKS: publicOnlyJwks,
    // Nothing listens there: the key must be refused before any connection is tried.
    DATABASE_URL: 'postgresql://gatehouse@127.0.0.1:1/gatehouse', REDIS_URL: 'redis://127.0.0.1:1',
  }));
  t.not(result.code, 0);
  t.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
  t.regex(result.stderr, /^gatehouse: refusing to start: JWKS must hold private keys/);
});

test('node src/main.ts with an unreachable database waits STARTUP_WAIT, saying so, then exits non-zero saying why in one line, without a stack trace', async (t) => {
  const result = await runNode(['src/main.ts'], cleanEnvironment({
    ...productionEnvironment(), DATABASE_URL: 'postgresql://gatehouse:db-password@127.0.0.1:1/gatehouse', REDIS_URL: 'redis://127.0.0.1:1', STARTUP_WAIT: '1',
  }));
  t.not(result.code, 0);
  const waits = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { msg: string; dependency?: string }).filter((line) => line.msg === 'waiting for the database to answer');
  t.true(waits.length >= 1, result.stdout);
  t.false(result.stdout.includes('db-password'));
  t.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
  t.regex(result.stderr, /^gatehouse: cannot start: the database is unavailable/);
  t.false(result.stderr.includes('db-password'));
});

// --- keys ------------------------------------------------------------------------------------------

function configWithKeysDir(keysDir: string, overrides: Partial<Config> = {}): Config {
  return { ...loadConfig({ KEYS_DIR: keysDir }), ...overrides };
}

test('loadSecrets generates keys into an empty keys directory once and reuses them afterwards', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const first = await loadSecrets(configWithKeysDir(keysDir));
  t.true(first.development);
  t.is(first.configuredJwks, undefined, 'the database holds the signing keys');
  const firstKeys = await first.firstSigningKeys();
  t.deepEqual(firstKeys.keys.map((key) => key.alg), ['RS256', 'ES256', 'EdDSA']);
  for (const key of firstKeys.keys) {
    t.truthy(key.d, 'generated keys are private');
    t.truthy(key.kid);
  }
  t.is(first.cookieSecrets.length, 1);
  t.true(first.cookieSecrets[0]!.length >= 32);
  t.is(first.encryptionKeys.length, 1);
  t.is(first.encryptionKeys[0]!.length, 32);
  t.deepEqual((await readdir(keysDir)).sort(), ['cookie-secrets.json', 'encryption-keys.json', 'jwks.json']);
  for (const file of ['cookie-secrets.json', 'encryption-keys.json', 'jwks.json']) {
    t.is((await stat(path.join(keysDir, file))).mode & 0o777, 0o600, `${file} is readable by its owner only`);
  }

  const second = await loadSecrets(configWithKeysDir(keysDir));
  t.deepEqual(await second.firstSigningKeys(), firstKeys, 'a development database starts with the same keys');
  t.deepEqual(second.cookieSecrets, first.cookieSecrets);
  t.deepEqual(second.encryptionKeys, first.encryptionKeys);
});

test('processes starting together on an empty keys directory all end up with the same keys', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const all = await Promise.all(Array.from({ length: 6 }, async () => {
    const secrets = await loadSecrets(configWithKeysDir(keysDir));
    return { ...secrets, jwks: await secrets.firstSigningKeys() };
  }));
  for (const secrets of all.slice(1)) {
    t.deepEqual(secrets.jwks, all[0]!.jwks);
    t.deepEqual(secrets.cookieSecrets, all[0]!.cookieSecrets);
    t.deepEqual(secrets.encryptionKeys, all[0]!.encryptionKeys);
  }
  t.deepEqual((await readdir(keysDir)).sort(), ['cookie-secrets.json', 'encryption-keys.json', 'jwks.json'], 'no temporary files left behind');
});

test('configured JWKS, cookie secrets and encryption keys are used as given and nothing is written', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const secrets = await loadSecrets(configWithKeysDir(keysDir, { jwks: privateJwks, cookieSecrets: [LONG_SECRET], encryptionKeys: [ENCRYPTION_KEY] }));
  t.false(secrets.development);
  t.deepEqual(secrets.configuredJwks, JSON.parse(privateJwks));
  t.deepEqual(secrets.cookieSecrets, [LONG_SECRET]);
  t.deepEqual(secrets.encryptionKeys, [new Uint8Array(Buffer.alloc(32, 7))]);
  await t.throwsAsync(stat(keysDir), { code: 'ENOENT' });
});

test('JWKS_FILE is read', async (t) => {
  const directory = await temporaryDirectory();
  const file = path.join(directory, 'jwks.json');
  await writeFile(file, privateJwks);
  const secrets = await loadSecrets(configWithKeysDir(path.join(directory, 'keys'), { jwksFile: file, cookieSecrets: [LONG_SECRET] }));
  t.deepEqual(secrets.configuredJwks, JSON.parse(privateJwks));
});

test('a JWKS_FILE that cannot be read is refused naming JWKS_FILE', async (t) => {
  const directory = await temporaryDirectory();
  const missing = path.join(directory, 'missing-jwks.json');
  await t.throwsAsync(loadSecrets(configWithKeysDir(path.join(directory, 'keys'), { jwksFile: missing, cookieSecrets: [LONG_SECRET] })), {
    instanceOf: KeyError, message: /^JWKS_FILE: /,
  });
});

test('production refuses generated cookie secrets and encryption keys; its first signing keys are new, never read from keys/', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const development = await loadSecrets(configWithKeysDir(keysDir));
  const production = await loadSecrets(configWithKeysDir(keysDir, { mode: 'production', cookieSecrets: [LONG_SECRET], encryptionKeys: [ENCRYPTION_KEY] }));
  t.false(production.development);
  const productionKids = (await production.firstSigningKeys()).keys.map((key) => key.kid);
  const developmentKids = new Set((await development.firstSigningKeys()).keys.map((key) => key.kid));
  t.is(productionKids.length, 3);
  t.false(productionKids.some((kid) => developmentKids.has(kid)));
  await t.throwsAsync(loadSecrets(configWithKeysDir(keysDir, { mode: 'production', jwks: privateJwks, encryptionKeys: [ENCRYPTION_KEY] })), {
    instanceOf: KeyError, message: /production refuses generated cookie-secrets/,
  });
  await t.throwsAsync(loadSecrets(configWithKeysDir(keysDir, { mode: 'production', jwks: privateJwks, cookieSecrets: [LONG_SECRET] })), {
    instanceOf: KeyError, message: /production refuses generated encryption-keys/,
  });
  // Keys generated earlier in development are not picked up in production either.
  await loadSecrets(configWithKeysDir(keysDir));
  await t.throwsAsync(loadSecrets(configWithKeysDir(keysDir, { mode: 'production', cookieSecrets: [LONG_SECRET] })), { instanceOf: KeyError });
});

test('a JWKS with a public-only key, invalid JSON or no keys is refused', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const withJwks = (jwks: string) => loadSecrets(configWithKeysDir(keysDir, { jwks, cookieSecrets: [LONG_SECRET] }));
  await t.throwsAsync(withJwks(publicOnlyJwks), { instanceOf: KeyError, message: /private keys/ });
  const mixed = JSON.stringify({ keys: [...JSON.parse(privateJwks).keys, ...JSON.parse(publicOnlyJwks).keys] });
  await t.throwsAsync(withJwks(mixed), { instanceOf: KeyError, message: /private keys/ });
  await t.throwsAsync(withJwks('{"keys": ['), { instanceOf: KeyError, message: /not valid JSON/ });
  await t.throwsAsync(withJwks('{"keys": []}'), { instanceOf: KeyError, message: /non-empty "keys" array/ });
  await t.throwsAsync(withJwks('[]'), { instanceOf: KeyError });
});

test('a JWKS the engine could not sign with is refused with a reason, not a crash', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  const withJwks = (keys: object[]) => loadSecrets(configWithKeysDir(keysDir, { jwks: JSON.stringify({ keys }), cookieSecrets: [LONG_SECRET] }));
  const [rsa, ec] = JSON.parse(privateJwks).keys as Array<Record<string, unknown>>;
  await t.throwsAsync(withJwks([{ kty: 'oct', k: 'AAAA', d: 'x' }]), { instanceOf: KeyError, message: /only RSA keys for RS256, P-256 EC keys for ES256 and Ed25519 keys for EdDSA/ });
  await t.throwsAsync(withJwks([rsa!, { ...ec, crv: 'P-384' }]), { instanceOf: KeyError, message: /key 1: only RSA/ });
  await t.throwsAsync(withJwks([{ ...rsa, alg: 'PS256' }]), { instanceOf: KeyError, message: /key 0: only RSA/ });
  await t.throwsAsync(withJwks([{ ...rsa, n: 'broken' }]), { instanceOf: KeyError, message: /key 0 is not a usable RS256 key/ });
  await t.throwsAsync(withJwks([ec!]), { instanceOf: KeyError, message: /needs an RSA key/ });
  t.truthy(await withJwks([rsa!, ec!]));
});

test('an encryption key that is not 32 bytes of base64url is refused naming ENCRYPTION_KEYS', async (t) => {
  const keysDir = path.join(await temporaryDirectory(), 'keys');
  for (const key of ['short', Buffer.alloc(31).toString('base64url'), Buffer.alloc(33).toString('base64url'), `${ENCRYPTION_KEY.slice(0, -1)}+`]) {
    await t.throwsAsync(loadSecrets(configWithKeysDir(keysDir, { jwks: privateJwks, cookieSecrets: [LONG_SECRET], encryptionKeys: [key] })), {
      instanceOf: KeyError, message: /^ENCRYPTION_KEYS: every key must be 32 random bytes/,
    }, key);
  }
});

test('NODE_ENV=production lists every refused setting at once, not one per start', (t) => {
  const error = t.throws(() => loadConfig({ NODE_ENV: 'production', COOKIE_SECRETS: 'short' }), { instanceOf: ConfigError });
  t.deepEqual(error!.problems.map((problem) => /[A-Z][A-Z_]+/.exec(problem)?.[0]), [
    'DATABASE_URL', 'REDIS_URL', 'COOKIE_SECRETS', 'ENCRYPTION_KEYS', 'ISSUER', 'TRUST_PROXY', 'SMTP_URL', 'MAIL_FROM',
  ]);
  t.regex(error!.describe(), /^8 settings to fix:\n {2}- production needs DATABASE_URL/);
});

test('values that cannot be read are all listed at once', (t) => {
  const error = t.throws(() => loadConfig({ PORT: 'eighty', SESSION_TTL: '-5', PASSWORD_MIN_LENGTH: '7' }), { instanceOf: ConfigError });
  t.deepEqual(error!.problems.map((problem) => problem.split(':')[0]).sort(), ['PASSWORD_MIN_LENGTH', 'PORT', 'SESSION_TTL']);
});

test('a setting that cannot be read hides no other problem; a NODE_ENV that cannot be read is read as production, the strictest', (t) => {
  const { refused } = readConfig({ NODE_ENV: 'Production', METRICS_TOKEN: 'too-short' });
  t.true(refused.some((problem) => problem.startsWith('NODE_ENV: ')), refused.join('\n'));
  t.true(refused.some((problem) => problem.startsWith('METRICS_TOKEN: ')), refused.join('\n'));
  t.true(refused.includes('production needs DATABASE_URL: the embedded database is for development'), refused.join('\n'));
});
