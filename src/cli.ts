// The `gatehouse` command: database migrations, users, clients and the audit trail. It calls the same services as the
// server, on the same database (the embedded one by default, shared with a running server).
import { userInfo } from 'node:os';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, loadConfig } from './config/index.ts';
import { createLogger } from './logger.ts';
import { openRuntime, type Runtime } from './runtime.ts';
import { openDatabase } from './db/index.ts';
import { migrate } from './db/migrate.ts';
import { checkDeployment } from './operations/deployment-check.ts';
import { AccountError } from './accounts/users.ts';
import { CLIENT_TYPES, ClientError, SECRET_AUTH_METHODS, clientTypeOf, withoutSecret, type ClientMetadata, type ClientType, type SecretAuthMethod } from './clients/clients.ts';
import { KeyError, SIGNING_ALGORITHMS, generateEncryptionKey, generateJwks, secretProblems, type SigningAlgorithm } from './keys/secrets.ts';
import { KeyRotationError } from './keys/signing-keys.ts';
import { MAX_INITIAL_ACCESS_TOKEN_SECONDS, MAX_INITIAL_ACCESS_TOKEN_USES } from './oidc/initial-access-tokens.ts';
import { DependencyUnavailable } from './errors.ts';
import { formatJsonLines, formatTable, parseSince } from './audit/report.ts';
import { textTable } from './text-table.ts';
import { ROLE_NAME, RoleError } from './apis/roles.ts';
import { ACCESS_TOKEN_FORMATS, ApiError, type AccessTokenFormat, type ApiChanges } from './apis/apis.ts';
import { scopesAboutPeople } from './oidc/scopes.ts';

/** Says what a command on the in-process store (no REDIS_URL) cannot reach of a running server's: `what` it keeps. */
function outOfReach(what: string, consequence = ''): void {
  process.stderr.write(`gatehouse: the store is in-process (no REDIS_URL): a running server keeps ${what} in its own memory, out of this command's reach${consequence}\n`);
}

/** Initial access tokens live in the store: on the in-process one, this command cannot reach the server's. */
const IN_PROCESS_TOKENS = 'initial access tokens live in the store, and the store is in-process (no REDIS_URL): ask the running server, through the admin API (/admin/v1/initial-access-tokens)';

const USAGE = `Usage: gatehouse <command> [options]

Commands:
  migrate [--json]                      apply pending database migrations
  check [--json]                        check the settings (every refused one at once,
                                        as a production start would), that the database
                                        and the store answer and, in production, that
                                        Redis keeps what it holds; exit status 1 if not
  users create --email E (--password P | --password-stdin) [--name N] [--verified]
               [--role R]...
                                        create a user (--password-stdin keeps the
                                        password out of the process list and history);
                                        a role in SECOND_FACTOR_REQUIRED_ROLES (admin by
                                        default) makes two-factor authentication mandatory
  users list [--email E] [--name N] [--role R] [--disabled|--enabled] [--json]
                                        list the accounts, oldest first (E and N: part of
                                        the address or name)
  users show --email E                  print an account as JSON
  users update --email E [--name N] [--verified true|false]
                                        change a name, or whether the address counts as
                                        verified
  users delete --email E [--json]       delete an account: its sessions end, its grants
                                        are revoked (applications are told), then it goes
                                        with its links and second factor
  users unlock --email E [--json]       lift the sign-in lockouts, of the password and of
                                        the second factor: failed attempts are forgotten
  users sessions --email E [--json]     list where the person is signed in
  users end-sessions --email E [--session ID] [--json]
                                        end one session, or all of them (sign out
                                        everywhere); applications are told
  users applications --email E [--json]
                                        list the applications the person allowed, and
                                        what each may have
  users withdraw-access --email E --client-id C [--json]
                                        withdraw an application's access: it asks for
                                        consent again; its grants and tokens are revoked
  users password-reset --email E [--json]
                                        email the person a link to set a new password
  users reset-second-factor --email E [--json]
                                        turn off the two-factor authentication of the
                                        person with email E (lost phone and recovery
                                        codes): their authenticator and recovery codes
                                        are forgotten, they are told by email, every
                                        session of theirs is ended and every grant revoked
                                        (as "sign out everywhere" does), and they sign in
                                        with their password alone until they set it up
                                        again
  users disable --email E [--json]      disable the account with email E: it can no longer
                                        sign in, every session of theirs is ended and every
                                        grant revoked, and their tokens stop working at once
  users enable --email E [--json]       let a disabled account sign in again
  clients create --name N --type spa|web|native|service [--redirect-uri U]...
                 [--post-logout-redirect-uri U]... [--scope S]
                 [--require-second-factor] [--first-party]
                 [--token-endpoint-auth-method client_secret_basic|client_secret_post]
                 [--backchannel-logout-uri U] [--frontchannel-logout-uri U] [--default-api URL]
                 [--resource-server URL] [--refresh-token-grace-period SECONDS]
                                        register a client and print it as JSON (native:
                                        an installed app, redirects to com.example.app:/…,
                                        a claimed https URI, or http://127.0.0.1/… on any
                                        port);
                                        --require-second-factor: signing in to it always
                                        asks for a second factor (acr loa:2);
                                        --first-party: one of your own applications,
                                        allowed what it asks with no consent page;
                                        a web client presents its secret in the
                                        Authorization header (client_secret_basic, the
                                        default) or in the form (client_secret_post);
                                        --backchannel-logout-uri (web): Gatehouse POSTs
                                        a signed logout token there when a session ends;
                                        --frontchannel-logout-uri (web, spa): the browser
                                        signing out loads it in a hidden frame;
                                        --scope also names the API scopes it may ask for
                                        (orders:read), --default-api the API its tokens
                                        are for when a request names none;
                                        --resource-server (service): the API this client
                                        is, which may introspect that API's tokens
                                        --refresh-token-grace-period (spa, native,
                                        web; at most 60, default 0: off): a refresh
                                        token presented again within SECONDS gets the
                                        answer it got the first time instead of
                                        revoking the grant (tabs refreshing together)
  clients update --client-id C [--name N] [--redirect-uri U]...
                 [--post-logout-redirect-uri U]... [--scope S]
                 [--first-party | --not-first-party]
                 [--require-second-factor | --no-require-second-factor]
                 [--backchannel-logout-uri U] [--frontchannel-logout-uri U] [--default-api URL]
                 [--resource-server URL] [--refresh-token-grace-period SECONDS]
                                        change a client (redirect URIs given replace
                                        the old ones; an empty logout URI removes it)
                                        and print it as JSON
  clients show ID                       print a client's registration as JSON (never its
                                        secret, shown once at creation)
  clients list [--json]                 list the clients: id, type, name, redirect URIs;
                                        --json prints each registration, one a line
  clients rotate-secret --client-id C [--overlap SECONDS]
                                        give a web or service client a new secret
                                        (printed once); the old one keeps working for
                                        SECONDS (default 3600; 0: it stops at once)
  clients delete --client-id C [--json] remove a client; its tokens stop working
  roles create NAME [--description D]   create a role people can be given
  roles update NAME --description D     reword a role (D empty: no description)
  roles list [--json]                   list the roles and what each permits at APIs
  roles delete NAME [--json]            remove a role (never admin): the people who
                                        have it lose it
  roles grant ROLE --api URL --scope "S1 S2"
                                        let the role's people be granted these scopes
                                        of the API (roles revoke takes them back)
  users roles add|remove --email E --role R
                                        give a person a role, or take it away
                                        (users disable, users delete and taking admin
                                        away refuse the last enabled person with admin)
  apis create --identifier URL --name N --scope "S1 S2" [--scope-description S=TEXT]...
              [--format jwt|opaque] [--ttl SECONDS] [--alg ES256|RS256|EdDSA]
                                        register an API (a resource server) and print it
                                        as JSON: its identifier is the tokens' audience
                                        (https, or http on loopback); jwt tokens (RFC
                                        9068, the default) are checked with the JWKS,
                                        opaque ones by introspection
  apis update --identifier URL [--name N] [--scope "S1 S2"] [--scope-description S=TEXT]...
              [--format jwt|opaque] [--ttl SECONDS] [--alg ES256|RS256|EdDSA]
                                        change an API (scopes given replace the old ones,
                                        and clients lose those no API defines any more);
                                        --scope-description alone rewords scopes the API
                                        has, keeping the others (S= removes the wording)
  apis show URL                         print an API as JSON
  apis list [--json]                    list the APIs: identifier, format, name, scopes
  apis delete --identifier URL [--json] remove an API: no token is issued for it again,
                                        and no client keeps it as its default API or
                                        resource server
  tokens create [--uses N] [--expires-in SECONDS]
                                        print an initial access token for dynamic client
                                        registration (RFC 7591, the registration_endpoint
                                        of discovery): good for N registrations (default
                                        1) within SECONDS (default a day); it is shown
                                        once, with the id it is listed and revoked by
  tokens list [--json]                  the initial access tokens that can still register
  tokens revoke ID [--json]             withdraw an initial access token
  keys generate                         print a new private JWK set (RS256, ES256, EdDSA)
                                        for the JWKS setting
  keys encryption                       print a new key for the ENCRYPTION_KEYS setting
  keys list [--json]                    list the signing keys and what each does: next
                                        (published, signs from SIGNS FROM), signing,
                                        retired (published until its tokens expire),
                                        expired; or configured (by JWKS or JWKS_FILE)
  keys rotate                           start a rotation: new keys are published now and
                                        sign after KEY_ROTATION_DELAY; the keys they
                                        replace stay published until their tokens expire
  audit [--user E] [--client C] [--action A] [--outcome success|failure] [--since T]
        [--until T] [--limit N] [--json]
                                        show the audit trail, oldest first: events about
                                        the person with email E, the client C, action A
                                        (login.failed, or a prefix: 'login.*'), since T
                                        and before T (an ISO date or date-time, in UTC
                                        unless it has an offset such as
                                        2026-11-22T10:00+01:00; or 30m, 24h, 7d, 2w ago);
                                        the last N (default 100); --json prints one JSON
                                        object a line

Each command that answers in a sentence prints one JSON object instead with --json.

Configuration comes from the same environment variables as the server (DATABASE_URL, ...).
`;

