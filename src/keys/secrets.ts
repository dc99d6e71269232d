// Signing keys, cookie secrets and the keys that encrypt secrets at rest. Production takes them from configuration
// (or, for signing keys, from the database: src/keys/signing-keys.ts); development generates them once into keys/
// (git-ignored) so sessions and tokens survive a restart.
import { randomBytes, randomUUID } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { ConfigError, type Config } from '../config/index.ts';

export interface PrivateJwks {
  keys: JWK[];
}

export interface Secrets {
  /** Fixed signing keys set by JWKS or JWKS_FILE; undefined: the database holds them, and rotates them. */
  configuredJwks: PrivateJwks | undefined;
  /** The keys a database without signing keys starts with: in development those generated into keys/, else new ones. */
  firstSigningKeys(): Promise<PrivateJwks>;
  cookieSecrets: string[];
  /** 32-byte keys for encryption at rest (src/keys/sealed.ts), newest first: the first seals, all open. */
  encryptionKeys: Uint8Array[];
  /** True when any of them was generated or read from keys/ rather than configured. */
  development: boolean;
}

/** Secrets that cannot be used as configured: settings to fix, each said in a line (all at once, as ConfigError). */
export class KeyError extends ConfigError {
  override name = 'KeyError';
}

/**
 * Every configured secret that cannot be used (an unreadable or invalid JWKS, a malformed encryption key), all at
 * once and without making or writing any: what a start refuses, and what `gatehouse check` reports.
 */
export async function secretProblems(config: Config): Promise<string[]> {
  const problems: string[] = [];
  const collect = async (check: () => unknown) => {
    try {
      await check();
    } catch (error) {
      if (!(error instanceof KeyError)) throw error;
      problems.push(...error.problems);
    }
  };
  await collect(async () => {
    const configured = config.jwks ?? (config.jwksFile ? await readJwksFile(config.jwksFile) : undefined);
    if (configured) await parseJwks(configured);
  });
  await collect(() => config.encryptionKeys?.forEach(decodeEncryptionKey));
  return problems;
}

export async function loadSecrets(config: Config): Promise<Secrets> {
  const problems = await secretProblems(config);
  if (problems.length) throw new KeyError(problems);
  const configuredJwks = config.jwks ?? (config.jwksFile ? await readJwksFile(config.jwksFile) : undefined);
  const jwks = configuredJwks ? await parseJwks(configuredJwks) : undefined;
  const cookieSecrets = config.cookieSecrets
    ?? await developmentFile(config, 'cookie-secrets.json', async () => [randomBytes(32).toString('base64url')]);
  const encryptionKeys = (config.encryptionKeys
    ?? await developmentFile(config, 'encryption-keys.json', async () => [generateEncryptionKey()])).map(decodeEncryptionKey);
  return {
    configuredJwks: jwks,
    firstSigningKeys: () => (config.mode === 'production' ? generateJwks() : developmentFile(config, 'jwks.json', generateJwks)),
    cookieSecrets,
    encryptionKeys,
    development: (!jwks && config.mode !== 'production') || !config.cookieSecrets || !config.encryptionKeys,
  };
}

/** A new key for ENCRYPTION_KEYS: 32 random bytes, base64url. */
export function generateEncryptionKey(): string {
  return randomBytes(32).toString('base64url');
}

function decodeEncryptionKey(text: string): Uint8Array {
  const key = Buffer.from(text, 'base64url');
  if (key.length !== 32 || key.toString('base64url') !== text) {
    throw new KeyError('ENCRYPTION_KEYS: every key must be 32 random bytes written in base64url (43 characters)');
  }
  return new Uint8Array(key);
}

/** RS256 first (the default ID token algorithm); each is offered for ID tokens and for APIs' access tokens. */
export async function generateJwks(): Promise<PrivateJwks> {
  return { keys: await Promise.all(SIGNING_ALGORITHMS.map(generateSigningKey)) };
}

/** Every algorithm Gatehouse signs with, each with a key of its own. */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** A new private key for one algorithm, with a kid of its own. */
export async function generateSigningKey(alg: SigningAlgorithm): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
  return { ...(await exportJWK(privateKey)), alg, use: 'sig', kid: randomUUID() };
}

const PRIVATE_PARTS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']);

/** The public half of a key, as published. */
export function publicPartOf(key: JWK): JWK {
  return Object.fromEntries(Object.entries(key).filter(([name]) => !PRIVATE_PARTS.has(name))) as JWK;
}

/** The algorithms these keys sign with (an API's tokens may use only these). */
export function signingAlgorithmsOf(jwks: PrivateJwks): Set<string> {
  return new Set(jwks.keys.map((key) => algorithmOf(key)).filter((algorithm) => algorithm !== undefined));
}

export function algorithmOf(key: JWK): string | undefined {
  return ALGORITHM_BY_KEY_TYPE[key.kty === 'EC' || key.kty === 'OKP' ? `${key.kty}:${key.crv}` : String(key.kty)];
}

/** A missing or unreadable file is a setting to fix, said in one line, not a crash. */
async function readJwksFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new KeyError(`JWKS_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** The algorithm each kind of key signs with here: the ID token algorithms Gatehouse offers, and EdDSA for APIs. */
const ALGORITHM_BY_KEY_TYPE: Record<string, string> = { RSA: 'RS256', 'EC:P-256': 'ES256', 'OKP:Ed25519': 'EdDSA' };

async function parseJwks(text: string): Promise<PrivateJwks> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new KeyError('JWKS is not valid JSON');
  }
  const keys = (parsed as PrivateJwks | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new KeyError('JWKS must be a JSON object with a non-empty "keys" array');
  for (const [index, key] of keys.entries()) {
    if (typeof key !== 'object' || !key || !('d' in key)) {
      throw new KeyError('JWKS must hold private keys (each with "d"); the server publishes their public halves');
    }
    const algorithm = algorithmOf(key);
    if (!algorithm || (key.alg !== undefined && key.alg !== algorithm)) {
      throw new KeyError(`JWKS key ${index}: only RSA keys for RS256, P-256 EC keys for ES256 and Ed25519 keys for EdDSA are supported`);
    }
    try {
      await importJWK(key, algorithm);
    } catch (error) {
      throw new KeyError(`JWKS key ${index} is not a usable ${algorithm} key (${(error as Error).message})`);
    }
  }
  if (!keys.some((key) => key.kty === 'RSA')) throw new KeyError('JWKS needs an RSA key: RS256 is the default ID token algorithm');
  // A key without a kid gets the one the engine would give it (its RFC 7638 thumbprint), so that the tokens it signs
  // name a key Gatehouse's own checks (introspection, the admin API) can find too.
  return { keys: await Promise.all(keys.map(async (key) => (key.kid ? key : { ...key, kid: await calculateJwkThumbprint(key) }))) };
}

async function developmentFile<T>(config: Config, name: string, create: () => Promise<T>): Promise<T> {
  if (config.mode === 'production') throw new KeyError(`production refuses generated ${name}`);
  const file = path.join(config.keysDir, name);
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const value = await create();
  await mkdir(config.keysDir, { recursive: true, mode: 0o700 });
  // Written whole under a private name, then linked into place: link() fails if the file exists, so
  // of two first starts the second reads the first one's complete file, never a half-written one.
  const draft = `${file}.${randomUUID()}.draft`;
  await writeFile(draft, JSON.stringify(value, null, 2), { mode: 0o600 });
  try {
    await link(draft, file);
    return value;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } finally {
    await rm(draft, { force: true });
  }
}
