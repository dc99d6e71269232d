// The only reader of process.env: turns the environment into a typed, validated configuration,
// and refuses settings that would be unsafe in production.
import path from 'node:path';
import { z } from 'zod';
import { redisConnectionProblem, type RedisConnection } from './redis-connection.ts';

export type Mode = 'development' | 'production' | 'test';

export interface Config {
  mode: Mode;
  port: number;
  host: string;
  issuer: string;
  /** PostgreSQL connection string; undefined means the embedded PGlite database under dataDir. */
  databaseUrl: string | undefined;
  /** Where Redis is (one server, Sentinels or a cluster); undefined means the in-process store. */
  redis: RedisConnection | undefined;
  /** Prefix for every key this instance writes to the store (lets runs share one Redis). */
  storePrefix: string;
  /** Seconds a client, an API or (on Redis) a person as token requests read them may be served from memory (src/store/announced-cache.ts); 0 turns that off. */
  clientCacheTtl: number;
  dataDir: string;
  keysDir: string;
  /**
   * A private JWK set (JSON) or a file holding one: fixed signing keys, never rotated by Gatehouse. Undefined
   * means the keys live in the database and rotate (src/keys/signing-keys.ts); a development database's first
   * keys are those generated into keysDir.
   */
  jwks: string | undefined;
  jwksFile: string | undefined;
  /** Browser origins allowed to call the admin API (CORS); none by default: admin tools call it from their servers. */
  adminApiCorsOrigins: string[];
  /** Staged rotation of the signing keys kept in the database. */
  keyRotation: KeyRotationTimings;
  /** Secrets that sign cookies, newest first; undefined in development means generate into keysDir. */
  cookieSecrets: string[] | undefined;
  /** Trust X-Forwarded-For and X-Forwarded-Proto from a TLS-terminating proxy. */
  trustProxy: boolean;
  /**
   * How many proxies in front of Gatehouse append to X-Forwarded-For: the client's address is the entry that
   * many places from the right (what a client writes further left is not believed).
   */
  trustedProxyHops: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Days the audit trail keeps an event in the database (its log line is the long-term copy); 0: for ever. */
  auditRetentionDays: number;
  /**
   * Where /metrics is served: on a port of its own (for the scraper's network only), or on the main port to
   * callers presenting the token; neither, not at all.
   */
  metrics: { port: number | undefined; token: string | undefined };
  /** How long a start waits for a database or store that does not answer yet (seconds; 0: not at all). */
  startupWait: number;
  /** Server processes sharing the port (node:cluster); 1: this process serves. */
  workers: number;
  ttl: {
    accessToken: number;
    authorizationCode: number;
    idToken: number;
    refreshToken: number;
    session: number;
    interaction: number;
  };
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
  /** Rate limits and login lockout (src/limits/): each limit allows `points` requests per `seconds`. */
  limits: {
    loginPerIp: RateLimitSetting;
    loginPerAccountAndIp: RateLimitSetting;
    tokenPerClient: RateLimitSetting;
    tokenPerIp: RateLimitSetting;
    /** Requests to the authorization, pushed authorization and logout endpoints per IP: each keeps state until finished or expired. */
    authorizationPerIp: RateLimitSetting;
    signupPerIp: RateLimitSetting;
    /** Sign-ups with one address, from anywhere (each one mails it). */
    signupPerAccount: RateLimitSetting;
    /** Sign-ups with one address from one IP. */
    signupPerAccountAndIp: RateLimitSetting;
    resetPerIp: RateLimitSetting;
    resetPerAccountAndIp: RateLimitSetting;
    /** Reset emails to one address, from anywhere (so many IPs cannot flood one inbox). */
    resetPerAccount: RateLimitSetting;
    /** Follow-ups of emailed links (confirm an address, set a new password, confirm a new address) per IP. */
    emailedLinkPerIp: RateLimitSetting;
    /** Changes of email address one account may ask for (each sends mail to an address it names). */
    emailChangePerAccount: RateLimitSetting;
    verificationResendPerIp: RateLimitSetting;
    verificationResendPerAccount: RateLimitSetting;
    verificationResendPerAccountAndIp: RateLimitSetting;
    secondFactorPerIp: RateLimitSetting;
    secondFactorPerAccountAndIp: RateLimitSetting;
    /** The current password asked again on account pages (change password or email, turn off the second factor). */
    passwordCheckPerAccount: RateLimitSetting;
    /** Requests to the admin API per client address (before the token is looked at). */
    adminApiPerIp: RateLimitSetting;
    /** After `threshold` failed logins for one email, it is locked for `baseSeconds`, doubling each time up to `maxSeconds`. */
    lockout: { threshold: number; baseSeconds: number; maxSeconds: number };
  };
  /** Self-service accounts (src/accounts/): sign-up, emailed links, the second factor. */
  accounts: {
    signupEnabled: boolean;
    /** Whether an account whose email is not verified yet may sign in (its claims say email_verified: false). */
    unverifiedLoginAllowed: boolean;
    /** How long an emailed verification link (sign-up, change of email) stays valid, in seconds. */
    emailVerificationTtl: number;
    passwordResetTtl: number;
    /** How long the link in the notice to the previous address can undo a change of email, in seconds. */
    emailChangeUndoTtl: number;
    /** People with any of these roles must use a second factor. */
    secondFactorRequiredRoles: string[];
  };
  /** Keys (base64url, 32 bytes) that encrypt secrets at rest such as TOTP seeds, newest first; undefined in development means generate into keysDir. */
  encryptionKeys: string[] | undefined;
  /** The password policy's settings (src/accounts/password-policy.ts). */
  passwordPolicy: { minimumLength: number; issuerHost: string };
  /** Outgoing email (src/mail/). Without smtpUrl, development writes each message to outboxDir and the log. */
  mail: { smtpUrl: string | undefined; from: { name: string | undefined; address: string }; outboxDir: string };
}

