// REFRESH_TOKEN_TTL is a chain's whole life, counted from the code exchange: rotation hands on what is left of it and
// never extends it, for a single-page app's chain and a web app's offline one alike.
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent } from './helpers/user-agent.ts';
import { PASSWORD, REDIRECT_URI, authorizationRequest, createUser, discover, insecure, registerConfidential, signIn, signInToNewSpa } from './helpers/oauth.ts';

const LIFETIME_SECONDS = 6;
let server: TestServer;

test.before(async () => {
  server = await startTestServer({ REFRESH_TOKEN_TTL: String(LIFETIME_SECONDS) });
});
test.after.always(async () => {
  await server?.close();
});

/** Refreshes halfway through the lifetime (it works), then a second after the lifetime (refused): not extended by the first. */
async function refreshedPastItsLifetime(as: oauth.AuthorizationServer, client: oauth.Client, authentication: oauth.ClientAuth, refreshToken: string, exchangedAt: number) {
  await sleep(exchangedAt + (LIFETIME_SECONDS / 2) * 1000 - Date.now());
  const halfway = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, authentication, refreshToken, insecure));
  await sleep(exchangedAt + (LIFETIME_SECONDS + 1) * 1000 - Date.now());
  return oauth.refreshTokenGrantRequest(as, client, authentication, halfway.refresh_token!, insecure);
}

test('a single-page app’s chain ends REFRESH_TOKEN_TTL after the code exchange, however often it rotates', async (t) => {
  const { as, client, tokens } = await signInToNewSpa(server);
  const late = await refreshedPastItsLifetime(as, client, oauth.None(), tokens.refresh_token!, Date.now());
  t.like(await late.json(), { error: 'invalid_grant' });
});

test('a web app’s offline_access chain ends REFRESH_TOKEN_TTL after the code exchange, however often it rotates', async (t) => {
  const as = await discover(server);
  const { client, secret } = await registerConfidential(server, 'web');
  const authentication = oauth.ClientSecretBasic(secret);
  const user = await createUser(server);
  const request = await authorizationRequest(as, client.client_id, { scope: 'openid offline_access', prompt: 'consent' });
  const callback = await signIn(new UserAgent(), request.url, { email: user.email, password: PASSWORD });
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, authentication, oauth.validateAuthResponse(as, client, callback, request.state), REDIRECT_URI, request.codeVerifier, insecure),
    { expectedNonce: request.nonce });
  const late = await refreshedPastItsLifetime(as, client, authentication, tokens.refresh_token!, Date.now());
  t.like(await late.json(), { error: 'invalid_grant' });
});
