// Redis goes away in the middle of a token request: right after the engine consumed the code or refresh token,
// before it saved what it is exchanged for. The client is answered 503 and tries again once Redis is back, as a
// 503 tells it to: what it presents must work, not be taken for a replay that revokes the grant. Nor when the store
// is only slow, and another tab presents the same refresh token within its client's grace period.
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { REDIRECT_URI, insecure, signInToNewSpa, signInWithNewSpa } from './helpers/oauth.ts';
import { ThrowawayRedisServer, eventually } from './helpers/redis.ts';
import { CuttableProxy } from './helpers/tcp-proxy.ts';

let redis: ThrowawayRedisServer;
let proxy: CuttableProxy;
let server: TestServer;

test.before(async () => {
  redis = await ThrowawayRedisServer.start();
  proxy = new CuttableProxy({ host: '127.0.0.1', port: Number(new URL(redis.url).port) });
  await proxy.start();
  server = await startTestServer({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` });
});
test.after.always(async () => {
  await server?.close();
  await proxy?.close();
  await redis?.stop();
});

/** The store's consume of a `model` record: its script (EVALSHA) with one key and one argument, the time. */
const consumeOf = (model: string) => (request: string) => new RegExp(`\\*5\\r\\n\\$7\\r\\nevalsha\\r\\n\\$40\\r\\n[0-9a-f]{40}\\r\\n\\$1\\r\\n1\\r\\n\\$\\d+\\r\\n[^\\r]*${model}:`, 'i').test(request);

/** Redis answers the consume of `model`, then goes down; the request gets its 503; Redis is back. */
async function outageRightAfterConsuming<T extends Response>(model: string, request: () => Promise<T>): Promise<T> {
  proxy.cutAfterReplyTo(consumeOf(model));
  const answer = await request();
  await proxy.restore();
  await eventually(async () => {
    if ((await fetch(`${server.issuer}/readyz`)).status !== 200) throw new Error('not ready yet');
  }, 30_000);
  return answer;
}

test.serial('a refresh answered 503 because Redis went down after its token was consumed: the same token works once Redis is back', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);

  const during = await outageRightAfterConsuming('RefreshToken', () => oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.is(during.status, 503, await during.text());
  // Given back as soon as the store answers (in the background, or by the retry's own read of it, if first).
  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.truthy(refreshed.refresh_token);
  t.is((await oauth.userInfoRequest(as, client, refreshed.access_token, insecure)).status, 200, 'the grant lives on');
  // And the token given back is spent now, as any: its reuse is a replay, which revokes the grant.
  const replay = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(replay.status, 400);
  t.is((await oauth.userInfoRequest(as, client, refreshed.access_token, insecure)).status, 401);
});

test.serial('a refresh whose tokens were made but whose grace-period copy the store took too long to keep: answered, and the token it replaced stays spent', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 3 });
  // The copy of the answer kept for other tabs reaches Redis only after its command timed out (a slow path).
  proxy.holdBack((request) => request.includes('refresh-grace:') && request.includes('sealed'));
  const first = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  proxy.release();
  await eventually(async () => {
    if ((await fetch(`${server.issuer}/readyz`)).status !== 200) throw new Error('not ready yet');
  }, 30_000);
  // Past the grace period: the token replaced is spent, and presenting it is a replay that revokes the grant.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  t.is((await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure)).status, 400);
  t.is((await oauth.refreshTokenGrantRequest(as, client, oauth.None(), first.refresh_token!, insecure)).status, 400, 'one chain: its successor is revoked with the grant');
});

test.serial('a code exchange answered 503 because Redis went down after the code was consumed: the same code works once Redis is back', async (t) => {
  const { as, client, request, parameters } = await signInWithNewSpa(server);
  const during = await outageRightAfterConsuming('AuthorizationCode', () => oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure));
  t.is(during.status, 503, await during.text());
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce, requireIdToken: true });
  t.is((await oauth.userInfoRequest(as, client, tokens.access_token, insecure)).status, 200);
});

test.serial('a refresh slower than its client\'s grace period (a slow store): a repeat sent within the period while it is under way gets the same answer, and the grant lives on', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 1 });
  // The first presentation's consume, and all that follows on the store's connection, waits 1.5 s.
  proxy.holdBack(consumeOf('RefreshToken'));
  const refresh = () => oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  const first = refresh();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const repeat = refresh();
  await new Promise((resolve) => setTimeout(resolve, 1200));
  proxy.release();
  const [firstAnswer, repeatAnswer] = await Promise.all([first, repeat]);
  const firstTokens = await oauth.processRefreshTokenResponse(as, client, firstAnswer);
  const repeatTokens = await oauth.processRefreshTokenResponse(as, client, repeatAnswer);
  t.is(repeatTokens.refresh_token, firstTokens.refresh_token, 'the very same answer');
  t.is((await oauth.userInfoRequest(as, client, firstTokens.access_token, insecure)).status, 200, 'the grant lives on');
  t.truthy((await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), firstTokens.refresh_token!, insecure))).refresh_token);
});