export interface RateLimitSetting {
  points: number;
  seconds: number;
}

export interface KeyRotationTimings {
  /** Seconds from publishing a new key to its signing: longer than any JWKS cache. */
  delay: number;
  /** Seconds between automatic rotations (counted from the last one); 0: only `npx gatehouse keys rotate`. */
  interval: number;
  /**
   * Seconds a JWKS response may be cached, and between an instance's reads of the keys (in case an announcement
   * was lost): each at most a quarter of the delay, so a new key reaches every cache well before it signs.
   */
  jwksMaxAge: number;
  refreshInterval: number;
}

/** Settings Gatehouse refuses: every one found, so that an operator fixes them all before the next start. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly string[];

  constructor(problems: string | readonly string[]) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('; '));
    this.problems = list;
  }

  /** For a terminal: one problem on the line, several each on a line of its own. */
  describe(): string {
    if (this.problems.length === 1) return this.problems[0]!;
    return `${this.problems.length} settings to fix:\n${this.problems.map((problem) => `  - ${problem}`).join('\n')}`;
  }
}

const booleanString = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
// Digits only: Number() would also take '0x50', '1e3', and ' ' (as 0: a random port).
const wholeNumber = z.string().trim().regex(/^\d+$/, 'must be a whole number').transform(Number);
const seconds = wholeNumber.pipe(z.number().positive());
// A rate limit written as "attempts/seconds", e.g. "10/600": ten per ten minutes.
const rateLimit = z.string().trim().regex(/^\d+\/\d+$/, 'must be attempts/seconds, e.g. 10/600')
  .transform((value) => { const [points, perSeconds] = value.split('/').map(Number); return { points: points!, seconds: perSeconds! }; })
  .refine(({ points, seconds: perSeconds }) => points > 0 && perSeconds > 0, 'attempts and seconds must be positive');
