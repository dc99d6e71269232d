// The composition root: opens the database and the store, loads keys, and wires the services the
// server, the CLI and the tests share. Everything is passed in; nothing is a hidden singleton.
import type Provider from 'oidc-provider';
import type { ClientMetadata as EngineClientMetadata } from 'oidc-provider';
import type { Logger } from 'pino';
import type { Config } from './config/index.ts';
import { openDatabase, type Database } from './db/index.ts';
import { migrate } from './db/migrate.ts';
import { createStore } from './store/index.ts';
import { refuseForgetfulStore } from './operations/deployment-check.ts';
import { Metrics } from './operations/metrics.ts';
import { logProtocol } from './oidc/protocol-log.ts';
import { UnansweredGrants } from './oidc/unanswered-grants.ts';
import { refreshTokenGracePeriod } from './oidc/refresh-grace.ts';
import type { Store } from './store/store.ts';
import { PasswordHasher } from './accounts/passwords.ts';
import { ACCOUNT_CHANGES_CHANNEL, UserService, type TokenHolder } from './accounts/users.ts';
import { AccountTokens } from './accounts/account-tokens.ts';
import { SecondFactorService } from './accounts/second-factor.ts';
import { ConsentService } from './accounts/consents.ts';
import { Sealer } from './keys/sealed.ts';
import { ClientError, ClientService } from './clients/clients.ts';
import { API_CHANGES_CHANNEL, ApiService, type Api } from './apis/apis.ts';
import { AnnouncedCache } from './store/announced-cache.ts';
import { ClientCache } from './clients/client-cache.ts';
import { SIGNING_ALGORITHMS, loadSecrets, signingAlgorithmsOf, type Secrets } from './keys/secrets.ts';
import { SigningKeyService } from './keys/signing-keys.ts';
import { SigningKeyRing } from './keys/key-ring.ts';
import { createProvider } from './oidc/provider.ts';
import { clientMetadataRefusal } from './oidc/errors.ts';
import { JwtAccessTokens } from './oidc/jwt-access-tokens.ts';
import { InitialAccessTokens } from './oidc/initial-access-tokens.ts';
import { refusePeopleScopesForServices, serviceScopesOnly } from './oidc/service-scopes.ts';
import { apiScopesOf } from './oidc/resource-servers.ts';
import { Engine, aroundGrant } from './oidc/engine-internals.ts';
import { createViews, type Views } from './web/kit/views.ts';
import { enginePages } from './web/kit/engine-pages.ts';
import { createMailer, type Mailer } from './mail/mailer.ts';
import { MailQueue, type MailQueueTimings } from './mail/queue.ts';
import type { QueueTimings } from './store/durable-queue.ts';
import { LogoutNotices } from './oidc/logout-notices.ts';
import { AfterResponseWork } from './web/kit/after-response.ts';
import { createLimits, type Limits } from './limits/index.ts';
import { AuditTrail } from './audit/audit.ts';
import { AuditRetention } from './audit/retention.ts';
import { auditProtocolEvents } from './audit/protocol-events.ts';
import { AccountSessions } from './oidc/account-sessions.ts';
import { systemClock, type Clock } from './clock.ts';
import { accountLinks, pathTo } from './web/paths.ts';
import { inWords } from './web/kit/in-words.ts';
import { tokenEndpointLimits } from './oidc/token-limits.ts';
import type { AccountFlows } from './accounts/flows/index.ts';
import { createPasswordResetFlow } from './accounts/flows/password-reset.ts';
import { createPasswordChangeFlow } from './accounts/flows/password-change.ts';
import { createEmailChangeFlow } from './accounts/flows/email-change.ts';
import { createSecondFactorResetFlow } from './accounts/flows/second-factor-reset.ts';
import { createAccountAdministrationFlow } from './accounts/flows/account-administration.ts';
import { createRoleAssignmentFlow } from './accounts/flows/role-assignment.ts';
import { RoleService } from './apis/roles.ts';
import { adminApiIdentifier, ensureAdminApi } from './apis/admin-api.ts';
import { createSecondFactorSettingsFlow } from './accounts/flows/second-factor-settings.ts';
import { createEmailVerificationFlow } from './accounts/flows/email-verification.ts';
import { createSignUpFlow } from './accounts/flows/sign-up.ts';
import { createSignInFlow } from './accounts/flows/sign-in.ts';
import { createReauthenticationFlow } from './accounts/flows/reauthentication.ts';
import { createApplicationAccessFlow } from './accounts/flows/application-access.ts';
import { secondFactorDecision } from './oidc/assurance.ts';