class UsageError extends Error {}

/** The command named something that does not exist (exit status 1). */
class NotFound extends Error {}

/** The command did only part of its work (exit status 1); the message says which part is missing. */
class PartlyDone extends Error {}

/** A flow refused the command (exit status 1): the last administrator is kept. */
class LastAdministrator extends Error {
  constructor(email: string) {
    super(`${email} is the last enabled person with the admin role: give the role to someone else first (users roles add)`);
  }
}

type Handler = (args: string[], run: (work: (runtime: Runtime) => Promise<void>) => Promise<void>) => Promise<void>;

const commands: Record<string, Handler> = {
  async check(args) {
    const { values } = parse(args, JSON_OPTION);
    const findings = await checkDeployment(secretProblems);
    const refused = findings.reduce((count, finding) => count + finding.problems.length, 0);
    report(values.json, { ok: !refused, findings: findings.map(({ subject, problems, summary }) => ({ subject, ok: !problems.length, summary: summary ?? null, problems })) },
      findings.map(({ subject, problems, summary }) => `${subject.padEnd(14)} ${problems.length ? 'REFUSED' : `ok${summary ? ` (${summary})` : ''}`}${problems.map((problem) => `\n  - ${problem}`).join('')}`).join('\n'));
    if (refused) throw new PartlyDone(`${refused} problem${refused === 1 ? '' : 's'} to fix before Gatehouse can start`);
  },
  async migrate(args) {
    const { values } = parse(args, JSON_OPTION);
    const config = loadConfig();
    const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    try {
      const applied = await migrate(database.connectionString);
      report(values.json, { applied }, applied.length ? `applied: ${applied.join(', ')}` : 'the database is up to date');
    } finally {
      await database.close();
    }
  },

  async 'users create'(args, run) {
    const { values } = parse(args, {
      email: { type: 'string' }, password: { type: 'string' }, 'password-stdin': { type: 'boolean' },
      name: { type: 'string' }, verified: { type: 'boolean' }, role: { type: 'string', multiple: true },
    });
    if (!values.email) throw new UsageError('users create needs --email');
    const roles = [...new Set((values.role ?? []) as string[])];
    if (roles.some((role) => !ROLE_NAME.test(role))) throw new UsageError('--role takes a name of letters, digits and . _ : - (at most 64)');
    if (Boolean(values.password) === Boolean(values['password-stdin'])) {
      throw new UsageError('users create needs either --password or --password-stdin');
    }
    const password = values['password-stdin'] ? await readPasswordFromStdin() : String(values.password);
    await run(async ({ flows }) => {
      const created = await flows.accountAdministration.create({
        email: String(values.email), password, name: values.name as string | undefined, emailVerified: Boolean(values.verified), roles,
      }, { type: 'admin', id: administratorName() });
      if (!created.ok) throw new NotFound(`no role ${created.roles.join(', ')}: create it first (roles create NAME)`);
      process.stdout.write(`${JSON.stringify(created.user, null, 2)}\n`);
    });
  },

  async 'users roles add'(args, run) {
    await assignRole(args, run, 'add');
  },

  async 'users roles remove'(args, run) {
    await assignRole(args, run, 'remove');
  },

  async 'users disable'(args, run) {
    const { email, json } = requiredEmail(args, 'users disable');
    await run(async (runtime) => {
      const result = await runtime.flows.accountAdministration.disable(email, { type: 'admin', id: administratorName() });
      if (!result.ok) throw result.reason === 'last_administrator' ? new LastAdministrator(email) : new NotFound(`no account has the email ${email}`);
      report(json, { email: result.user.email, disabled: true, changed: result.changed, sessions_ended: result.sessionsEnded, grants_revoked: result.grantsRevoked },
        `${result.changed ? 'disabled' : 'already disabled:'} ${result.user.email}; ${plural(result.sessionsEnded, 'session')} ended, ${plural(result.grantsRevoked, 'grant')} revoked`);
      if (!runtime.config.redis) {
        outOfReach('its sessions', ': they and the account\'s tokens are refused while it is disabled, and end when the server restarts');
      }
    });
  },

  async 'users enable'(args, run) {
    const { email, json } = requiredEmail(args, 'users enable');
    await run(async (runtime) => {
      const result = await runtime.flows.accountAdministration.enable(email, { type: 'admin', id: administratorName() });
      if (!result.ok) throw new NotFound(`no account has the email ${email}`);
      report(json, { email: result.user.email, disabled: false, changed: result.changed }, `${result.changed ? 'enabled' : 'already enabled:'} ${result.user.email}`);
    });
  },

  async 'users list'(args, run) {
    const { values } = parse(args, {
      email: { type: 'string' }, name: { type: 'string' }, role: { type: 'string' }, disabled: { type: 'boolean' }, enabled: { type: 'boolean' }, json: { type: 'boolean' },
    });
    if (values.disabled && values.enabled) throw new UsageError('users list takes --disabled or --enabled, not both');
    const filter = {
      email: values.email as string | undefined, name: values.name as string | undefined, role: values.role as string | undefined,
      disabled: values.disabled ? true : values.enabled ? false : undefined,
    };
    await run(async ({ users }) => {
      const accounts = [];
      for (let after; ;) {
        const page = await users.search(filter, { after, limit: 500 });
        accounts.push(...page.accounts);
        if (!page.more) break;
        after = page.accounts.at(-1);
      }
      if (values.json) process.stdout.write(accounts.map((account) => `${JSON.stringify(account)}\n`).join(''));
      else if (!accounts.length) process.stdout.write('no accounts match\n');
      else {
        process.stdout.write(textTable(['EMAIL', 'NAME', 'ROLES', 'STATE', '2FA', 'ID'], accounts.map((account) => [
          account.email, account.name ?? '', account.roles.join(' '), account.disabled ? 'disabled' : account.emailVerified ? 'active' : 'unverified',
          account.secondFactorEnabled ? 'on' : 'off', account.id,
        ])));
      }
    });
  },

  async 'users show'(args, run) {
    const { email } = requiredEmail(args, 'users show');
    await run(async ({ users }) => {
      const account = await users.findByEmail(email);
      const record = account ? await users.record(account.id) : null;
      if (!record) throw new NotFound(`no account has the email ${email}`);
      process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
    });
  },

  async 'users update'(args, run) {
    const { values } = parse(args, { email: { type: 'string' }, name: { type: 'string' }, verified: { type: 'string' } });
    if (!values.email) throw new UsageError('users update needs --email');
    if (values.name === undefined && values.verified === undefined) throw new UsageError('users update needs something to change: --name or --verified true|false');
    if (values.verified !== undefined && values.verified !== 'true' && values.verified !== 'false') throw new UsageError('--verified takes true or false');
    await run(async ({ users, flows }) => {
      const account = await users.findByEmail(String(values.email));
      const changes = { name: values.name as string | undefined, emailVerified: values.verified === undefined ? undefined : values.verified === 'true' };
      const updated = account ? await flows.accountAdministration.update(account.id, changes, { type: 'admin', id: administratorName() }) : null;
      if (!updated || updated === 'stale') throw new NotFound(`no account has the email ${String(values.email)}`);
      process.stdout.write(`${JSON.stringify(updated, null, 2)}\n`);
    });
  },

  async 'users delete'(args, run) {
    const { email, json } = requiredEmail(args, 'users delete');
    await run(async ({ flows }) => {
      const deleted = await flows.accountAdministration.delete(email, { type: 'admin', id: administratorName() });
      if (!deleted.ok) throw deleted.reason === 'last_administrator' ? new LastAdministrator(email) : new NotFound(`no account has the email ${email}`);
      report(json, { email: deleted.user.email, deleted: true, sessions_ended: deleted.sessionsEnded, grants_revoked: deleted.grantsRevoked },
        `deleted ${deleted.user.email}; ${plural(deleted.sessionsEnded, 'session')} ended, ${plural(deleted.grantsRevoked, 'grant')} revoked`);
    });
  },

  async 'users unlock'(args, run) {
    const { email, json } = requiredEmail(args, 'users unlock');
    await run(async ({ flows, config }) => {
      const unlocked = await flows.accountAdministration.unlock(email, { type: 'admin', id: administratorName() });
      if (!unlocked.ok) throw new NotFound(`no account has the email ${email}`);
      // Without Redis the limits count in the server's memory too (src/limits/backend.ts).
      if (!config.redis) outOfReach('its failed-attempt counts', ': unlock through the admin API (POST /admin/v1/users/{id}/unlock), or restart the server');
      report(json, { email: unlocked.user.email, unlocked: true }, `unlocked ${unlocked.user.email}: its failed passwords and second-factor codes are forgotten`);
    });
  },

  async 'users sessions'(args, run) {
    const { values } = parse(args, { email: { type: 'string' }, json: { type: 'boolean' } });
    if (!values.email) throw new UsageError('users sessions needs --email');
    await run(async ({ users, accountSessions, config }) => {
      const account = await users.findByEmail(String(values.email));
      if (!account) throw new NotFound(`no account has the email ${String(values.email)}`);
      if (!config.redis) {
        outOfReach('its sessions', ', so they are not listed');
      }
      const sessions = await accountSessions.list(account.id);
      if (values.json) process.stdout.write(sessions.map((session) => `${JSON.stringify(session)}\n`).join(''));
      else if (!sessions.length) process.stdout.write(`${account.email} is signed in nowhere\n`);
      else {
        process.stdout.write(textTable(['SESSION', 'SIGNED IN', 'DEVICE', 'IP', 'APPLICATIONS'], sessions.map((session) => [
          session.uid, session.loginTs ? new Date(session.loginTs * 1000).toISOString() : '-', session.device ?? '-', session.ip ?? '-',
          session.applications.map((application) => application.name).join(', '),
        ])));
      }
    });
  },

  async 'users end-sessions'(args, run) {
    const { values } = parse(args, { email: { type: 'string' }, session: { type: 'string' }, ...JSON_OPTION });
    if (!values.email) throw new UsageError('users end-sessions needs --email');
    // An empty id (a script's unset variable) must not mean "every session".
    if (values.session !== undefined && !String(values.session).trim()) throw new UsageError('--session takes a session id (users sessions lists them); without --session every session ends');
    await run(async ({ users, accountSessions, config }) => {
      const account = await users.findByEmail(String(values.email));
      if (!account) throw new NotFound(`no account has the email ${String(values.email)}`);
      if (!config.redis) {
        outOfReach('its sessions');
      }
      if (values.session !== undefined) {
        if (!await accountSessions.end(account.id, String(values.session), { reason: 'ended_by_administrator', actor: { type: 'admin', id: administratorName() } })) throw new NotFound(`${account.email} has no session ${String(values.session)}`);
        report(values.json, { email: account.email, session: String(values.session), ended: true }, `ended session ${String(values.session)} of ${account.email}`);
        return;
      }
      const ended = await accountSessions.endAll(account.id, { reason: 'ended_by_administrator', actor: { type: 'admin', id: administratorName() } });
      report(values.json, { email: account.email, sessions_ended: ended.sessions, grants_revoked: ended.grants },
        `signed ${account.email} out everywhere: ${plural(ended.sessions, 'session')} ended, ${plural(ended.grants, 'grant')} revoked`);
    });
  },

  async 'users applications'(args, run) {
    const { values } = parse(args, { email: { type: 'string' }, json: { type: 'boolean' } });
    if (!values.email) throw new UsageError('users applications needs --email');
    await run(async ({ users, flows }) => {
      const account = await users.findByEmail(String(values.email));
      if (!account) throw new NotFound(`no account has the email ${String(values.email)}`);
      const applications = await flows.applicationAccess.list(account);
      if (values.json) process.stdout.write(applications.map((application) => `${JSON.stringify(application)}\n`).join(''));
      else if (!applications.length) process.stdout.write(`${account.email} has allowed no application\n`);
      else {
        process.stdout.write(textTable(['CLIENT', 'NAME', 'ALLOWED', 'SCOPES'], applications.map((application) => [
          application.clientId, application.name, application.grantedAt.toISOString(),
          [...application.scopes, ...Object.entries(application.resources).map(([api, scopes]) => `${api}: ${scopes.join(' ')}`)].join(' '),
        ])));
      }
    });
  },

  async 'users withdraw-access'(args, run) {
    const { values } = parse(args, { email: { type: 'string' }, 'client-id': { type: 'string' }, ...JSON_OPTION });
    if (!values.email || !values['client-id']) throw new UsageError('users withdraw-access needs --email and --client-id');
    const clientId = String(values['client-id']);
    await run(async ({ users, flows, config }) => {
      const account = await users.findByEmail(String(values.email));
      if (!account) throw new NotFound(`no account has the email ${String(values.email)}`);
      if (!config.redis) {
        outOfReach('its grants', ': only the consent is forgotten');
      }
      const withdrawn = await flows.applicationAccess.withdraw(account, clientId, {}, { type: 'admin', id: administratorName() });
      if (!withdrawn.ok) throw new NotFound(`${account.email} has not allowed an application ${clientId}`);
      report(values.json, { email: account.email, client_id: clientId, grants_revoked: withdrawn.grantsRevoked },
        `withdrew ${withdrawn.name}'s access to ${account.email}: ${plural(withdrawn.grantsRevoked, 'grant')} revoked`);
    });
  },

  async 'users password-reset'(args, run) {
    const { email, json } = requiredEmail(args, 'users password-reset');
    await run(async ({ flows, users, mailQueue }) => {
      const account = await users.findByEmail(email);
      if (!account) throw new NotFound(`no account has the email ${email}`);
      if (account.disabled) throw new NotFound(`${account.email} is disabled: enable it first`);
      await flows.passwordReset.requestLink(account.email, {}, { type: 'admin', id: administratorName() });
      // Sent before the command exits, or queued in the store for the server to send.
      await mailQueue.idle();
      report(json, { email: account.email }, `a link to set a new password is on its way to ${account.email}`);
    });
  },

  async 'users reset-second-factor'(args, run) {
    const { email, json } = requiredEmail(args, 'users reset-second-factor');
    await run(async ({ flows, config }) => {
      // A command on an in-process store sees none of a running server's sessions: they are left to the restart.
      const result = await flows.secondFactorReset.reset({ email, actor: { type: 'admin', id: administratorName() }, endSessions: Boolean(config.redis) });
      if (!result.ok) throw new NotFound(`no account has the email ${email}`);
      const { user } = result;
      if (result.removed === 'nothing') {
        report(json, { email: user.email, removed: result.removed }, `${user.email} has no two-factor authentication: nothing was changed`);
        return;
      }
      if (result.removed === 'unfinished_setup') {
        report(json, { email: user.email, removed: result.removed }, `${user.email} had not finished setting up two-factor authentication: the unfinished setup was removed`);
        return;
      }
      const codes = result.unusedRecoveryCodesRemoved;
      const outcome: Record<string, unknown> = { email: user.email, removed: result.removed, unused_recovery_codes_removed: codes, required_by_role: result.requiredByRole };
      const sentences = [`turned off two-factor authentication for ${user.email}: its authenticator and ${codes} unused recovery code${codes === 1 ? '' : 's'} were removed; `
        + `${result.requiredByRole ? 'their role requires it, so their next sign-in asks them to set it up again' : 'they sign in with their password alone until they set it up again'}`];
      const { sessions } = result;
      if (sessions.ended) {
        Object.assign(outcome, { sessions_ended: sessions.sessions, grants_revoked: sessions.grants });
        sentences.push(`signed ${user.email} out everywhere: ${plural(sessions.sessions, 'session')} ended, ${plural(sessions.grants, 'grant')} revoked`);
      } else {
        // Null, not 0: nothing was counted, and a script must not read "none were left".
        Object.assign(outcome, { sessions_ended: null, grants_revoked: null, sessions_not_ended: sessions.reason });
        if (sessions.reason === 'out_of_reach') {
          outOfReach('its sessions', `, so those of ${user.email} were not ended; restarting the server ends them`);
        }
      }
      try {
        await result.notice();
        outcome.notified = true;
        sentences.push(`told ${user.email} by email`);
      } catch (error) {
        // The reset stands; the person is told another way.
        outcome.notified = false;
        process.stderr.write(`gatehouse: the notice to ${user.email} was not sent (${error instanceof DependencyUnavailable ? error.describe() : (error as Error).message}); tell them yourself\n`);
      }
      report(json, outcome, sentences.join('\n'));
      if (!sessions.ended && sessions.reason === 'store_unavailable') {
        throw new PartlyDone(`two-factor authentication is off, but the sessions of ${user.email} were not ended (${sessions.error.describe()}): `
          + 'they stay signed in until they sign out or the sessions expire');
      }
    });
  },

  async 'clients create'(args, run) {
    const { values } = parse(args, {
      name: { type: 'string' }, type: { type: 'string' }, 'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true }, scope: { type: 'string' },
      'require-second-factor': { type: 'boolean' }, 'first-party': { type: 'boolean' }, 'token-endpoint-auth-method': { type: 'string' },
      'backchannel-logout-uri': { type: 'string' }, 'frontchannel-logout-uri': { type: 'string' }, 'default-api': { type: 'string' },
      'resource-server': { type: 'string' }, 'refresh-token-grace-period': { type: 'string' },
    });
    const authMethod = values['token-endpoint-auth-method'] as SecretAuthMethod | undefined;
    if (authMethod !== undefined && !SECRET_AUTH_METHODS.includes(authMethod)) throw new UsageError(`--token-endpoint-auth-method must be one of ${SECRET_AUTH_METHODS.join(', ')}`);
    const type = values.type as ClientType | undefined;
    if (!values.name || !type) throw new UsageError('clients create needs --name and --type');
    if (!CLIENT_TYPES.includes(type)) throw new UsageError(`--type must be one of ${CLIENT_TYPES.join(', ')}`);
    await run(async ({ clients }) => {
      const client = await clients.create({
        name: String(values.name), type, ...scopeOption(values.scope), defaultApi: values['default-api'] as string | undefined || undefined,
        resourceServer: values['resource-server'] as string | undefined || undefined,
        redirectUris: values['redirect-uri'] as string[] | undefined,
        postLogoutRedirectUris: values['post-logout-redirect-uri'] as string[] | undefined,
        requireSecondFactor: Boolean(values['require-second-factor']), firstParty: Boolean(values['first-party']), tokenEndpointAuthMethod: authMethod,
        backchannelLogoutUri: values['backchannel-logout-uri'] as string | undefined || undefined,
        frontchannelLogoutUri: values['frontchannel-logout-uri'] as string | undefined || undefined,
        refreshTokenGracePeriod: gracePeriodOption(values['refresh-token-grace-period']),
      }, { type: 'admin', id: administratorName() });
      process.stdout.write(`${JSON.stringify(client, null, 2)}\n`);
    });
  },

  async 'clients update'(args, run) {
    const { values } = parse(args, {
      'client-id': { type: 'string' }, name: { type: 'string' }, 'redirect-uri': { type: 'string', multiple: true },
      'post-logout-redirect-uri': { type: 'string', multiple: true }, scope: { type: 'string' },
      'first-party': { type: 'boolean' }, 'not-first-party': { type: 'boolean' },
      'require-second-factor': { type: 'boolean' }, 'no-require-second-factor': { type: 'boolean' },
      'backchannel-logout-uri': { type: 'string' }, 'frontchannel-logout-uri': { type: 'string' }, 'default-api': { type: 'string' },
      'resource-server': { type: 'string' }, 'refresh-token-grace-period': { type: 'string' },
    });
    if (!values['client-id']) throw new UsageError('clients update needs --client-id');
    if (values['first-party'] && values['not-first-party']) throw new UsageError('clients update takes --first-party or --not-first-party, not both');
    if (values['require-second-factor'] && values['no-require-second-factor']) throw new UsageError('clients update takes --require-second-factor or --no-require-second-factor, not both');
    const changes = {
      name: values.name as string | undefined, ...scopeOption(values.scope), defaultApi: optionalChange(values['default-api']),
      resourceServer: optionalChange(values['resource-server']),
      redirectUris: values['redirect-uri'] as string[] | undefined,
      postLogoutRedirectUris: values['post-logout-redirect-uri'] as string[] | undefined,
      firstParty: values['first-party'] ? true : values['not-first-party'] ? false : undefined,
      requireSecondFactor: values['require-second-factor'] ? true : values['no-require-second-factor'] ? false : undefined,
      backchannelLogoutUri: optionalChange(values['backchannel-logout-uri']),
      frontchannelLogoutUri: optionalChange(values['frontchannel-logout-uri']),
      refreshTokenGracePeriod: gracePeriodOption(values['refresh-token-grace-period']),
    };
    if (Object.values(changes).every((value) => value === undefined)) {
      throw new UsageError('clients update needs something to change: --name, --redirect-uri, --post-logout-redirect-uri, --scope, --first-party, --require-second-factor or a logout URI');
    }
    await run(async ({ clients }) => {
      const client = await clients.update(String(values['client-id']), changes, { type: 'admin', id: administratorName() });
      if (!client) throw new ClientError(`no client ${String(values['client-id'])}`);
      // The secret was printed once, at creation; it is not shown again.
      process.stdout.write(`${JSON.stringify(withoutSecret(client), null, 2)}\n`);
    });
  },

  async 'clients show'(args, run) {
    const [clientId, ...rest] = args;
    if (!clientId || clientId.startsWith('-') || rest.length) throw new UsageError('clients show takes one client id: clients show ID');
    await run(async ({ clients }) => {
      const client = await clients.find(clientId);
      if (!client) throw new ClientError(`no client ${clientId}`);
      process.stdout.write(`${JSON.stringify(withoutSecret(client), null, 2)}\n`);
    });
  },

  async 'clients list'(args, run) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    await run(async ({ clients }) => {
      const all = (await clients.list()).map(withoutSecret);
      process.stdout.write(values.json ? all.map((client) => `${JSON.stringify(client)}\n`).join('') : formatClients(all));
    });
  },

  async 'clients rotate-secret'(args, run) {
    const { values } = parse(args, { 'client-id': { type: 'string' }, overlap: { type: 'string' } });
    if (!values['client-id']) throw new UsageError('clients rotate-secret needs --client-id');
    const overlap = values.overlap === undefined ? 3600 : Number(values.overlap);
    if (!Number.isSafeInteger(overlap) || overlap < 0 || overlap > 7 * 24 * 3600) throw new UsageError('--overlap takes seconds, from 0 to 604800 (a week)');
    await run(async ({ clients }) => {
      const rotated = await clients.rotateSecret(String(values['client-id']), overlap, { type: 'admin', id: administratorName() });
      if (!rotated) throw new ClientError(`no client ${String(values['client-id'])}`);
      process.stdout.write(`${JSON.stringify({ client_id: rotated.client_id, client_secret: rotated.client_secret, previous_secret_valid_for_seconds: overlap }, null, 2)}\n`);
    });
  },

  async 'clients delete'(args, run) {
    const { values } = parse(args, { 'client-id': { type: 'string' }, ...JSON_OPTION });
    if (!values['client-id']) throw new UsageError('clients delete needs --client-id');
    await run(async ({ clients }) => {
      if (!await clients.delete(String(values['client-id']), { type: 'admin', id: administratorName() })) {
        throw new ClientError(`no client ${String(values['client-id'])}`);
      }
      report(values.json, { client_id: String(values['client-id']), deleted: true }, `deleted ${String(values['client-id'])}`);
    });
  },

  async 'apis create'(args, run) {
    const { values } = parse(args, API_OPTIONS);
    if (!values.identifier || !values.name || values.scope === undefined) throw new UsageError('apis create needs --identifier, --name and --scope');
    const settings = apiSettings(values);
    await run(async ({ apis }) => {
      const api = await apis.create({ identifier: String(values.identifier), name: String(values.name), scopes: settings.scopes ?? [], ...settings }, { type: 'admin', id: administratorName() });
      process.stdout.write(`${JSON.stringify(api, null, 2)}\n`);
    });
  },

  async 'apis update'(args, run) {
    const { values } = parse(args, API_OPTIONS);
    if (!values.identifier) throw new UsageError('apis update needs --identifier');
    const identifier = String(values.identifier);
    const changes: ApiChanges = { ...apiSettings(values), ...(values.name === undefined ? {} : { name: String(values.name) }) };
    const descriptions = values.scope === undefined ? scopeDescriptions(values) : new Map<string, string>();
    if (!Object.keys(changes).length && !descriptions.size) throw new UsageError('apis update needs something to change: --name, --scope, --scope-description, --format, --ttl or --alg');
    await run(async ({ apis }) => {
      let unchangedSince: Date | undefined;
      if (descriptions.size) {
        // The service replaces scopes as a whole, so the stored ones are restated with the new descriptions; the
        // change is made to the version read, so a scope added meanwhile is refused (ApiChangedMeanwhile), not lost.
        const current = await apis.find(identifier);
        if (!current) throw new ApiError(`no API ${identifier}`);
        const unknown = [...descriptions.keys()].filter((name) => !current.scopes.some((scope) => scope.name === name));
        if (unknown.length) {
          throw new ApiError(`${identifier} defines no scope ${unknown.join(', ')} (its scopes: ${current.scopes.map((scope) => scope.name).join(' ') || 'none'}); --scope sets the whole list`);
        }
        changes.scopes = current.scopes.map((scope) => descriptions.has(scope.name) ? { name: scope.name, description: descriptions.get(scope.name) } : scope);
        unchangedSince = current.updatedAt;
      }
      const api = await apis.update(identifier, changes, { type: 'admin', id: administratorName() }, unchangedSince);
      if (!api) throw new ApiError(`no API ${identifier}`);
      process.stdout.write(`${JSON.stringify(api, null, 2)}\n`);
    });
  },

  async 'apis show'(args, run) {
    const [identifier, ...rest] = args;
    if (!identifier || identifier.startsWith('-') || rest.length) throw new UsageError('apis show takes one API identifier: apis show URL');
    await run(async ({ apis }) => {
      const api = await apis.find(identifier);
      if (!api) throw new ApiError(`no API ${identifier}`);
      process.stdout.write(`${JSON.stringify(api, null, 2)}\n`);
    });
  },

  async 'apis list'(args, run) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    await run(async ({ apis }) => {
      const all = await apis.list();
      if (values.json) process.stdout.write(all.map((api) => `${JSON.stringify(api)}\n`).join(''));
      else if (!all.length) process.stdout.write('no APIs are registered\n');
      else {
        process.stdout.write(textTable(['IDENTIFIER', 'FORMAT', 'NAME', 'SCOPES'], all.map((api) => [
          api.identifier, api.accessTokenFormat, api.name, api.scopes.map((scope) => scope.name).join(' '),
        ])));
      }
    });
  },

  async 'apis delete'(args, run) {
    const { values } = parse(args, { identifier: { type: 'string' }, ...JSON_OPTION });
    if (!values.identifier) throw new UsageError('apis delete needs --identifier');
    await run(async ({ apis }) => {
      if (!await apis.delete(String(values.identifier), { type: 'admin', id: administratorName() })) throw new ApiError(`no API ${String(values.identifier)}`);
      report(values.json, { identifier: String(values.identifier), deleted: true }, `deleted ${String(values.identifier)}`);
    });
  },

  async 'roles create'(args, run) {
    const { values, positionals } = parseWithName(args, 'roles create NAME [--description D]', { description: { type: 'string' } });
    await run(async ({ roles }) => {
      const role = await roles.create(positionals, values.description as string | undefined, { type: 'admin', id: administratorName() });
      process.stdout.write(`${JSON.stringify(role, null, 2)}\n`);
    });
  },

  async 'roles update'(args, run) {
    const { values, positionals } = parseWithName(args, 'roles update NAME --description D', { description: { type: 'string' } });
    if (values.description === undefined) throw new UsageError('roles update needs --description (empty to remove it)');
    await run(async ({ roles }) => {
      const role = await roles.update(positionals, { description: String(values.description) }, { type: 'admin', id: administratorName() });
      if (!role) throw new NotFound(`no role ${positionals}`);
      process.stdout.write(`${JSON.stringify(role, null, 2)}\n`);
    });
  },

  async 'roles list'(args, run) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    await run(async ({ roles }) => {
      const all = await roles.list();
      if (values.json) process.stdout.write(all.map((role) => `${JSON.stringify(role)}\n`).join(''));
      else {
        process.stdout.write(textTable(['ROLE', 'PERMITS', 'DESCRIPTION'], all.map((role) => [
          role.name, role.permissions.map((permission) => `${permission.api}: ${permission.scopes.join(' ')}`).join('; '), role.description ?? '',
        ])));
      }
    });
  },

  async 'roles delete'(args, run) {
    const { positionals, values } = parseWithName(args, 'roles delete NAME [--json]', JSON_OPTION);
    await run(async ({ flows }) => {
      const deleted = await flows.roleAssignment.deleteRole(positionals, { type: 'admin', id: administratorName() });
      if (!deleted.ok) throw new NotFound(`no role ${positionals}`);
      const people = deleted.peopleWhoHadIt;
      report(values.json, { name: positionals, deleted: true, people_who_had_it: people }, `deleted ${positionals}; ${people} ${people === 1 ? 'person' : 'people'} lost it`);
    });
  },

  async 'roles grant'(args, run) {
    await changePermission(args, run, 'grant');
  },

  async 'roles revoke'(args, run) {
    await changePermission(args, run, 'revoke');
  },

  async audit(args, run) {
    const { values } = parse(args, {
      user: { type: 'string' }, client: { type: 'string' }, action: { type: 'string' }, outcome: { type: 'string' },
      since: { type: 'string' }, until: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' },
    });
    const [since, until] = (['since', 'until'] as const).map((option) => {
      if (values[option] === undefined) return undefined;
      const moment = parseSince(String(values[option]));
      if (!moment) throw new UsageError(`--${option} takes a real ISO date or date-time from year 1 to 9999, UTC unless it has an offset (2026-11-22, 2026-11-22T10:00, 2026-11-22T10:00+01:00), or an age (30m, 24h, 7d, 2w)`);
      return moment;
    });
    if (values.outcome !== undefined && values.outcome !== 'success' && values.outcome !== 'failure') throw new UsageError('--outcome takes success or failure');
    const limit = values.limit === undefined ? 100 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) throw new UsageError('--limit takes a whole number from 1 to 100000');
    if (values.user !== undefined && !String(values.user).trim()) throw new UsageError('--user takes an email');
    if (values.action !== undefined && !/^[a-z_.]+\*?$/.test(String(values.action))) throw new UsageError('--action takes an action name such as login.failed, or a prefix such as login.*');
    await run(async ({ auditTrail }) => {
      const events = (await auditTrail.list({
        userEmail: values.user as string | undefined, clientId: values.client as string | undefined, action: values.action as string | undefined,
        outcome: values.outcome as 'success' | 'failure' | undefined, since, until, limit,
      })).reverse();
      process.stdout.write(values.json ? formatJsonLines(events) : formatTable(events));
    });
  },

  async 'tokens create'(args, run) {
    const { values } = parse(args, { uses: { type: 'string' }, 'expires-in': { type: 'string' } });
    const uses = values.uses === undefined ? 1 : Number(values.uses);
    const expiresIn = values['expires-in'] === undefined ? 24 * 3600 : Number(values['expires-in']);
    if (!Number.isSafeInteger(uses) || uses < 1 || uses > MAX_INITIAL_ACCESS_TOKEN_USES) throw new UsageError(`--uses takes a whole number from 1 to ${MAX_INITIAL_ACCESS_TOKEN_USES}`);
    if (!Number.isSafeInteger(expiresIn) || expiresIn < 60 || expiresIn > MAX_INITIAL_ACCESS_TOKEN_SECONDS) throw new UsageError(`--expires-in takes seconds, from 60 to ${MAX_INITIAL_ACCESS_TOKEN_SECONDS}`);
    await run(async ({ initialAccessTokens, config }) => {
      // It would live in this command's own memory, and go with it.
      if (!config.redis) throw new NotFound(IN_PROCESS_TOKENS);
      const issued = await initialAccessTokens.issue({ uses, expiresInSeconds: expiresIn, actor: { type: 'admin', id: administratorName() } });
      process.stdout.write(`${JSON.stringify({ initial_access_token: issued.token, id: issued.id, expires_at: issued.expiresAt, uses: issued.uses }, null, 2)}\n`);
    });
  },

  async 'tokens list'(args, run) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    await run(async ({ initialAccessTokens, config }) => {
      if (!config.redis) throw new NotFound(IN_PROCESS_TOKENS);
      const tokens = await initialAccessTokens.list();
      if (values.json) process.stdout.write(tokens.map((token) => `${JSON.stringify(token)}\n`).join(''));
      else if (!tokens.length) process.stdout.write('no initial access token can register a client\n');
      else process.stdout.write(textTable(['ID', 'EXPIRES', 'USES LEFT'], tokens.map((token) => [token.id, token.expiresAt.toISOString(), `${token.usesLeft} of ${token.uses}`])));
    });
  },

  async 'tokens revoke'(args, run) {
    const { positionals: id, values } = parseWithName(args, 'tokens revoke ID [--json]', JSON_OPTION);
    await run(async ({ initialAccessTokens, config }) => {
      if (!config.redis) throw new NotFound(IN_PROCESS_TOKENS);
      if (!await initialAccessTokens.revoke(id, { type: 'admin', id: administratorName() })) throw new NotFound(`no initial access token has the id ${id}`);
      report(values.json, { id, revoked: true }, `revoked ${id}: it registers nothing more`);
    });
  },

  async 'keys generate'(args) {
    parse(args, {});
    process.stdout.write(`${JSON.stringify(await generateJwks())}\n`);
  },

  async 'keys encryption'(args) {
    parse(args, {});
    process.stdout.write(`${generateEncryptionKey()}\n`);
  },

  async 'keys list'(args, run) {
    const { values } = parse(args, { json: { type: 'boolean' } });
    await run(async ({ signingKeys }) => {
      const keys = await signingKeys.list();
      if (values.json) process.stdout.write(keys.map((key) => `${JSON.stringify(key)}\n`).join(''));
      else {
        const when = (moment: Date | undefined) => moment?.toISOString() ?? '-';
        process.stdout.write(textTable(['KID', 'ALG', 'STATE', 'SIGNS FROM', 'RETIRES', 'LEAVES JWKS'], keys.map((key) => [
          key.kid, key.alg, key.state, when(key.signsFrom), when(key.retiresAt), when(key.expiresAt),
        ])));
      }
    });
  },

  async 'keys rotate'(args, run) {
    parse(args, {});
    await run(async ({ signingKeys }) => {
      const created = await signingKeys.rotate({ type: 'admin', id: administratorName() });
      process.stdout.write(`${JSON.stringify({ published: created.map((key) => ({ kid: key.kid, alg: key.alg })), signsFrom: created[0]!.signsFrom })}\n`);
    });
  },
};