// OpenID Connect issuers are http(s) URLs without query or fragment (the engine builds every endpoint from it).
// "Name <address>" or a bare address, kept apart so that no later parse can read a comma in the name as a second address.
const mailbox = z.string().trim().transform((value, context) => {
  const match = /^(?:(.*?)\s*<([^\s<>@]+@[^\s<>@]+)>|([^\s<>@"]+@[^\s<>@"]+))$/.exec(value);
  if (!match) {
    context.addIssue({ code: 'custom', message: 'must be an email address, or a name and an address: Name <address@example.com>' });
    return z.NEVER;
  }
  const name = match[1]?.replace(/^"(.*)"$/, '$1').trim();
  return { name: name || undefined, address: (match[2] ?? match[3])! };
});
const smtpUrl = z.url({ protocol: /^smtps?$/, error: 'must be an smtp:// or smtps:// URL' })
  .refine((value) => Boolean(URL.parse(value)?.hostname), 'must name the mail server: smtp://host:port');
const issuerUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' })
  .refine((value) => !/[?#]/.test(value), 'must not have a query or a fragment')
  // Every page, endpoint and emailed link is served from the root of the host: under a path, they would all be 404s.
  .refine((value) => ['', '/'].includes(URL.parse(value)?.pathname ?? ''), 'must be an origin without a path, such as https://id.example.com: Gatehouse serves at the root of its host');

/** The longest a JWKS response is cached, and between an instance's reads of the signing keys, whatever the delay. */
const JWKS_MAX_AGE_SECONDS = 300;
const KEY_REFRESH_SECONDS = 60;

const environmentSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: wholeNumber.pipe(z.number().max(65535)).default(3000),
  HOST: z.string().min(1).default('0.0.0.0'),
  ISSUER: issuerUrl.optional(),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL').optional(),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
  REDIS_SENTINEL_MASTER: z.string().regex(/^[\w.-]+$/, 'must be the name of a master the Sentinels monitor').optional(),
  REDIS_SENTINEL_PASSWORD: z.string().optional(),
  REDIS_CLUSTER: booleanString.default(false),
  STORE_PREFIX: z.string().regex(/^[\w:.-]*$/).default('gatehouse:'),
  // The longest a change missed by an instance (or made by the CLI on the embedded store) goes unseen.
  CLIENT_CACHE_TTL: wholeNumber.pipe(z.number().max(300, 'must be at most 300')).default(30),
  DATA_DIR: z.string().default('data'),
  KEYS_DIR: z.string().default('keys'),
  JWKS: z.string().optional(),
  JWKS_FILE: z.string().optional(),
  ADMIN_API_CORS_ORIGINS: z.string().optional(),
  KEY_ROTATION_DELAY: wholeNumber.pipe(z.number().min(4, 'must be at least 4')).default(3600),
  KEY_ROTATION_INTERVAL: wholeNumber.default(90 * 24 * 3600),
  COOKIE_SECRETS: z.string().optional(),
  TRUST_PROXY: booleanString.default(false),
  TRUSTED_PROXY_HOPS: wholeNumber.pipe(z.number().min(1, 'must be at least 1').max(10, 'must be at most 10')).default(1),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  // A year: what PCI DSS asks of an audit trail (10.5.1); the log lines are the copy an archive keeps longer.
  AUDIT_RETENTION_DAYS: wholeNumber.pipe(z.number().max(36_500, 'must be at most 36500 (100 years); 0 keeps events for ever')).default(365),
  STARTUP_WAIT: wholeNumber.default(60),
  WORKERS: wholeNumber.pipe(z.number().min(1, 'must be at least 1').max(64, 'must be at most 64')).default(1),
  METRICS_PORT: wholeNumber.pipe(z.number().min(1).max(65535)).optional(),
  METRICS_TOKEN: z.string().min(32, 'must be at least 32 characters').optional(),
  // At most a day, as an API's own lifetime (MAX_ACCESS_TOKEN_TTL_SECONDS): a revoked JWT's grant is remembered
  // that long (src/oidc/jwt-access-tokens.ts), and a token must not outlive it.
  ACCESS_TOKEN_TTL: seconds.pipe(z.number().max(86_400, 'must be at most 86400 (a day)')).default(600),
  AUTHORIZATION_CODE_TTL: seconds.default(60),
  ID_TOKEN_TTL: seconds.default(3600),
  REFRESH_TOKEN_TTL: seconds.default(30 * 24 * 3600),
  SESSION_TTL: seconds.default(14 * 24 * 3600),
  INTERACTION_TTL: seconds.default(3600),
  ARGON2_MEMORY_KIB: wholeNumber.pipe(z.number().min(19456)).default(19456),
  ARGON2_TIME_COST: wholeNumber.pipe(z.number().min(2)).default(2),
  ARGON2_PARALLELISM: wholeNumber.pipe(z.number().min(1)).default(1),
  LOGIN_LIMIT_PER_IP: rateLimit.default({ points: 100, seconds: 600 }),
  LOGIN_LIMIT_PER_ACCOUNT_IP: rateLimit.default({ points: 10, seconds: 600 }),
  TOKEN_LIMIT_PER_CLIENT: rateLimit.default({ points: 600, seconds: 60 }),
  TOKEN_LIMIT_PER_IP: rateLimit.default({ points: 300, seconds: 60 }),
  AUTHORIZATION_LIMIT_PER_IP: rateLimit.default({ points: 300, seconds: 60 }),
  SIGNUP_LIMIT_PER_IP: rateLimit.default({ points: 10, seconds: 3600 }),
  SIGNUP_LIMIT_PER_ACCOUNT: rateLimit.default({ points: 5, seconds: 3600 }),
  SIGNUP_LIMIT_PER_ACCOUNT_IP: rateLimit.default({ points: 3, seconds: 3600 }),
  RESET_LIMIT_PER_IP: rateLimit.default({ points: 20, seconds: 3600 }),
  RESET_LIMIT_PER_ACCOUNT_IP: rateLimit.default({ points: 5, seconds: 3600 }),
  RESET_LIMIT_PER_ACCOUNT: rateLimit.default({ points: 10, seconds: 3600 }),
  EMAILED_LINK_LIMIT_PER_IP: rateLimit.default({ points: 60, seconds: 600 }),
  EMAIL_CHANGE_LIMIT_PER_ACCOUNT: rateLimit.default({ points: 5, seconds: 3600 }),
  VERIFY_RESEND_LIMIT_PER_IP: rateLimit.default({ points: 20, seconds: 3600 }),
  VERIFY_RESEND_LIMIT_PER_ACCOUNT: rateLimit.default({ points: 5, seconds: 3600 }),
  VERIFY_RESEND_LIMIT_PER_ACCOUNT_IP: rateLimit.default({ points: 3, seconds: 3600 }),
  SECOND_FACTOR_LIMIT_PER_IP: rateLimit.default({ points: 100, seconds: 600 }),
  SECOND_FACTOR_LIMIT_PER_ACCOUNT_IP: rateLimit.default({ points: 10, seconds: 600 }),
  PASSWORD_CHECK_LIMIT_PER_ACCOUNT: rateLimit.default({ points: 10, seconds: 600 }),
  ADMIN_API_LIMIT_PER_IP: rateLimit.default({ points: 600, seconds: 60 }),
  LOGIN_LOCKOUT_THRESHOLD: wholeNumber.pipe(z.number().min(1)).default(5),
  LOGIN_LOCKOUT_SECONDS: seconds.default(60),
  LOGIN_LOCKOUT_MAX_SECONDS: seconds.default(3600),
  // NIST SP 800-63B's floor is 8; a minimum above 64 would refuse what NIST says must be accepted.
  PASSWORD_MIN_LENGTH: wholeNumber.pipe(z.number().min(8, 'must be at least 8').max(64, 'must be at most 64')).default(8),
  SIGNUP_ENABLED: booleanString.default(true),
  UNVERIFIED_LOGIN_ALLOWED: booleanString.default(true),
  EMAIL_VERIFICATION_TTL: seconds.default(24 * 3600),
  PASSWORD_RESET_TTL: seconds.default(30 * 60),
  EMAIL_CHANGE_UNDO_TTL: seconds.default(7 * 24 * 3600),
  SECOND_FACTOR_REQUIRED_ROLES: z.string().default('admin'),
  ENCRYPTION_KEYS: z.string().optional(),
  SMTP_URL: smtpUrl.optional(),
  MAIL_FROM: mailbox.default({ name: 'Gatehouse', address: 'no-reply@localhost' }),
  OUTBOX_DIR: z.string().default('outbox'),
});