export interface Runtime {
  config: Config;
  logger: Logger;
  /** What /metrics shows; the services report into it. */
  metrics: Metrics;
  database: Database;
  store: Store;
  secrets: Secrets;
  /** The keys that sign tokens now, following their rotation: `signingKeys.rotate(actor)`, `signingKeys.list()`. */
  signingKeys: SigningKeyRing;
  views: Views;
  users: UserService;
  clients: ClientService;
  /** APIs (resource servers) that accept Gatehouse's access tokens, by resource indicator. */
  apis: ApiService;
  /** Roles, and the API scopes each permits the people given it. */
  roles: RoleService;
  /** Security events: `auditTrail.record({ action: 'login.failed', outcome: 'failure', subjectEmail, ip, userAgent, clientId })`. */
  auditTrail: AuditTrail;
  /** Deletes audit events older than AUDIT_RETENTION_DAYS, at start and hourly (not for one-shot commands). */
  auditRetention: AuditRetention;
  provider: Provider;
  /** What opens dynamic client registration (RFC 7591): `initialAccessTokens.issue({ uses, expiresInSeconds })`. */
  initialAccessTokens: InitialAccessTokens;
  /** JWT access tokens (RFC 9068): checked with Gatehouse's keys and its revocation lists. */
  jwtAccessTokens: JwtAccessTokens;
  /** What Gatehouse does with the engine beyond configuring it: sessions, interactions, grants (src/oidc/engine-internals.ts). */
  engine: Engine;
  /** Rate limits and login lockout (their counters live in the store's Redis, or in this process). */
  limits: Limits;
  /** Email for callers that must know it went out now: `mailer.send({ to, template: 'verify-email', data: { link, expiresInMinutes } })`. */
  mailer: Mailer;
  /** Email sent after the response (links, notices): `mailQueue.deliver(message)` sends it now or, while SMTP is down, later. */
  mailQueue: MailQueue;
  /** Applications told that a session ended (back-channel, queued; front-channel URLs): `deliveries.idle()` awaits those under way. */
  logoutNotices: LogoutNotices;
  /** Work started after a response (mail, audit records): `afterResponseWork.run(ctx, what, work)`; `settled()` awaits it. */
  afterResponseWork: AfterResponseWork;
  /** A person's sessions and grants: list, end one, end all (sign out everywhere, password reset). */
  accountSessions: AccountSessions;
  /** Single-use emailed links (verify email, reset password, change email): `issue`, `redeem`, `peek`. */
  accountTokens: AccountTokens;
  /** What people allowed each application, remembered across sign-outs until withdrawn. */
  consents: ConsentService;
  /** TOTP and recovery codes: enroll, confirm, verify at login, regenerate codes, disable. */
  secondFactor: SecondFactorService;
  /** The account workflows (src/accounts/flows/), the same for every door: web pages, the CLI, the admin API. */
  flows: AccountFlows;
  close(): Promise<void>;
}


export interface RuntimeOptions {
  /** Retry timings of queued mail; tests shorten them, production keeps the defaults. */
  mailQueue?: Partial<MailQueueTimings>;
  /** Retry timings of queued back-channel logout notices; tests shorten them. */
  logoutNotices?: Partial<QueueTimings>;
  /** Time between the audit trail's retention passes; tests shorten it. Default an hour. */
  auditRetentionIntervalMs?: number;
  /**
   * For a command that does one thing and exits (the CLI): clients are not cached (so nothing listens for
   * changes to them; changes it makes are still announced), and the mail and logout-notice queues make no
   * passes of their own (what they could not deliver at once is retried by the servers sharing the store).
   */
  oneShot?: boolean;
  /** Limits of the caller's making (a test whose limits' Redis goes down); closed with the runtime. */
  limits?: Limits;
  /** Where the flows read the time (tests pass a fixed one). Default: the system clock. */
  clock?: Clock;
}

