// Gatehouse as a deployment runs it, minus TLS: `node src/main.ts` with `npm start`'s Node.js options, in a process
// of its own on the run's database and Redis prefix, logging each request at info (to /dev/null), rate limits out of
// reach; and a runtime in the bench's process, on the same database, store and keys, that registers the clients and
// mints the tokens the scenarios use.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/logger.ts';
import { openRuntime, type Runtime } from '../../src/runtime.ts';
import type { BackingServices } from './backing-services.ts';
import type { Cleanup } from './cleanup.ts';
import { AUTHORIZATION_CODE_TTL_SECONDS, JWT_API, OPAQUE_API, PERSON, REDIRECT_URI, type Target } from './fixtures.ts';
import { mintAuthorizationCodes, mintRefreshTokens } from './engine-tokens.ts';
import { PROJECT_ROOT, processTree, startServer, type ServerProcess } from './processes.ts';

/** Far above any rate a run reaches: the counters are still kept (their cost is measured), never exceeded. */
const UNREACHABLE_LIMIT = '1000000000/60';

/** The environment of a Gatehouse on this run's services, listening on `port`; `extra` adds to it or overrides. */
export function gatehouseEnvironment(backing: BackingServices, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'development',
    PORT: String(port),
    HOST: '127.0.0.1',
    ISSUER: `http://127.0.0.1:${port}`,
    DATABASE_URL: backing.databaseUrl,
    REDIS_URL: backing.redisUrl,
    STORE_PREFIX: backing.storePrefix,
    // Shared by every Gatehouse of the run and the setup runtime: the same cookie secrets and first signing keys.
    KEYS_DIR: path.join(backing.folder, 'keys'),
    DATA_DIR: path.join(backing.folder, 'data'),
    OUTBOX_DIR: path.join(backing.folder, 'outbox'),
    LOG_LEVEL: 'info',
    TOKEN_LIMIT_PER_CLIENT: UNREACHABLE_LIMIT,
    TOKEN_LIMIT_PER_IP: UNREACHABLE_LIMIT,
    LOGIN_LIMIT_PER_IP: UNREACHABLE_LIMIT,
    LOGIN_LIMIT_PER_ACCOUNT_IP: UNREACHABLE_LIMIT,
    AUTHORIZATION_LIMIT_PER_IP: UNREACHABLE_LIMIT,
    // Sign-ins under way count as failures until they succeed: many at once must not lock the account.
    LOGIN_LOCKOUT_THRESHOLD: '1000000000',
    AUTHORIZATION_CODE_TTL: String(AUTHORIZATION_CODE_TTL_SECONDS),
    ...extra,
  };
}

export interface GatehouseProcess extends ServerProcess {
  /** How many processes serve (a WORKERS=2 cluster: its primary and two workers; one until WORKERS is supported). */
  processCount: number;
}

/** The Node.js options `npm start` runs Gatehouse with: package.json's start script is `node [options] src/main.ts`. */
function startScriptNodeOptions(): string[] {
  const { scripts } = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = scripts.start.trim().split(/\s+/);
  if (words[0] !== 'node' || words.at(-1) !== 'src/main.ts') throw new Error(`package.json's start script is not "node [options] src/main.ts": ${scripts.start}`);
  return words.slice(1, -1);
}

/**
 * Starts `node src/main.ts` (or another checkout's, `script`) with `npm start`'s Node.js options (this
 * checkout's, for another's too) and only PATH and HOME from the bench's own environment, and waits for /readyz.
 */
export async function startGatehouse(
  name: string, environment: Record<string, string>, backing: BackingServices, cleanup: Cleanup, script = 'src/main.ts',
): Promise<GatehouseProcess> {
  const server = await startServer({
    name, script, nodeOptions: startScriptNodeOptions(), port: Number(environment.PORT), readyPath: '/readyz',
    environment: { PATH: process.env.PATH, HOME: process.env.HOME, ...environment },
    errorLog: path.join(backing.folder, `${name.replaceAll(/\W+/g, '-')}.stderr.log`),
  }, cleanup);
  return { ...server, processCount: await settledProcessCount(server.pid) };
}

/**
 * The first instance to answer /readyz may be one of several still starting (cluster workers): the count of
 * processes is read once it has held still for two seconds (at most 30 s).
 */
async function settledProcessCount(pid: number): Promise<number> {
  let count = processTree(pid).length;
  let stableSince = Date.now();
  const deadline = Date.now() + 30_000;
  while (Date.now() - stableSince < 2000 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    const now = processTree(pid).length;
    if (now !== count) {
      count = now;
      stableSince = Date.now();
    }
  }
  return count;
}

export interface GatehouseSetup {
  runtime: Runtime;
  /** The scenarios' clients and person, registered once; `target` names a running server that shares them. */
  target(server: ServerProcess): Target;
}

/**
 * Opens a runtime on the run's database, store and keys (before any server starts: it migrates the database and
 * generates the development keys the servers then read) and registers two APIs, a service client allowed both, a
 * single-page app and a person with a password.
 */
export async function setUpGatehouse(environment: Record<string, string>, cleanup: Cleanup, apiTtls: { opaque?: number } = {}): Promise<GatehouseSetup> {
  const config = loadConfig({ ...environment, LOG_LEVEL: 'silent' });
  const runtime = await openRuntime(config, createLogger(config), { oneShot: true });
  cleanup.add('close the setup runtime', () => runtime.close());
  await runtime.apis.create({ identifier: OPAQUE_API.identifier, name: 'Bench opaque API', scopes: [{ name: OPAQUE_API.scope }], accessTokenFormat: 'opaque', accessTokenTtl: apiTtls.opaque });
  await runtime.apis.create({ identifier: JWT_API.identifier, name: 'Bench JWT API', scopes: [{ name: JWT_API.scope }], accessTokenFormat: 'jwt', signingAlg: 'ES256' });
  const service = await runtime.clients.create({ name: 'Bench service', type: 'service', apiScopes: [OPAQUE_API.scope, JWT_API.scope] });
  const singlePageApp = await runtime.clients.create({ name: 'Bench single-page app', type: 'spa', redirectUris: [REDIRECT_URI] });
  const user = await runtime.users.create({ email: PERSON.email, password: PERSON.password, name: PERSON.name, emailVerified: true });
  const person = { clientId: singlePageApp.client_id, accountId: user.id };
  return {
    runtime,
    target: (server) => ({
      name: 'gatehouse',
      origin: server.origin,
      pid: server.pid,
      serviceClient: { id: service.client_id, secret: String(service.client_secret) },
      publicClientId: singlePageApp.client_id,
      mintRefreshTokens: (count) => mintRefreshTokens(runtime.provider, person, count),
      mintAuthorizationCodes: (count) => mintAuthorizationCodes(runtime.provider, person, count),
    }),
  };
}
