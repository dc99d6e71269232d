// The password policy (NIST SP 800-63B, OWASP ASVS) as a pure function and through UserService.create,
// Unicode normalization shared by the policy and the hasher, and the argon2id upgrade at the next sign-in.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import argon2 from 'argon2';
import test from 'ava';
import { ConfigError, loadConfig } from '../src/config/index.ts';
import { openDatabase, type Database } from '../src/db/index.ts';
import { migrate } from '../src/db/migrate.ts';
import { MAXIMUM_PASSWORD_LENGTH, checkPassword, passwordLength } from '../src/accounts/password-policy.ts';
import { PasswordHasher, type PasswordHashingOptions } from '../src/accounts/passwords.ts';
import { AccountError, UserService } from '../src/accounts/users.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { PASSWORD } from './helpers/oauth.ts';

/** A password of exactly `length` code points that no rule but length refuses. */
function passwordOfLength(length: number): string {
  const words = 'amber quilt ferry novel cobalt thistle orbit lantern ';
  return words.repeat(Math.ceil(length / words.length)).slice(0, length);
}

const reasonOf = (...args: Parameters<typeof checkPassword>) => checkPassword(...args)?.reason;

test('length: 7 characters are refused, 8 accepted, with a message that says what to change', (t) => {
  const problem = checkPassword('gh7!qz2');
  t.is(problem?.reason, 'length');
  t.is(problem?.message, `the password must have between 8 and ${MAXIMUM_PASSWORD_LENGTH} characters`);
  t.false(problem?.message.includes('gh7!qz2'), 'the password is not repeated back');
  t.is(checkPassword('gh7!qz2m'), undefined);
});

test('length: 128 and the maximum (256) are accepted, one more is refused', (t) => {
  t.is(MAXIMUM_PASSWORD_LENGTH, 256);
  t.is(checkPassword(passwordOfLength(128)), undefined);
  t.is(checkPassword(passwordOfLength(MAXIMUM_PASSWORD_LENGTH)), undefined);
  t.is(reasonOf(passwordOfLength(MAXIMUM_PASSWORD_LENGTH + 1)), 'length');
});

test('length: a configured minimum is honoured, and nothing sets it below 8', (t) => {
  t.is(reasonOf(passwordOfLength(11), {}, { minimumLength: 12 }), 'length');
  t.regex(checkPassword(passwordOfLength(11), {}, { minimumLength: 12 })!.message, /between 12 and 256/);
  t.is(checkPassword(passwordOfLength(12), {}, { minimumLength: 12 }), undefined);
  t.is(reasonOf('gh7!qz2', {}, { minimumLength: 4 }), 'length', 'a lower minimum is raised to 8');

  t.like(loadConfig({}).passwordPolicy, { minimumLength: 8 });
  t.like(loadConfig({ PASSWORD_MIN_LENGTH: '15' }).passwordPolicy, { minimumLength: 15 });
  t.throws(() => loadConfig({ PASSWORD_MIN_LENGTH: '7' }), { instanceOf: ConfigError, message: /^PASSWORD_MIN_LENGTH: must be at least 8/ });
  t.throws(() => loadConfig({ PASSWORD_MIN_LENGTH: '65' }), { instanceOf: ConfigError, message: /^PASSWORD_MIN_LENGTH: must be at most 64/ });
});

test('length counts Unicode code points after NFKC: an emoji is one character, a decomposed é is one', (t) => {
  t.is(passwordLength('🐉'.repeat(8)), 8);
  t.is('🐉'.repeat(7).length, 14, 'UTF-16 would have counted 14');
  t.is(reasonOf('🐉🦊🐙🦉🐝🦋🐢'), 'length');
  t.is(checkPassword('🐉🦊🐙🦉🐝🦋🐢🦀'), undefined);

  const decomposed = 're\u0301sume\u0301!'; // "résumé!": 9 code points as typed, 7 once composed
  t.is([...decomposed].length, 9);
  t.is(reasonOf(decomposed), 'length');
  t.is(checkPassword('re\u0301sume\u0301s!'), undefined);
});

test('common and breached passwords are refused whatever their case, and whatever keyboard typed them', (t) => {
  for (const password of ['password1', 'qwertyuiop', 'PASSWORD1', 'Password1', 'QwErTyUiOp', 'iloveyou', 'passw0rd', '123456789']) {
    t.is(reasonOf(password), 'common', password);
  }
  t.is(reasonOf('ｐａｓｓｗｏｒｄ１'), 'common', 'full-width letters are the same password after NFKC');
  t.regex(checkPassword('password1')!.message, /list of common or breached passwords/);
});

test('a listed password is refused with letters typed as look-alike digits or symbols, or digits, symbols or spaces around it', (t) => {
  for (const password of ['Passw0rd!', 'Summer2024', 'letmein!', 'p@ssw0rd123', '$ummer2024', 'M0nkey99', 'Dragon 2024', 'l3tm31n!', '2024letmein', '!!12345678!!']) {
    t.is(reasonOf(password), 'common', password);
  }
  t.regex(checkPassword('Summer2024')!.message, /list of common or breached passwords, or is one with a few characters changed or added/);
});