export async function openRuntime(config: Config, logger: Logger, options: RuntimeOptions = {}): Promise<Runtime> {
  // Keys first: a refused key (KeyError) stops the start before any database is opened or migrated.
  const secrets = await loadSecrets(config);
  const metrics = new Metrics({ processMetrics: !options.oneShot });
  const store = createStore({
    redis: config.redis, prefix: config.storePrefix, onError: logEachNewMessage(logger, 'store connection error'),
    observe: (outcome, seconds) => metrics.dependencyCalled('store', outcome, seconds),
  });
  const limits = options.limits ?? createLimits(
    config, logEachNewMessage(logger, 'rate-limit store connection error'), (name) => metrics.rateLimited(name),
    (outcome, seconds) => metrics.dependencyCalled('rate_limits', outcome, seconds),
  );
  let database: Database | undefined;
  let signingKeys: SigningKeyRing | undefined;
  try {
    database = await openDatabase({
      databaseUrl: config.databaseUrl, dataDir: config.dataDir, observe: (outcome, seconds) => metrics.dependencyCalled('database', outcome, seconds),
    });
    const applied = await migrate(database.connectionString);
    if (applied.length) logger.info({ migrations: applied }, 'database migrated');
    await refuseForgetfulStore(config, store);
    const views = createViews({ cache: config.mode === 'production' });
    const mailer = createMailer(config, logger);
    const sealer = new Sealer(secrets.encryptionKeys);
    const mailQueue = new MailQueue({ store, sealer, mailer, logger, timings: options.mailQueue });
    const afterResponseWork = new AfterResponseWork(logger);
    // Every instance sharing the store hears of account changes, as of client changes (below). Kept only on a shared
    // store: on the in-process one, a change made by the CLI (another process) could not be heard of, and a person
    // disabled there must lose their tokens at once.
    const tokenHolders = new AnnouncedCache<TokenHolder>(store, {
      channel: ACCOUNT_CHANGES_CHANNEL, maxAgeMs: options.oneShot || !config.redis ? 0 : config.clientCacheTtl * 1000, maxEntries: 10_000, maxUnknownKeys: 1_000,
      onAnnounceFailure: (error, accountId) => logger.warn({ err: error, accountId }, 'account changed, but other instances could not be told: they use the change when their cached copy expires'),
    });
    const users = new UserService(database.prisma, new PasswordHasher(config.argon2), { passwordPolicy: config.passwordPolicy, tokenHolders });
    const auditTrail = new AuditTrail(database.prisma, logger, {
      accountIdOf: async (email) => (await users.findByEmail(email))?.id, onRecorded: (action, outcome) => metrics.audited(action, outcome),
    });
    // Every instance sharing the store hears of client changes (the CLI's too, when the store is Redis).
    const clientCache = new ClientCache(store, {
      maxAgeMs: options.oneShot ? 0 : config.clientCacheTtl * 1000,
      onAnnounceFailure: (error, clientId) => logger.warn(
        { err: error, clientId, clientCacheTtl: config.clientCacheTtl },
        'client changed, but other instances could not be told: they use the change when their cached copy expires',
      ),
    });
    // Client registrations are checked by the engine that will read them, built just below.
    const clients = new ClientService(database.prisma, async (metadata) => {
      try {
        await provider.Client.validate(metadata as EngineClientMetadata);
        refusePeopleScopesForServices(metadata);
      } catch (error) {
        // Said as the clients' own refusal, to every door alike.
        const refusal = clientMetadataRefusal(error);
        throw refusal ? new ClientError(refusal) : error;
      }
      const problem = await apis.clientSettingsProblem({
        apiScopes: [...apiScopesOf(metadata)], defaultApi: typeof metadata.default_resource === 'string' ? metadata.default_resource : undefined,
        resourceServer: typeof metadata.resource_server === 'string' ? metadata.resource_server : undefined,
      });
      if (problem) throw new ClientError(problem);
    }, auditTrail, clientCache);
    const apiCache = new AnnouncedCache<Api>(store, {
      channel: API_CHANGES_CHANNEL, maxAgeMs: options.oneShot ? 0 : config.clientCacheTtl * 1000, maxEntries: 1_000, maxUnknownKeys: 1_000,
      onAnnounceFailure: (error, identifier) => logger.warn({ err: error, identifier }, 'API changed, but other instances could not be told: they use the change when their cached copy expires'),
    });
    // Keys kept in the database are one per algorithm.
    const signingAlgorithms = secrets.configuredJwks ? signingAlgorithmsOf(secrets.configuredJwks) : new Set<string>(SIGNING_ALGORITHMS);
    // Before the signing keys, which ask how long the APIs' tokens live.
    const apis = new ApiService(database.prisma, auditTrail, {
      defaultTtlSeconds: config.ttl.accessToken,
      signingAlgorithms,
      builtIn: adminApiIdentifier(config.issuer), httpsOnly: config.mode === 'production', cache: apiCache, clients,
    });
    signingKeys = secrets.configuredJwks ? SigningKeyRing.fixed(secrets.configuredJwks) : await SigningKeyRing.open({
      service: new SigningKeyService(database.prisma, sealer, auditTrail, {
        rotationDelaySeconds: config.keyRotation.delay,
        // ID tokens, and access tokens for APIs (whose lifetime is their own).
        longestTokenLifetimeSeconds: async () => Math.max(config.ttl.idToken, config.ttl.accessToken, await apis.longestAccessTokenTtl()),
        expiredKeysKeptSeconds: config.ttl.session,
      }),
      store, firstKeys: secrets.firstSigningKeys, logger, oneShot: options.oneShot,
      refreshIntervalSeconds: config.keyRotation.refreshInterval, rotationIntervalSeconds: config.keyRotation.interval,
    });
    const roles = new RoleService(database.prisma, auditTrail);
    await ensureAdminApi(config.issuer, apis, roles);
    const consents = new ConsentService(database.prisma);
    const secondFactor = new SecondFactorService(database.prisma, sealer, {
      issuerName: new URL(config.issuer).host,
      requiredRoles: config.accounts.secondFactorRequiredRoles,
    });
    const jwtAccessTokens = new JwtAccessTokens({ issuer: config.issuer, keys: signingKeys, store });
    const initialAccessTokens = new InitialAccessTokens(() => provider, store, auditTrail);
    const unansweredGrants = new UnansweredGrants(store, logger);
    const provider = createProvider({
      config, secrets, signingKeys, signingAlgorithms, jwtAccessTokens, initialAccessTokens, unansweredGrants, jwksMaxAgeSeconds: config.keyRotation.jwksMaxAge, store, users, clients, apis, secondFactor,
      permittedScopes: (roleNames, api) => roles.permittedScopes(roleNames, api), consents, pages: enginePages(views), interactionPath: (uid) => pathTo('interaction', { uid }),
      // Made just below, with the engine it needs; called only once requests come.
      logoutNotices: { sessionEnded: (ended) => logoutNotices.sessionEnded(ended) },
    });
    provider.on('server_error', (ctx, error) => logger.error({ err: error, method: ctx.method, path: ctx.path.slice(0, 200) }, 'protocol endpoint failed'));
    aroundGrant(provider, 'refresh_token', refreshTokenGracePeriod(store, sealer));
    // Outermost: a refresh that failed within the grace period's handling gives its token back too.
    for (const grantType of ['authorization_code', 'refresh_token']) aroundGrant(provider, grantType, unansweredGrants.around);
    auditProtocolEvents(provider, auditTrail);
    logProtocol(provider, logger, metrics);
    const engine = new Engine(provider);
    const logoutNotices = new LogoutNotices({ issuer: config.issuer, engine, store, sealer, auditTrail, logger, timings: options.logoutNotices, clock: options.clock });
    // Token requests are limited per IP and per client, and services get no scopes about people.
    engine.checkTokenRequests([tokenEndpointLimits(limits.rates), serviceScopesOnly]);
    const accountSessions = new AccountSessions(engine, store, auditTrail, users, logoutNotices);
    const accountTokens = new AccountTokens(database.prisma);
    const flows = createAccountFlows({ config, logger, users, accountTokens, secondFactor, consents, accountSessions, auditTrail, mailer, mailQueue, limits, engine, store, roles, clock: options.clock ?? systemClock });
    const opened = database;
    const keys = signingKeys;
    metrics.watchQueue('mail', () => mailQueue.queuedCount());
    metrics.watchQueue('logout_notices', () => logoutNotices.deliveries.queuedCount());
    const auditRetention = new AuditRetention(auditTrail, {
      retentionDays: config.auditRetentionDays, clock: options.clock ?? systemClock, logger, intervalMs: options.auditRetentionIntervalMs,
    });
    if (!options.oneShot) {
      mailQueue.start();
      logoutNotices.deliveries.start();
      auditRetention.start();
    }
    return {
      config, logger, metrics, database, store, secrets, signingKeys, jwtAccessTokens, initialAccessTokens, views, users, clients, apis, roles, auditTrail, auditRetention, provider, engine, limits, mailer, mailQueue, logoutNotices, afterResponseWork, accountSessions, accountTokens, secondFactor, consents, flows,
      async close() {
        // Mail and audit records started after the last responses are handed over before anything closes.
        await afterResponseWork.settled();
        // A message being sent is taken off the queue (or rescheduled) before the store closes.
        await Promise.all([mailQueue.close(), logoutNotices.deliveries.close(), keys.close(), auditRetention.close()]);
        // Audit rows still being written go in before the database closes.
        await auditTrail.flush();
        await Promise.allSettled([store.close(), limits.close(), opened.close(), mailer.close()]);
      },
    };
  } catch (error) {
    await Promise.allSettled([signingKeys?.close(), store.close(), limits.close(), database?.close()]);
    throw error;
  }
}

