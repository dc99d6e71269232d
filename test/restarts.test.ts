// Gatehouse as a process among others: started before its database answers, it waits (STARTUP_WAIT) and
// then serves; restarted in the middle of a sign-in or of a grant's life, it loses nothing (all of it is in
// the database and the store, its keys and cookie secrets in KEYS_DIR or the environment).
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createTcpServer, connect, type Server as TcpServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import * as oauth from 'oauth4webapi';
import { openDatabase } from '../src/db/index.ts';
import { createTestDatabase } from './helpers/database.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, insecure, signIn } from './helpers/oauth.ts';
import { cleanEnvironment, runNode, startNode, type Finished } from './helpers/process.ts';
import { ThrowawayRedisServer, eventually, findFreePort } from './helpers/redis.ts';
import { UserAgent, formField } from './helpers/user-agent.ts';

async function folder(t: ExecutionContext): Promise<string> {
  const made = await mkdtemp(path.join(os.tmpdir(), 'gh-restart-'));
  t.teardown(() => rm(made, { recursive: true, force: true }));
  return made;
}

/** A Gatehouse process (src/main.ts) on a port, stopped with SIGTERM like an orchestrator does. */
function startGatehouse(t: ExecutionContext, environment: Record<string, string>) {
  const started = startNode(['src/main.ts'], cleanEnvironment({ HOST: '127.0.0.1', LOG_LEVEL: 'info', ...environment }));
  t.teardown(() => void started.child.kill('SIGKILL'));
  const origin = `http://127.0.0.1:${environment.PORT}`;
  return {
    ...started,
    origin,
    async ready(): Promise<void> {
      await eventually(async () => {
        const response = await fetch(`${origin}/readyz`);
        if (response.status !== 200) throw new Error(`readyz ${response.status}`);
      }, 90_000);
    },
    async stop(): Promise<Finished> {
      started.child.kill('SIGTERM');
      return started.finished;
    },
  };
}

/** A TCP port that forwards to the database once `open()` is called: a database that is not up yet. */
async function lateDatabase(target: { host: string; port: number } | { socket: string }): Promise<{ port: number; open(): Promise<void>; close(): Promise<void> }> {
  const port = await findFreePort();
  const sockets = new Set<Socket>();
  let server: TcpServer | undefined;
  return {
    port,
    async open() {
      server = createTcpServer((incoming) => {
        const outgoing = 'socket' in target ? connect(target.socket) : connect(target.port, target.host);
        for (const socket of [incoming, outgoing]) {
          sockets.add(socket);
          socket.on('close', () => sockets.delete(socket)).on('error', () => {});
        }
        incoming.pipe(outgoing).pipe(incoming);
      });
      server.listen(port, '127.0.0.1');
      await once(server, 'listening');
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
    },
  };
}

test('started before its database answers, Gatehouse waits, saying so, and serves once it does', async (t) => {
  t.timeout(180_000);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  // The embedded database is hosted here, by the test, as a server of its own would be.
  const hosted = database.databaseUrl ? undefined : await openDatabase({ dataDir: database.dataDir });
  t.teardown(async () => hosted?.close());
  const target = database.databaseUrl
    ? { host: new URL(database.databaseUrl).hostname, port: Number(new URL(database.databaseUrl).port || 5432) }
    : { socket: path.join(database.dataDir, '.s.PGSQL.5432') };
  const late = await lateDatabase(target);
  t.teardown(() => late.close());
  const url = new URL(database.databaseUrl ?? 'postgresql://postgres@localhost/postgres');
  url.host = `127.0.0.1:${late.port}`;

  const keys = await folder(t);
  const gatehouse = startGatehouse(t, { PORT: String(await findFreePort()), DATABASE_URL: url.toString(), KEYS_DIR: keys, DATA_DIR: keys, STARTUP_WAIT: '120' });
  let output = '';
  gatehouse.child.stdout!.on('data', (chunk: Buffer) => (output += String(chunk)));
  await eventually(async () => {
    if (!output.includes('"msg":"waiting for the database to answer"')) throw new Error('not waiting yet');
  }, 60_000);
  await late.open();
  await gatehouse.ready();
  const discovery = await fetch(`${gatehouse.origin}/.well-known/openid-configuration`);
  t.is(discovery.status, 200);
  t.is((await gatehouse.stop()).code, 0);
});

test('restarted in the middle of a sign-in, and again during the grant, Gatehouse loses nothing', async (t) => {
  t.timeout(240_000);
  const database = await createTestDatabase();
  t.teardown(() => database.drop());
  const redis = process.env.REDIS_URL ? undefined : await ThrowawayRedisServer.start();
  t.teardown(async () => redis?.stop());
  const keys = await folder(t);
  const port = String(await findFreePort());
  const environment = {
    PORT: port, ISSUER: `http://127.0.0.1:${port}`, KEYS_DIR: keys, DATA_DIR: database.dataDir, STORE_PREFIX: `gatehouse-restarts-${Date.now()}:`,
    REDIS_URL: redis?.url ?? process.env.REDIS_URL!, ...(database.databaseUrl ? { DATABASE_URL: database.databaseUrl } : {}),
  };
  const email = `restart-${Date.now()}@example.com`;
  let gatehouse = startGatehouse(t, environment);
  await gatehouse.ready();
  // Through the CLI, beside the running server, as an administrator would.
  const cli = (args: string[], input?: string) => runNode(['bin/gatehouse.js', ...args], cleanEnvironment({ ...environment, LOG_LEVEL: 'silent' }), 120_000, input);
  t.is((await cli(['users', 'create', '--email', email, '--password-stdin', '--verified'], PASSWORD)).code, 0);
  const created = await cli(['clients', 'create', '--name', 'Restarts', '--type', 'spa', '--redirect-uri', REDIRECT_URI]);
  const client: oauth.Client = { client_id: (JSON.parse(created.stdout) as { client_id: string }).client_id, token_endpoint_auth_method: 'none' };

  const issuer = new URL(gatehouse.origin);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const login = await agent.follow(request.url);
  const loginPage = await login.response.text();

  t.is((await gatehouse.stop()).code, 0);
  gatehouse = startGatehouse(t, environment);
  await gatehouse.ready();

  // The login form of the Gatehouse that stopped, sent to the one that started.
  const submitted = await agent.submit(new URL(`${login.url.pathname}/login`, login.url), { csrf: formField(loginPage, 'csrf'), email, password: PASSWORD });
  const callback = submitted.url.href.startsWith(REDIRECT_URI) ? submitted.url : await signIn(agent, submitted.url, { email, password: PASSWORD });
  const parameters = oauth.validateAuthResponse(as, client, callback, request.state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure), { expectedNonce: request.nonce, requireIdToken: true });

  t.is((await gatehouse.stop()).code, 0);
  gatehouse = startGatehouse(t, environment);
  await gatehouse.ready();

  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.is((await oauth.userInfoRequest(as, client, refreshed.access_token, insecure)).status, 200);
  const silent = await authorizationRequest(as, client.client_id, { prompt: 'none' });
  const again = await agent.follow(silent.url);
  t.truthy(again.url.searchParams.get('code'), 'the session outlived both restarts');
  t.is((await gatehouse.stop()).code, 0);
});
