// One refresh token presented many times at once (a single-page app open in several tabs): without a grace
// period exactly one presentation gets new tokens and the reuse revokes the grant — the chain never forks; with
// a client's grace period every presentation gets that same answer, and the grant lives on.
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { ClientError } from '../src/clients/clients.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { SignJWT, exportJWK } from 'jose';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerSpa, signIn, signInToNewSpa } from './helpers/oauth.ts';
import { UserAgent } from './helpers/user-agent.ts';

let server: TestServer;

test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

/** `count` refreshes with the same token at the same moment: their statuses and bodies. */
async function refreshTogether(as: oauth.AuthorizationServer, client: oauth.Client, refreshToken: string, count: number) {
  return Promise.all(Array.from({ length: count }, async () => {
    const response = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), refreshToken, insecure);
    return { status: response.status, body: await response.json() as { access_token?: string; refresh_token?: string; error?: string } };
  }));
}

test.serial('without a grace period: of ten refreshes at once exactly one gets tokens, and the reuse revokes the whole grant', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  const answers = await refreshTogether(as, client, tokens.refresh_token!, 10);
  const winners = answers.filter((answer) => answer.status === 200);
  t.is(winners.length, 1, JSON.stringify(answers.map((answer) => answer.status)));
  t.true(answers.filter((answer) => answer.status !== 200).every((answer) => answer.status === 400 && answer.body.error === 'invalid_grant'));
  // No second chain: the winner's tokens went with the grant.
  const next = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), winners[0]!.body.refresh_token!, insecure);
  t.is(next.status, 400);
  t.is((await oauth.userInfoRequest(as, client, winners[0]!.body.access_token!, insecure)).status, 401);
});

test.serial('with a grace period: ten refreshes at once all get the very same answer, whose refresh token goes on', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 10 });
  const answers = await refreshTogether(as, client, tokens.refresh_token!, 10);
  t.deepEqual(answers.map((answer) => answer.status), Array(10).fill(200));
  const [first] = answers;
  for (const answer of answers) t.deepEqual(answer.body, first!.body, 'one answer for all');
  t.not(first!.body.refresh_token, tokens.refresh_token);

  // Each tab's copy works: the chain goes on from the one new refresh token.
  t.is((await oauth.userInfoRequest(as, client, first!.body.access_token!, insecure)).status, 200);
  const next = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), first!.body.refresh_token!, insecure));
  t.truthy(next.access_token);
  t.is((await oauth.userInfoRequest(as, client, next.access_token, insecure)).status, 200, 'the grant was not revoked');
});

test.serial('within the grace period, another client presenting the token is refused (invalid_grant), and the first answer stays its client\'s', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 10 });
  const { client: other } = await registerSpa(server);
  await server.runtime.clients.update(other.client_id, { refreshTokenGracePeriod: 10 });
  const first = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));

  const stolen = await oauth.refreshTokenGrantRequest(as, other, oauth.None(), tokens.refresh_token!, insecure);
  t.is(stolen.status, 400);
  t.is((await stolen.json() as { error: string }).error, 'invalid_grant');
  const again = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  t.is(again.refresh_token, first.refresh_token, 'its own client still gets the first answer');
  t.is((await oauth.userInfoRequest(as, client, first.access_token, insecure)).status, 200, 'and its grant lives on');
});

/** A DPoP proof for a POST to `url`, signed by `signer`, naming `named`'s public key (a forger names another's). */
async function dpopProof(url: string, signer: CryptoKeyPair, named: CryptoKeyPair = signer): Promise<string> {
  return new SignJWT({ htm: 'POST', htu: url, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000) })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: await exportJWK(named.publicKey) })
    .sign(signer.privateKey);
}