/** Each flow built once, with only what it uses. */
function createAccountFlows(services: {
  config: Config; logger: Logger; users: UserService; accountTokens: AccountTokens; secondFactor: SecondFactorService; consents: ConsentService;
  accountSessions: AccountSessions; auditTrail: AuditTrail; mailer: Mailer; mailQueue: MailQueue; limits: Limits; engine: Engine; store: Store; clock: Clock;
  roles: RoleService;
}): AccountFlows {
  const { config, logger, users, accountTokens, secondFactor, consents, accountSessions, auditTrail, mailer, mailQueue, limits, engine, store, clock, roles } = services;
  const links = accountLinks(config.issuer);
  const emailVerification = createEmailVerificationFlow({
    users, accountTokens, auditTrail, mail: mailQueue, links, linkTtlSeconds: config.accounts.emailVerificationTtl,
  });
  return {
    signIn: createSignInFlow({
      users, passwordAttempts: limits.login, secondFactor, codeAttempts: limits.secondFactor, store, auditTrail, mail: mailQueue, links, clock,
      unverifiedLoginAllowed: config.accounts.unverifiedLoginAllowed,
      async needsSecondFactor(accountId, clientId, acrValues) {
        const client = await engine.findClient(clientId);
        return (await secondFactorDecision((id) => secondFactor.loginRequirement(id), { accountId, client, acrValues })).required;
      },
      sessionAccount: async (sessionUid) => (await engine.sessionByUid(sessionUid))?.accountId,
    }),
    reauthentication: createReauthenticationFlow({
      users, passwordAttempts: limits.login, auditTrail, checksPerAccount: (accountId) => limits.rates.consume('password-check-account', accountId),
    }),
    passwordReset: createPasswordResetFlow({
      users, accountTokens, secondFactor, accountSessions, loginLockout: limits.login, secondFactorLockout: limits.secondFactor, auditTrail, mail: mailQueue, links, clock,
      linkTtlSeconds: config.accounts.passwordResetTtl,
    }),
    passwordChange: createPasswordChangeFlow({ users, accountTokens, accountSessions, auditTrail, mail: mailQueue, links, clock }),
    emailChange: createEmailChangeFlow({
      users, accountTokens, secondFactor, accountSessions, auditTrail, mail: mailQueue, links, clock, logger,
      confirmTtlSeconds: config.accounts.emailVerificationTtl, undoTtlSeconds: config.accounts.emailChangeUndoTtl, resetTtlSeconds: config.accounts.passwordResetTtl, inWords,
    }),
    secondFactorReset: createSecondFactorResetFlow({ users, secondFactor, accountSessions, auditTrail, mailer, links, clock }),
    accountAdministration: createAccountAdministrationFlow({ users, roleExists: (name) => roles.exists(name), accountSessions, accountTokens, passwordAttempts: limits.login, secondFactorAttempts: limits.secondFactor, auditTrail }),
    roleAssignment: createRoleAssignmentFlow({ users, roles, auditTrail }),
    secondFactorSettings: createSecondFactorSettingsFlow({ secondFactor, store, codeAttempts: limits.secondFactor, auditTrail, mail: mailQueue, links, clock }),
    signUp: createSignUpFlow({ users, emailVerification, auditTrail, mail: mailQueue, links }),
    emailVerification,
    applicationAccess: createApplicationAccessFlow({
      consents, auditTrail, grants: accountSessions,
      applicationName: async (clientId) => {
        const client = await engine.findClient(clientId);
        return client ? (client.clientName ?? clientId) : undefined;
      },
    }),
  };
}

/** A reconnecting client repeats the same error many times a second: log a message once until another comes. */
function logEachNewMessage(logger: Logger, message: string): (error: Error) => void {
  let last: string | undefined;
  return (error) => {
    if (error.message === last) return;
    last = error.message;
    logger.warn({ err: error }, message);
  };
}
