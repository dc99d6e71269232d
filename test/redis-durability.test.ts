// Redis as a store of record, under load: a redis-server with an append-only file is killed while token
// requests pour in. Requests that need it get a quick 503 (never a 500, never a hang), /readyz says so, and
// once Redis is back with its file the same session, refresh token and access tokens work: nothing lost.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { authorizationRequest, insecure, registerConfidential, signInToNewSpa } from './helpers/oauth.ts';
import { ThrowawayRedisServer, eventually } from './helpers/redis.ts';

let redis: ThrowawayRedisServer;
let server: TestServer;
let dataDir: string;

test.before(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'gh-aof-'));
  // Every write on disk before it is acknowledged, as a store of record should be (everysec risks a second).
  redis = await ThrowawayRedisServer.start(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dataDir]);
  server = await startTestServer({ REDIS_URL: redis.url, TOKEN_LIMIT_PER_CLIENT: '1000000/60', TOKEN_LIMIT_PER_IP: '1000000/60' });
});
test.after.always(async () => {
  await server?.close();
  await redis?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  error?: string;
  milliseconds: number;
  afterKill: boolean;
  accessToken?: string;
}

test('Redis killed under load: quick 503s, /readyz says so; back with its append-only file, nothing is lost', async (t) => {
  t.timeout(180_000);
  const { as, client: spa, agent, tokens } = await signInToNewSpa(server);
  const { client, secret } = await registerConfidential(server, 'service');
  const answers: Answer[] = [];
  let killed = false;
  let loading = true;
  const worker = async () => {
    while (loading) {
      const started = performance.now();
      const afterKill = killed;
      try {
        const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(secret), new URLSearchParams(), insecure);
        const body = await response.json() as { error?: string; access_token?: string };
        answers.push({ status: response.status, error: body.error, accessToken: body.access_token, milliseconds: performance.now() - started, afterKill });
      } catch {
        answers.push({ status: 0, milliseconds: performance.now() - started, afterKill });
      }
    }
  };
  const workers = Array.from({ length: 8 }, worker);
  await eventually(async () => {
    if (answers.filter((answer) => answer.status === 200).length < 100) throw new Error('warming up');
  }, 60_000);
  killed = true;
  await redis.kill();
  await eventually(async () => {
    if (answers.filter((answer) => answer.afterKill && answer.status === 503).length < 50) throw new Error('not yet refused enough');
  }, 60_000);
  const ready = await fetch(`${server.issuer}/readyz`);
  t.is(ready.status, 503);
  t.like(await ready.json(), { checks: { store: 'down' } });
  loading = false;
  await Promise.all(workers);

  const statuses = new Set(answers.map((answer) => answer.status));
  t.deepEqual([...statuses].sort(), [200, 503], 'every request answered: a token, or 503');
  t.true(answers.filter((answer) => answer.status === 503).every((answer) => answer.error === 'temporarily_unavailable'));
  // A hang would last until the client gave up; the store's command timeout is 2 s.
  const slowest = Math.max(...answers.filter((answer) => answer.afterKill).map((answer) => answer.milliseconds));
  t.true(slowest < 5000, `the slowest answer during the outage took ${Math.round(slowest)} ms`);

  await redis.start();
  await eventually(async () => {
    if ((await fetch(`${server.issuer}/readyz`)).status !== 200) throw new Error('not ready yet');
  }, 60_000);
  // Issued before the kill, all still there: an access token of the load, the person's refresh token and session.
  const lastIssued = answers.filter((answer) => !answer.afterKill && answer.accessToken).at(-1)!;
  const introspected = await oauth.introspectionRequest(as, client, oauth.ClientSecretBasic(secret), lastIssued.accessToken!, insecure);
  t.like(await introspected.json(), { active: true });
  const refreshed = await oauth.processRefreshTokenResponse(as, spa, await oauth.refreshTokenGrantRequest(as, spa, oauth.None(), tokens.refresh_token!, insecure));
  t.truthy(refreshed.access_token);
  const silent = await authorizationRequest(as, spa.client_id, { prompt: 'none' });
  const again = await agent.follow(silent.url);
  t.truthy(again.url.searchParams.get('code'), 'the session is still there');
});
