// Redis through Sentinels (REDIS_SENTINEL_MASTER) and as a Redis Cluster (REDIS_CLUSTER): the Store contract
// holds on both, a whole Gatehouse signs a person in, rotates, limits and revokes on them, and what was
// written before a Sentinel failover still works after it. Each topology is made of throwaway redis-servers.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Redis } from 'ioredis';
import * as oauth from 'oauth4webapi';
import { RedisStore, type RedisConnection } from '../src/store/index.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { insecure, registerConfidential, signInToNewSpa } from './helpers/oauth.ts';
import { ThrowawayRedisCluster, ThrowawaySentinelSetup, eventually } from './helpers/redis.ts';
import { newPrefix, registerContract } from './helpers/store-contract.ts';

let folder: string | undefined;
let cluster: ThrowawayRedisCluster | undefined;
let sentinels: ThrowawaySentinelSetup | undefined;

test.before(async (t) => {
  t.timeout(90_000);
  folder = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-redis-topologies-'));
  await Promise.all(['cluster', 'sentinel'].map((name) => mkdir(path.join(folder!, name))));
  // Both are awaited even when one fails, so that after.always stops the one that started.
  const [clusterStart, sentinelStart] = await Promise.allSettled([
    ThrowawayRedisCluster.start(path.join(folder, 'cluster')),
    ThrowawaySentinelSetup.start(path.join(folder, 'sentinel')),
  ]);
  if (clusterStart.status === 'fulfilled') cluster = clusterStart.value;
  if (sentinelStart.status === 'fulfilled') sentinels = sentinelStart.value;
  for (const started of [clusterStart, sentinelStart]) if (started.status === 'rejected') throw started.reason;
});
test.after.always(async () => {
  await Promise.all([cluster?.stop(), sentinels?.stop()]);
  if (folder) await rm(folder, { recursive: true, force: true });
});

const clusterConnection = (): RedisConnection => ({ url: cluster!.url, cluster: true });
const sentinelConnection = (): RedisConnection => ({ url: sentinels!.url, sentinelMaster: ThrowawaySentinelSetup.MASTER_NAME });

for (const [name, connection] of [['redis cluster', clusterConnection], ['redis sentinel', sentinelConnection]] as const) {
  const open = (prefix: string): RedisStore => new RedisStore({ connection: connection(), prefix });
  registerContract({ name, open, openRacers: (prefix, _store, count) => Array.from({ length: count }, () => open(prefix)), unordered: name === 'redis cluster' });
}

test('[redis cluster] a store writes its records across the nodes, and deletes keys that live on different nodes at once', async (t) => {
  const store = new RedisStore({ connection: clusterConnection(), prefix: newPrefix() });
  t.teardown(() => store.close());
  const keys = Array.from({ length: 30 }, (_, index) => `Record:${index}`);
  await Promise.all(keys.map((key) => store.put(key, '"payload"', 60)));
  const perNode = await Promise.all(cluster!.nodes.map(async (node) => {
    const client = new Redis(node.url);
    try {
      return Number(/keys=(\d+)/.exec(await client.info('keyspace'))?.[1] ?? 0);
    } finally {
      client.disconnect();
    }
  }));
  t.true(perNode.filter((count) => count > 0).length > 1, `records on more than one node: ${perNode.join(', ')}`);
  await store.delete(keys);
  t.deepEqual(await Promise.all(keys.map((key) => store.get(key))), keys.map(() => undefined));
});

test('[redis cluster] the production check reads every node, and names each that would forget or evict', async (t) => {
  const store = new RedisStore({ connection: clusterConnection(), prefix: newPrefix() });
  t.teardown(() => store.close());
  const problems = await store.durabilityProblems();
  for (const node of cluster!.nodes) {
    t.true(problems.some((problem) => problem.includes(`127.0.0.1:${node.port}`) && /append-only file/.test(problem)), `node ${node.port}: ${problems.join("; ")}`);
  }
});