/** Reads and validates configuration; throws ConfigError with every reason, production's refusals among them. */
export function loadConfig(environment: NodeJS.ProcessEnv = process.env): Config {
  const { config, refused } = readConfig(environment);
  if (refused.length) throw new ConfigError(refused);
  return config;
}

/**
 * Reads and validates configuration, and says what is refused of it: settings that cannot be read (the rest is read
 * as if they were unset), settings that do not go together, and what production refuses. With a configuration in
 * hand, a start and `gatehouse check` name all of these and the secrets' and dependencies' problems together, not
 * one batch per try.
 */
export function readConfig(environment: NodeJS.ProcessEnv = process.env): { config: Config; refused: string[] } {
  // An empty variable means "not set", as in most deployment tools.
  const present = Object.fromEntries(Object.entries(environment).filter(([, value]) => value !== ''));
  const { env, unreadable } = parseEnvironment(present);
  const cookieSecrets = env.COOKIE_SECRETS ? commaList(env.COOKIE_SECRETS) : undefined;
  const issuer = (env.ISSUER ?? `http://localhost:${env.PORT}`).replace(/\/$/, '');
  const config: Config = {
    mode: env.NODE_ENV,
    port: env.PORT,
    host: env.HOST,
    issuer,
    databaseUrl: env.DATABASE_URL,
    redis: env.REDIS_URL === undefined ? undefined : {
      url: env.REDIS_URL,
      sentinelMaster: env.REDIS_SENTINEL_MASTER,
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
      cluster: env.REDIS_CLUSTER,
    },
    storePrefix: env.STORE_PREFIX,
    clientCacheTtl: env.CLIENT_CACHE_TTL,
    dataDir: path.resolve(env.DATA_DIR),
    keysDir: path.resolve(env.KEYS_DIR),
    jwks: env.JWKS,
    jwksFile: env.JWKS_FILE,
    adminApiCorsOrigins: corsOrigins(env.ADMIN_API_CORS_ORIGINS),
    keyRotation: {
      delay: env.KEY_ROTATION_DELAY,
      interval: env.KEY_ROTATION_INTERVAL,
      jwksMaxAge: Math.min(JWKS_MAX_AGE_SECONDS, Math.floor(env.KEY_ROTATION_DELAY / 4)),
      refreshInterval: Math.min(KEY_REFRESH_SECONDS, Math.floor(env.KEY_ROTATION_DELAY / 4)),
    },
    cookieSecrets: cookieSecrets?.length ? cookieSecrets : undefined,
    trustProxy: env.TRUST_PROXY,
    trustedProxyHops: env.TRUSTED_PROXY_HOPS,
    logLevel: env.LOG_LEVEL,
    auditRetentionDays: env.AUDIT_RETENTION_DAYS,
    metrics: { port: env.METRICS_PORT, token: env.METRICS_TOKEN },
    startupWait: env.STARTUP_WAIT,
    workers: env.WORKERS,
    ttl: {
      accessToken: env.ACCESS_TOKEN_TTL,
      authorizationCode: env.AUTHORIZATION_CODE_TTL,
      idToken: env.ID_TOKEN_TTL,
      refreshToken: env.REFRESH_TOKEN_TTL,
      session: env.SESSION_TTL,
      interaction: env.INTERACTION_TTL,
    },
    argon2: { memoryCost: env.ARGON2_MEMORY_KIB, timeCost: env.ARGON2_TIME_COST, parallelism: env.ARGON2_PARALLELISM },
    limits: {
      loginPerIp: env.LOGIN_LIMIT_PER_IP,
      loginPerAccountAndIp: env.LOGIN_LIMIT_PER_ACCOUNT_IP,
      tokenPerClient: env.TOKEN_LIMIT_PER_CLIENT,
      tokenPerIp: env.TOKEN_LIMIT_PER_IP,
      authorizationPerIp: env.AUTHORIZATION_LIMIT_PER_IP,
      signupPerIp: env.SIGNUP_LIMIT_PER_IP,
      signupPerAccount: env.SIGNUP_LIMIT_PER_ACCOUNT,
      signupPerAccountAndIp: env.SIGNUP_LIMIT_PER_ACCOUNT_IP,
      resetPerIp: env.RESET_LIMIT_PER_IP,
      resetPerAccountAndIp: env.RESET_LIMIT_PER_ACCOUNT_IP,
      resetPerAccount: env.RESET_LIMIT_PER_ACCOUNT,
      emailedLinkPerIp: env.EMAILED_LINK_LIMIT_PER_IP,
      emailChangePerAccount: env.EMAIL_CHANGE_LIMIT_PER_ACCOUNT,
      verificationResendPerIp: env.VERIFY_RESEND_LIMIT_PER_IP,
      verificationResendPerAccount: env.VERIFY_RESEND_LIMIT_PER_ACCOUNT,
      verificationResendPerAccountAndIp: env.VERIFY_RESEND_LIMIT_PER_ACCOUNT_IP,
      secondFactorPerIp: env.SECOND_FACTOR_LIMIT_PER_IP,
      secondFactorPerAccountAndIp: env.SECOND_FACTOR_LIMIT_PER_ACCOUNT_IP,
      passwordCheckPerAccount: env.PASSWORD_CHECK_LIMIT_PER_ACCOUNT,
      adminApiPerIp: env.ADMIN_API_LIMIT_PER_IP,
      lockout: {
        threshold: env.LOGIN_LOCKOUT_THRESHOLD,
        baseSeconds: env.LOGIN_LOCKOUT_SECONDS,
        maxSeconds: Math.max(env.LOGIN_LOCKOUT_MAX_SECONDS, env.LOGIN_LOCKOUT_SECONDS),
      },
    },
    accounts: {
      signupEnabled: env.SIGNUP_ENABLED,
      unverifiedLoginAllowed: env.UNVERIFIED_LOGIN_ALLOWED,
      emailVerificationTtl: env.EMAIL_VERIFICATION_TTL,
      passwordResetTtl: env.PASSWORD_RESET_TTL,
      emailChangeUndoTtl: env.EMAIL_CHANGE_UNDO_TTL,
      secondFactorRequiredRoles: commaList(env.SECOND_FACTOR_REQUIRED_ROLES),
    },
    encryptionKeys: env.ENCRYPTION_KEYS ? commaList(env.ENCRYPTION_KEYS) : undefined,
    passwordPolicy: { minimumLength: env.PASSWORD_MIN_LENGTH, issuerHost: new URL(issuer).hostname },
    mail: { smtpUrl: env.SMTP_URL, from: env.MAIL_FROM, outboxDir: path.resolve(env.OUTBOX_DIR) },
  };
  const mismatched: string[] = [];
  const redisProblem = config.redis
    ? redisConnectionProblem(config.redis)
    : (env.REDIS_SENTINEL_MASTER || env.REDIS_CLUSTER) && 'REDIS_SENTINEL_MASTER and REDIS_CLUSTER need REDIS_URL: the Sentinels or the cluster nodes to start from';
  if (redisProblem) mismatched.push(redisProblem);
  // Each worker would have a store of its own: a session made by one would be unknown to the others.
  if (config.workers > 1 && !config.redis) mismatched.push('WORKERS above 1 needs REDIS_URL: the in-process store is one per process');
  if (config.metrics.port === config.port) mismatched.push('METRICS_PORT must differ from PORT: /metrics gets a listener of its own there');
  return { config, refused: [...unreadable, ...mismatched, ...(config.mode === 'production' ? productionRefusals(config) : [])] };
}