test('the service\'s name and the words of the issuer\'s host are refused, as they are or lightly changed', (t) => {
  const options = { issuerHost: 'login.acme-corp.example' };
  for (const password of ['gatehouse', 'Gatehouse2024!', 'G4teh0use!', 'acme-corp2024', 'AcmeCorp!', 'Login2024!']) {
    t.is(reasonOf(password, {}, options), 'common', password);
  }
  t.is(checkPassword('AcmeCorp!', {}, options)!.message,
    'that password is the name or web address of this service, with a few characters changed or added: choose another (a few unrelated words make a strong one)');
  t.is(checkPassword('AcmeCorp!'), undefined, 'another issuer\'s host is nothing special');
  t.is(checkPassword('Login2024!', {}, { issuerHost: 'id.example' }), undefined);
  t.is(checkPassword('www2024!!', {}, { issuerHost: 'www.example' }), undefined, 'www is not a word of the host');

  const config = loadConfig({ ISSUER: 'https://login.acme-corp.example' });
  t.is(config.passwordPolicy.issuerHost, 'login.acme-corp.example', 'the configuration passes the issuer\'s host to the policy');
  t.is(reasonOf('acme-corp2024', {}, config.passwordPolicy), 'common');
});

test('passphrases and random strings that only contain a listed word or the service\'s name are accepted', (t) => {
  for (const password of [
    PASSWORD, 'Tr0ub4dor&3-horse-staple', 'summer garden 2024', 'monkey wrench at dawn', 'Gatehouse keeper of the moor',
    'x9$Rt!2mQ7vLp#4k', 'qh4Tz9wLm2Xc', 'N7#vQ2!rK8@pL5$w',
  ]) {
    t.is(checkPassword(password, {}, { issuerHost: 'login.acme-corp.example' }), undefined, password);
  }
  // A digit beside the digits around a word is read as a digit: 181|5ada|1815 is not "sada", a listed word.
  t.is(checkPassword('1815ada1815'), undefined);
  t.is(checkPassword('ace!2024'), undefined, 'three letters are too few to be a listed word by more than chance');
});

test('the shipped list is tens of thousands of entries of at least 8 characters, and the test password is not one', (t) => {
  const entries = readFileSync(new URL('../src/accounts/common-passwords.txt', import.meta.url), 'utf8')
    .split('\n').filter((line) => line && !line.startsWith('#'));
  t.true(entries.length > 10_000 && entries.length < 100_000, `${entries.length} entries`);
  t.true(entries.every((entry) => [...entry].length >= 8 && entry === entry.toLowerCase()));
  t.false(entries.includes(PASSWORD));
  t.is(checkPassword(PASSWORD, { email: `person-${crypto.randomUUID()}@example.com`, name: 'Ada Lovelace' }), undefined);
});

test('one run of repeated or consecutive characters is refused, at any length', (t) => {
  for (const password of ['aaaaaaaaaa', 'abcabcabcabc', '1212121212', 'abcdefghijk', '9876543210', 'ZYXWVUTSR']) {
    t.is(reasonOf(password), 'pattern', password);
  }
  t.is(checkPassword('abcdefgh1'), undefined, 'not one run');
});

test('a password that contains the email\'s local part, a piece of it, or a word of the name is refused', (t) => {
  const context = { email: 'Ada.Lovelace@example.com', name: 'Augusta Ada King' };
  t.is(reasonOf('ada.lovelace1815', context), 'personal');
  t.is(reasonOf('my LOVELACE password', context), 'personal', 'a piece of the local part, in any case');
  t.is(reasonOf('augusta in the garden', context), 'personal', 'a word of the name');
  t.is(checkPassword('my LOVELACE password', context)!.message, 'the password must not contain your email address or your name');
  t.is(reasonOf('grace.hopper+work!', { email: 'grace.hopper+work@example.com' }), 'personal');
  // Three characters or fewer are syllables of too many good passphrases to refuse wherever they appear,
  // but not with only digits and symbols, a common password or one run around them.
  t.is(checkPassword('bobsleigh champion', { email: 'bob@example.com' }), undefined);
  t.is(checkPassword('adamant shoreline', context), undefined);
  for (const password of ['bob12345678', 'BOB2026!!', '!!bob!!2026', 'bobpassword', 'bobaaaaaaaa']) {
    t.is(reasonOf(password, { email: 'bob@example.com' }), 'personal', password);
  }
  t.is(reasonOf('1815ada1815', context), 'personal', 'a short word of the name alike');
});

test('no composition rules: a long lower-case passphrase without digits or symbols is accepted', (t) => {
  t.is(checkPassword('the quick lazy dog sleeps'), undefined);
  t.is(checkPassword('correcthorsebatterystaple'), undefined);
});

// The rest uses a real database (PostgreSQL when DATABASE_URL is set, else the embedded one).

const WEAKER: PasswordHashingOptions = { memoryCost: 8192, timeCost: 1, parallelism: 1 };
const STRONGER: PasswordHashingOptions = loadConfig({ ARGON2_MEMORY_KIB: '24576', ARGON2_TIME_COST: '3', ARGON2_PARALLELISM: '2' }).argon2;

