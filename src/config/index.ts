// The only reader of process.env: turns the environment into a typed, validated configuration,
// and refuses settings that would be unsafe in production.
import path from 'node:path';
import { z } from 'zod';

export type Mode = 'development' | 'production' | 'test';

export interface Config {
  mode: Mode;
  port: number;
  host: string;
  issuer: string;
  /** PostgreSQL connection string; undefined means the embedded PGlite database under dataDir. */
  databaseUrl: string | undefined;
  /** Redis connection string; undefined means the in-process store. */
  redisUrl: string | undefined;
  /** Prefix for every key this instance writes to the store (lets runs share one Redis). */
  storePrefix: string;
  dataDir: string;
  keysDir: string;
  /** A private JWK set (JSON) or a file holding one; undefined in development means generate into keysDir. */
  jwks: string | undefined;
  jwksFile: string | undefined;
  /** Secrets that sign cookies, newest first; undefined in development means generate into keysDir. */
  cookieSecrets: string[] | undefined;
  /** Trust X-Forwarded-* from a TLS-terminating proxy. */
  trustProxy: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  ttl: {
    accessToken: number;
    authorizationCode: number;
    idToken: number;
    refreshToken: number;
    session: number;
    interaction: number;
  };
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const booleanString = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
// Digits only: Number() would also take '0x50', '1e3', and ' ' (as 0: a random port).
const wholeNumber = z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number);
const seconds = wholeNumber.pipe(z.number().positive());
// OpenID Connect issuers are http(s) URLs without query or fragment (the engine builds every endpoint from it).
const issuerUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .refine((value) => !/[?#]/.test(value), 'must not have a query or a fragment');

const environmentSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: wholeNumber.pipe(z.number().max(65535)).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  ISSUER: issuerUrl.optional(),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL').optional(),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  STORE_PREFIX: z.string().regex(/^[\w:.-]*$/).default('gatehouse:'),
  DATA_DIR: z.string().default('data'),
  KEYS_DIR: z.string().default('keys'),
  JWKS: z.string().optional(),
  JWKS_FILE: z.string().optional(),
  COOKIE_SECRETS: z.string().optional(),
  TRUST_PROXY: booleanString.default(false),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  ACCESS_TOKEN_TTL: seconds.default(600),
  AUTHORIZATION_CODE_TTL: seconds.default(60),
  ID_TOKEN_TTL: seconds.default(3600),
  REFRESH_TOKEN_TTL: seconds.default(30 * 24 * 3600),
  SESSION_TTL: seconds.default(14 * 24 * 3600),
  INTERACTION_TTL: seconds.default(3600),
  ARGON2_MEMORY_KIB: wholeNumber.pipe(z.number().min(19456)).default(19456),
  ARGON2_TIME_COST: wholeNumber.pipe(z.number().min(2)).default(2),
  ARGON2_PARALLELISM: wholeNumber.pipe(z.number().min(1)).default(1),
});

/** Reads and validates configuration; throws ConfigError with a one-line reason. */
export function loadConfig(environment: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "not set", as in most deployment tools.
  const present = Object.fromEntries(Object.entries(environment).filter(([, value]) => value !== ''));
  const parsed = environmentSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`${issue.path.join('.')}: ${issue.message}`);
  }
  const env = parsed.data;
  const cookieSecrets = env.COOKIE_SECRETS?.split(',').map((secret) => secret.trim()).filter(Boolean);
  const config: Config = {
    mode: env.NODE_ENV,
    port: env.PORT,
    host: env.HOST,
    issuer: (env.ISSUER ?? `http://localhost:${env.PORT}`).replace(/\/$/, ''),
    databaseUrl: env.DATABASE_URL,
    redisUrl: env.REDIS_URL,
    storePrefix: env.STORE_PREFIX,
    dataDir: path.resolve(env.DATA_DIR),
    keysDir: path.resolve(env.KEYS_DIR),
    jwks: env.JWKS,
    jwksFile: env.JWKS_FILE,
    cookieSecrets: cookieSecrets?.length ? cookieSecrets : undefined,
    trustProxy: env.TRUST_PROXY,
    logLevel: env.LOG_LEVEL,
    ttl: {
      accessToken: env.ACCESS_TOKEN_TTL,
      authorizationCode: env.AUTHORIZATION_CODE_TTL,
      idToken: env.ID_TOKEN_TTL,
      refreshToken: env.REFRESH_TOKEN_TTL,
      session: env.SESSION_TTL,
      interaction: env.INTERACTION_TTL,
    },
    argon2: { memoryCost: env.ARGON2_MEMORY_KIB, timeCost: env.ARGON2_TIME_COST, parallelism: env.ARGON2_PARALLELISM },
  };
  if (config.mode === 'production') refuseUnsafeProduction(config);
  return config;
}

function refuseUnsafeProduction(config: Config): void {
  if (!config.databaseUrl) throw new ConfigError('production needs DATABASE_URL: the embedded database is for development');
  if (!config.redisUrl) throw new ConfigError('production needs REDIS_URL: the in-process store is for development');
  if (!config.jwks && !config.jwksFile) throw new ConfigError('production needs JWKS or JWKS_FILE: development keys are refused');
  if (!config.cookieSecrets) throw new ConfigError('production needs COOKIE_SECRETS (comma-separated, 32+ characters each)');
  if (config.cookieSecrets.some((secret) => secret.length < 32)) {
    throw new ConfigError('COOKIE_SECRETS: every secret must be at least 32 characters');
  }
  if (!config.issuer.startsWith('https://')) throw new ConfigError('production needs an https:// ISSUER');
  // Node serves plain HTTP here, so TLS ends at a proxy; without trusting it, cookies lose their Secure flag.
  if (!config.trustProxy) throw new ConfigError('production needs TRUST_PROXY=true: TLS is terminated by a proxy in front of Gatehouse');
}