/** The environment as the schema reads it, with what it cannot read said and left unset (so its default applies). */
function parseEnvironment(present: Record<string, string | undefined>): { env: z.output<typeof environmentSchema>; unreadable: string[] } {
  const parsed = environmentSchema.safeParse(present);
  if (parsed.success) return { env: parsed.data, unreadable: [] };
  const unreadable = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
  const unreadableNames = new Set(parsed.error.issues.map((issue) => String(issue.path[0])));
  const readable = Object.fromEntries(Object.entries(present).filter(([name]) => !unreadableNames.has(name)));
  // A NODE_ENV that cannot be read (NODE_ENV=Production) is read as the strictest, so that production's refusals are said too.
  const rest = environmentSchema.safeParse(unreadableNames.has('NODE_ENV') ? { ...readable, NODE_ENV: 'production' } : readable);
  // Not readable even without them (a problem between settings, say): nothing more can be said.
  if (!rest.success) throw new ConfigError(unreadable);
  return { env: rest.data, unreadable };
}

/** Seconds: a production key signs for a day at least (KEY_ROTATION_INTERVAL). */
const MIN_PRODUCTION_ROTATION_INTERVAL = 86_400;

/** What production refuses of a configuration: every missing or unsafe setting. */
function productionRefusals(config: Config): string[] {
  const problems: string[] = [];
  const refuse = (problem: string): void => void problems.push(problem);
  if (!config.databaseUrl) refuse('production needs DATABASE_URL: the embedded database is for development');
  if (!config.redis) refuse('production needs REDIS_URL: the in-process store is for development');
  if (!config.cookieSecrets) refuse('production needs COOKIE_SECRETS (comma-separated, 32+ characters each)');
  else if (config.cookieSecrets.some((secret) => secret.length < 32)) refuse('COOKIE_SECRETS: every secret must be at least 32 characters');
  if (!config.encryptionKeys) refuse('production needs ENCRYPTION_KEYS (comma-separated; each 32 random bytes, base64url, e.g. from `npx gatehouse keys encryption`)');
  if (!config.issuer.startsWith('https://')) refuse('production needs an https:// ISSUER');
  // Node serves plain HTTP here, so TLS ends at a proxy; without trusting it, cookies lose their Secure flag.
  if (!config.trustProxy) refuse('production needs TRUST_PROXY=true: TLS is terminated by a proxy in front of Gatehouse');
  // Sign-up, verification and reset links go out by email: without a mail server people would be stuck.
  if (!config.mail.smtpUrl) refuse('production needs SMTP_URL: verification and password-reset links are sent by email');
  // Receiving servers refuse mail from a domain that is not real (SPF, DMARC).
  if (/@localhost$/i.test(config.mail.from.address)) refuse('production needs MAIL_FROM: an address at your own domain, e.g. Gatehouse <no-reply@example.com>');
  // Each rotation adds keys that the JWKS publishes, and every API fetches, until the tokens they signed expire.
  if (config.keyRotation.interval > 0 && config.keyRotation.interval < MIN_PRODUCTION_ROTATION_INTERVAL) {
    refuse(`KEY_ROTATION_INTERVAL must be 0 (rotation by command only) or at least ${MIN_PRODUCTION_ROTATION_INTERVAL} (a day) in production: every rotation adds signing keys that stay published until the tokens they signed expire`);
  }
  return problems;
}

/** ADMIN_API_CORS_ORIGINS: origins only (scheme, host, port), https or on the loopback interface. */
function corsOrigins(value: string | undefined): string[] {
  const origins = value ? commaList(value) : [];
  for (const origin of origins) {
    const url = URL.parse(origin);
    const loopback = url && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
    if (!url || url.origin !== origin || (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))) {
      throw new ConfigError(`ADMIN_API_CORS_ORIGINS: ${origin} is not an origin such as https://admin.example.com (https, or http on the loopback interface; no path)`);
    }
  }
  return origins;
}

/** "a, b,,c" → ['a', 'b', 'c']. */
function commaList(value: string): string[] {
  return value.split(',').map((item) => item.trim()).filter(Boolean);
}