/** The --email of a command that takes only that (and --json). */
function requiredEmail(args: string[], command: string): { email: string; json: boolean } {
  const { values } = parse(args, { email: { type: 'string' }, ...JSON_OPTION });
  const email = String(values.email ?? '').trim();
  if (!email) throw new UsageError(`${command} needs --email`);
  return { email, json: Boolean(values.json) };
}

/** --json, taken by every command that reports in a sentence: a script reads the outcome without parsing prose. */
const JSON_OPTION = { json: { type: 'boolean' } } as const;

/**
 * A command's outcome: with --json one JSON object (named as the admin API names the same answer, where it has
 * one), else the sentence for a person.
 */
function report(json: unknown, outcome: Record<string, unknown>, sentence: string): void {
  process.stdout.write(json ? `${JSON.stringify(outcome, null, 2)}\n` : `${sentence}\n`);
}

/** Who is at the terminal, for the audit trail: cli:<login>, or just cli where the system has no name for them. */
function administratorName(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** The clients as a table: id, type, name and redirect URIs. */
function formatClients(clients: ClientMetadata[]): string {
  if (!clients.length) return 'no clients are registered\n';
  return textTable(['CLIENT ID', 'TYPE', 'NAME', 'REDIRECT URIS'], clients.map((client) => [
    client.client_id, clientTypeOf(client), String(client.client_name ?? ''), (Array.isArray(client.redirect_uris) ? client.redirect_uris : []).join(' '),
  ]));
}

function parse(args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The first line of standard input: a password piped in or typed (the terminal then shows it, so pipe it). */
async function readPasswordFromStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const [firstLine = ''] = Buffer.concat(chunks).toString('utf8').split(/\r?\n/);
  if (!firstLine) throw new UsageError('--password-stdin read no password');
  return firstLine;
}

async function withRuntime(work: (runtime: Runtime) => Promise<void>): Promise<void> {
  const config = loadConfig();
  // Logs go to stderr (stdout carries the command's JSON), at LOG_LEVEL as the server's do: at the
  // default (info) that is each audit event's JSON line, which the trail promises besides its row.
  const runtime = await openRuntime(config, createLogger(config, 2), { oneShot: true });
  try {
    await work(runtime);
  } finally {
    await runtime.close();
  }
}

async function main(argv: string[]): Promise<number> {
  // Asked for, the usage is the output; a bare `gatehouse` is a mistake, so it goes to stderr.
  if (argv.length === 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  // The longest command the words name: `users roles add`, `users create`, `audit`.
  const words = [3, 2, 1].find((count) => argv.length >= count && commands[argv.slice(0, count).join(' ')]) ?? 1;
  const [name, rest] = [argv.slice(0, words).join(' '), argv.slice(words)];
  const handler = commands[name];
  try {
    if (!handler) throw new UsageError(`unknown command: ${argv.slice(0, 2).join(' ')}`);
    await handler(rest, withRuntime);
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`gatehouse: ${error.message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof NotFound || error instanceof PartlyDone || error instanceof LastAdministrator || error instanceof AccountError || error instanceof ClientError || error instanceof ApiError || error instanceof RoleError || error instanceof ConfigError || error instanceof KeyError || error instanceof KeyRotationError) {
      process.stderr.write(`gatehouse: ${(error as Error).message}\n`);
      return 1;
    }
    if (error instanceof DependencyUnavailable) {
      process.stderr.write(`gatehouse: ${error.describe()}\n`);
      return 1;
    }
    throw error;
  }
}

/** --refresh-token-grace-period SECONDS: whole seconds (0 turns it off); the service says how many at most. */
function gracePeriodOption(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError('--refresh-token-grace-period takes whole seconds (0: off)');
  return Number(value);
}

/** An option of clients update that can be removed: a new value, or empty to remove it; undefined when not given. */
function optionalChange(value: unknown): string | null | undefined {
  if (typeof value !== 'string') return undefined;
  return value.trim() || null;
}

/**
 * A client's --scope: the scopes about the person stay its `scope`, the others are API scopes it may ask for.
 * Nothing given, nothing changes.
 */
function scopeOption(value: unknown): { scope?: string; apiScopes?: string[] } {
  if (typeof value !== 'string') return {};
  const names = value.split(/\s+/).filter(Boolean);
  const aboutPeople = new Set(scopesAboutPeople(names.join(' ')));
  return { scope: [...aboutPeople].join(' '), apiScopes: names.filter((name) => !aboutPeople.has(name)) };
}

/** Options after one name (roles create NAME ...): the name, and the options parsed. */
function parseWithName(args: string[], usage: string, options: NonNullable<ParseArgsConfig['options']>) {
  const [name, ...rest] = args;
  if (!name || name.startsWith('-')) throw new UsageError(`usage: ${usage}`);
  return { positionals: name, values: parse(rest, options).values };
}

/** roles grant|revoke ROLE --api URL --scope "S1 S2" */
async function changePermission(args: string[], run: Parameters<Handler>[1], change: 'grant' | 'revoke'): Promise<void> {
  const { positionals: role, values } = parseWithName(args, `roles ${change} ROLE --api URL --scope "S1 S2"`, { api: { type: 'string' }, scope: { type: 'string' } });
  const scopes = typeof values.scope === 'string' ? values.scope.split(/\s+/).filter(Boolean) : [];
  if (!values.api || !scopes.length) throw new UsageError(`roles ${change} needs --api and --scope`);
  await run(async ({ roles }) => {
    const changed = await roles[change](role, String(values.api), scopes, { type: 'admin', id: administratorName() });
    process.stdout.write(`${JSON.stringify(changed, null, 2)}\n`);
  });
}

/** users roles add|remove --email E --role R */
async function assignRole(args: string[], run: Parameters<Handler>[1], change: 'add' | 'remove'): Promise<void> {
  const { values } = parse(args, { email: { type: 'string' }, role: { type: 'string' } });
  if (!values.email || !values.role) throw new UsageError(`users roles ${change} needs --email and --role`);
  await run(async ({ flows }) => {
    const result = await flows.roleAssignment[change](String(values.email), String(values.role), { type: 'admin', id: administratorName() });
    if (!result.ok && result.reason === 'last_administrator') throw new LastAdministrator(String(values.email));
    if (!result.ok) throw new NotFound(result.reason === 'unknown_role' ? `no role ${String(values.role)}` : `no account has the email ${String(values.email)}`);
    process.stdout.write(`${JSON.stringify({ email: result.user.email, roles: result.user.roles, changed: result.changed }, null, 2)}\n`);
  });
}

const API_OPTIONS = {
  identifier: { type: 'string' }, name: { type: 'string' }, scope: { type: 'string' }, 'scope-description': { type: 'string', multiple: true },
  format: { type: 'string' }, ttl: { type: 'string' }, alg: { type: 'string' },
} as const;

/** --scope-description S=TEXT...: each scope's new description (an empty TEXT removes it). */
function scopeDescriptions(values: Record<string, unknown>): Map<string, string> {
  const descriptions = new Map<string, string>();
  for (const entry of (values['scope-description'] as string[] | undefined) ?? []) {
    const [name, ...text] = entry.split('=');
    if (!name || !text.length) throw new UsageError('--scope-description takes SCOPE=TEXT');
    descriptions.set(name, text.join('='));
  }
  return descriptions;
}

/** An API's settings from the options given (nothing given, nothing changes). */
function apiSettings(values: Record<string, unknown>): ApiChanges {
  const format = values.format as AccessTokenFormat | undefined;
  if (format !== undefined && !ACCESS_TOKEN_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${ACCESS_TOKEN_FORMATS.join(', ')}`);
  const alg = values.alg as SigningAlgorithm | undefined;
  if (alg !== undefined && !SIGNING_ALGORITHMS.includes(alg)) throw new UsageError(`--alg must be one of ${SIGNING_ALGORITHMS.join(', ')}`);
  const ttl = values.ttl === undefined ? undefined : Number(values.ttl);
  if (ttl !== undefined && !Number.isInteger(ttl)) throw new UsageError('--ttl takes a whole number of seconds');
  const descriptions = scopeDescriptions(values);
  const names = typeof values.scope === 'string' ? values.scope.split(/\s+/).filter(Boolean) : undefined;
  // Without --scope, descriptions change the API's own scopes (apis update does that, against what is stored).
  const undescribed = names ? [...descriptions.keys()].filter((name) => !names.includes(name)) : [];
  if (undescribed.length) throw new UsageError(`--scope-description names a scope not in --scope: ${undescribed.join(', ')}`);
  return {
    ...(names ? { scopes: names.map((name) => ({ name, description: descriptions.get(name) })) } : {}),
    ...(format ? { accessTokenFormat: format } : {}),
    ...(alg ? { signingAlg: alg } : {}),
    ...(ttl !== undefined ? { accessTokenTtl: ttl } : {}),
  };
}

process.exitCode = await main(process.argv.slice(2));