/** A person signed in to a new SPA on the server, and the refresh token rotated once. */
async function signedInAndRefreshed(t: ExecutionContext, server: TestServer) {
  const { as, client, tokens } = await signInToNewSpa(server);
  t.truthy(tokens.refresh_token);
  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.not(refreshed.refresh_token, tokens.refresh_token);
  return { as, client, tokens, refreshed };
}

test.serial('[redis cluster] a whole Gatehouse: sign-in, code exchange, rotation, reuse revoking the grant, a client limit', async (t) => {
  const server = await startTestServer({ REDIS_URL: cluster!.url, REDIS_CLUSTER: 'true', TOKEN_LIMIT_PER_CLIENT: '5/60' });
  t.teardown(() => server.close());
  const { as, client, tokens, refreshed } = await signedInAndRefreshed(t, server);
  const userinfo = await oauth.userInfoRequest(as, client, refreshed.access_token, insecure);
  t.is(userinfo.status, 200);

  const reused = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(reused.status, 400);
  const afterReuse = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.refresh_token!, insecure);
  t.is(afterReuse.status, 400, 'the reuse revoked the whole grant, wherever its tokens live');

  const service = await registerConfidential(server, 'service');
  const statuses: number[] = [];
  for (let attempt = 0; attempt < 6; attempt += 1) {
    statuses.push((await oauth.clientCredentialsGrantRequest(as, service.client, oauth.ClientSecretPost(service.secret), { scope: '' }, insecure)).status);
  }
  t.deepEqual(statuses, [200, 200, 200, 200, 200, 429]);
});

test.serial('[redis sentinel] a whole Gatehouse through a failover: tokens and refresh tokens written before it work after it', async (t) => {
  t.timeout(120_000);
  const server = await startTestServer({ REDIS_URL: sentinels!.url, REDIS_SENTINEL_MASTER: ThrowawaySentinelSetup.MASTER_NAME });
  t.teardown(() => server.close());
  const { as, client, refreshed } = await signedInAndRefreshed(t, server);
  const before = await sentinels!.masterPort();
  t.is(before, sentinels!.master.port);

  // Replication is asynchronous: fail over once the replica has everything (as an operator's planned switch does).
  const [master, replica] = [new Redis(sentinels!.master.url), new Redis(sentinels!.replica.url)];
  t.teardown(() => { master.disconnect(); replica.disconnect(); });
  const offset = (info: string): number => Number(/master_repl_offset:(\d+)/.exec(info)?.[1]);
  await eventually(async () => {
    if (offset(await replica.info('replication')) < offset(await master.info('replication'))) throw new Error('the replica is behind');
  }, 10_000);
  const sentinel = new Redis(sentinels!.sentinel.url);
  t.teardown(() => sentinel.disconnect());
  await sentinel.call('SENTINEL', 'FAILOVER', ThrowawaySentinelSetup.MASTER_NAME);
  await eventually(async () => {
    if ((await sentinels!.masterPort()) !== sentinels!.replica.port) throw new Error('not failed over yet');
  }, 30_000);

  // While Gatehouse finds the new master a request may get 503 (never a 500); then the chain goes on.
  let response: Response;
  const statuses: number[] = [];
  const deadline = Date.now() + 30_000;
  do {
    response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshed.refresh_token!, insecure);
    statuses.push(response.status);
  } while (response.status === 503 && Date.now() < deadline);
  t.true(statuses.slice(0, -1).every((status) => status === 503), `statuses: ${statuses.join(', ')}`);
  const afterFailover = await oauth.processRefreshTokenResponse(as, client, response);
  t.not(afterFailover.refresh_token, refreshed.refresh_token);
  t.is((await oauth.userInfoRequest(as, client, afterFailover.access_token, insecure)).status, 200);
  t.is((await oauth.userInfoRequest(as, client, refreshed.access_token, insecure)).status, 200, 'an access token from before the failover still works');
});