let testDatabase: TestDatabase;
let database: Database;

test.before(async () => {
  testDatabase = await createTestDatabase();
  database = await openDatabase({ databaseUrl: testDatabase.databaseUrl, dataDir: testDatabase.dataDir });
  await migrate(database.connectionString);
});

test.after.always(async () => {
  await database?.close();
  await testDatabase?.drop();
});

// One random piece of 16 hex digits: the policy refuses passwords containing a piece of the address, and a UUID's
// 4-digit pieces can be aaaa (once in CI, 'aaaaaaaaaaaaaaaa' was refused as personal rather than repeated).
const uniqueEmail = () => `person-${randomBytes(8).toString('hex')}@example.com`;

function hashParameters(hash: string): Record<string, number> {
  const parameters = /^\$argon2id\$v=19\$([^$]+)\$/.exec(hash)?.[1];
  if (!parameters) throw new Error('not an argon2id hash');
  return Object.fromEntries(parameters.split(',').map((pair) => pair.split('=')).map(([key, value]) => [key!, Number(value)]));
}

async function storedHash(email: string): Promise<string> {
  const user = await database.prisma.user.findUniqueOrThrow({ where: { email }, select: { passwordHash: true } });
  return user.passwordHash;
}

test.serial('UserService.create applies the policy and its configured minimum, and stores nothing it refused', async (t) => {
  const users = new UserService(database.prisma, new PasswordHasher(WEAKER), { passwordPolicy: { minimumLength: 12 } });
  const cases: Array<[password: string, message: RegExp]> = [
    [passwordOfLength(11), /^the password must have between 12 and 256 characters$/],
    ['Password1234', /common or breached/],
    ['aaaaaaaaaaaaaaaa', /repeated or consecutive/],
  ];
  for (const [password, message] of cases) {
    const email = uniqueEmail();
    const error = await t.throwsAsync(users.create({ email, password }), { instanceOf: AccountError, message });
    t.is(error?.code, 'weak_password');
    t.is(await database.prisma.user.count({ where: { email } }), 0);
  }
  await t.throwsAsync(users.create({ email: 'margaret.hamilton@example.com', password: 'hamilton apollo eleven' }), {
    instanceOf: AccountError, message: /email address or your name/,
  });
  await t.throwsAsync(users.create({ email: uniqueEmail(), password: 'sir tim berners-lee', name: 'Tim Berners-Lee' }), {
    instanceOf: AccountError, message: /email address or your name/,
  });
  const created = await users.create({ email: uniqueEmail(), password: 'the quick lazy dog sleeps' });
  t.truthy(created.id);
});

test.serial('a password typed with a composed or a decomposed é signs in either way', async (t) => {
  const users = new UserService(database.prisma, new PasswordHasher(WEAKER));
  const composed = 'caf\u00e9 au lait, s\u00e9rieux';
  const decomposed = composed.normalize('NFD');
  t.not(composed, decomposed);
  const first = uniqueEmail();
  await users.create({ email: first, password: composed });
  t.true((await users.checkCredentials(first, decomposed)).ok);
  t.true((await users.checkCredentials(first, composed)).ok);
  const second = uniqueEmail();
  await users.create({ email: second, password: decomposed });
  t.true((await users.checkCredentials(second, composed)).ok);
  t.false((await users.checkCredentials(second, 'cafe au lait, serieux')).ok, 'the accent still matters');
});

test.serial('a hash made with weaker argon2id settings is redone with the configured ones at the next sign-in', async (t) => {
  const email = uniqueEmail();
  const before = new UserService(database.prisma, new PasswordHasher(WEAKER));
  await before.create({ email, password: PASSWORD });
  const weakHash = await storedHash(email);
  t.deepEqual(hashParameters(weakHash), { m: 8192, t: 1, p: 1 });

  const after = new UserService(database.prisma, new PasswordHasher(STRONGER));
  t.false((await after.checkCredentials(email, 'wrong password entirely')).ok);
  t.is(await storedHash(email), weakHash, 'a failed sign-in changes nothing');

  t.like(await after.checkCredentials(email, PASSWORD), { ok: true, user: { email } });
  const upgradedHash = await storedHash(email);
  t.deepEqual(hashParameters(upgradedHash), { m: 24576, t: 3, p: 2 });
  t.false(new PasswordHasher(STRONGER).needsRehash(upgradedHash));

  t.like(await after.checkCredentials(email, PASSWORD), { ok: true, user: { email } }, 'the password still works');
  t.is(await storedHash(email), upgradedHash, 'an up-to-date hash is left alone');
  t.false((await after.checkCredentials(email, 'wrong password entirely')).ok);
});

test('an argon2i hash with today\'s settings is still redone as argon2id', async (t) => {
  const hasher = new PasswordHasher(STRONGER);
  const argon2i = await argon2.hash(PASSWORD, { type: argon2.argon2i, memoryCost: 24576, timeCost: 3, parallelism: 2 });
  t.true(hasher.needsRehash(argon2i));
  t.false(hasher.needsRehash(await hasher.hash(PASSWORD)));
});