test.serial('within the grace period a DPoP-bound refresh token\'s first answer goes only to a valid, unspent proof of the same key', async (t) => {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 10 });
  const user = await createUser(server);
  const key = await oauth.generateKeyPair('ES256');
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier,
      { ...insecure, DPoP: oauth.DPoP(client, key) }),
    { expectedNonce: request.nonce, requireIdToken: true });
  const refresh = async (proof: string) => {
    const response = await fetch(as.token_endpoint!, {
      method: 'POST', headers: { dpop: proof, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token!, client_id: client.client_id }),
    });
    return { status: response.status, body: await response.json() as { refresh_token?: string; error?: string } };
  };

  const firstProof = await dpopProof(as.token_endpoint!, key);
  const first = await refresh(firstProof);
  t.is(first.status, 200, JSON.stringify(first.body));
  const forged = await refresh(await dpopProof(as.token_endpoint!, await oauth.generateKeyPair('ES256'), key));
  t.is(forged.status, 400, 'a proof naming the key but signed by another is refused');
  t.is(forged.body.error, 'invalid_dpop_proof');
  const replayed = await refresh(firstProof);
  t.is(replayed.status, 400, 'the first proof again is a replay');
  const again = await refresh(await dpopProof(as.token_endpoint!, key));
  t.is(again.status, 200, 'a new proof of the key gets the first answer');
  t.is(again.body.refresh_token, first.body.refresh_token);
});

test.serial('within the grace period, a repeat asking for other scopes or another API is refused alone (invalid_grant): the first answer would not fit, and the grant lives on', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 30 });
  const refresh = (parameters: Record<string, string>) => oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, { ...insecure, additionalParameters: parameters });
  const first = await oauth.processRefreshTokenResponse(as, client, await refresh({ scope: 'openid email' }));
  const same = await oauth.processRefreshTokenResponse(as, client, await refresh({ scope: 'email openid' }));
  t.is(same.refresh_token, first.refresh_token, 'the same request, in another order, gets the first answer');
  for (const other of [{ scope: 'openid' }, { scope: 'openid email', resource: `${server.issuer}/admin/v1` }] as Array<Record<string, string>>) {
    const refused = await refresh(other);
    t.is(refused.status, 400);
    t.like(await refused.json(), { error: 'invalid_grant', error_description: 'this refresh token was just used for another resource or scope; use the refresh token that answer gave' });
  }
  const next = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), first.refresh_token!, insecure));
  t.is((await oauth.userInfoRequest(as, client, next.access_token, insecure)).status, 200, 'the grant was not revoked');
});

test.serial('within the grace period, the first answer is not given again once its tokens were revoked (signed out everywhere): invalid_grant', async (t) => {
  const { as, client, tokens, user } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 30 });
  await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  await server.runtime.accountSessions.endAll(user.id, { reason: 'signed_out_everywhere' });
  const again = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(again.status, 400, 'no tokens that are dead already, as if the refresh had worked');
  t.like(await again.json(), { error: 'invalid_grant' });
});

test.serial('past the grace period, the old refresh token presented again is reuse: the grant is revoked', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  await server.runtime.clients.update(client.client_id, { refreshTokenGracePeriod: 1 });
  const first = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure));
  // The answer is kept for its TTL in the store, which only the store's clock ends (as in the store's contract test).
  await sleep(1200);
  const late = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token!, insecure);
  t.is(late.status, 400);
  t.is((await oauth.userInfoRequest(as, client, first.access_token, insecure)).status, 401, 'revoked with the grant');
});

test.serial('a grace period is whole seconds up to 60, for clients that get refresh tokens', async (t) => {
  const { clients } = server.runtime;
  await t.throwsAsync(clients.create({ name: 'Service', type: 'service', refreshTokenGracePeriod: 5 }), { instanceOf: ClientError, message: /service client gets no refresh tokens/ });
  const spa = await clients.create({ name: 'Tabs', type: 'spa', redirectUris: ['https://app.example.com/cb'], refreshTokenGracePeriod: 5 });
  t.is(spa.refresh_token_grace_period, 5);
  await t.throwsAsync(clients.update(spa.client_id, { refreshTokenGracePeriod: 61 }), { instanceOf: ClientError, message: /at most 60/ });
  const off = await clients.update(spa.client_id, { refreshTokenGracePeriod: 0 });
  t.false('refresh_token_grace_period' in off!, '0 turns it off');
  // Registrants cannot give themselves one: test/dynamic-registration.test.ts.
});
