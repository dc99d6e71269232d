// A confidential web app through openid-client, the way a Node server uses it: client_secret_basic and
// client_secret_post, PKCE, state and nonce checked by the library, userinfo, refresh with offline access,
// and RP-initiated logout built by the library, with and without a Gatehouse session.
import test from 'ava';
import * as client from 'openid-client';
import { PASSWORD, POST_LOGOUT_REDIRECT_URI, REDIRECT_URI, createUser, signIn } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent, formAction, formField, isRedirect } from './helpers/user-agent.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

const AUTHENTICATION = { client_secret_basic: client.ClientSecretBasic, client_secret_post: client.ClientSecretPost } as const;

async function webApp(method: keyof typeof AUTHENTICATION) {
  const registered = await server.runtime.clients.create({
    name: `Web app (${method})`, type: 'web', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_REDIRECT_URI], tokenEndpointAuthMethod: method,
  });
  const secret = String(registered.client_secret);
  const config = await client.discovery(new URL(server.issuer), registered.client_id, secret, AUTHENTICATION[method](secret), { execute: [client.allowInsecureRequests] });
  return { registered, secret, config };
}

/** Signs a new person in the way the app does: the library builds the request and checks the callback. */
async function signInThroughApp(config: client.Configuration, agent = new UserAgent()) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI, scope: 'openid email profile offline_access', prompt: 'consent', state, nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
  });
  const user = await createUser(server);
  const callback = await signIn(agent, url, { email: user.email, password: PASSWORD });
  const tokens = await client.authorizationCodeGrant(config, callback, { pkceCodeVerifier: codeVerifier, expectedState: state, expectedNonce: nonce });
  return { user, agent, tokens };
}

for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
  test(`a web app with ${method} signs in, reads userinfo and refreshes through openid-client`, async (t) => {
    const { config, registered } = await webApp(method);
    t.is(registered.token_endpoint_auth_method, method);
    const { user, tokens } = await signInThroughApp(config);
    t.is(tokens.claims()?.sub, user.id);
    const info = await client.fetchUserInfo(config, tokens.access_token, user.id);
    t.like(info, { sub: user.id, email: user.email, name: 'Ada Lovelace' });
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    t.truthy(refreshed.access_token);
    t.not(refreshed.refresh_token, tokens.refresh_token);
  });
}

test('a web app with a wrong secret is refused with invalid_client, whichever way it presents it', async (t) => {
  for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
    const { registered } = await webApp(method);
    const wrong = await client.discovery(new URL(server.issuer), registered.client_id, 'not-the-secret', AUTHENTICATION[method]('not-the-secret'), { execute: [client.allowInsecureRequests] });
    const error = await t.throwsAsync(client.refreshTokenGrant(wrong, 'not-a-refresh-token'));
    // Basic authentication is refused with a 401 challenge naming the error (RFC 6749 5.2), which the library reads.
    const said = error instanceof client.WWWAuthenticateChallengeError ? error.cause[0]?.parameters.error : (error as client.ResponseBodyError).error;
    t.is(said, 'invalid_client', method);
  }
});

test('logout built by openid-client comes back to the app with its state, with the session (after confirming) and without it', async (t) => {
  const { config } = await webApp('client_secret_basic');
  const { agent, tokens } = await signInThroughApp(config);
  const endSession = (state: string) => client.buildEndSessionUrl(config, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI, state });

  // With the session: the confirmation page, then back.
  let { response, url } = await agent.follow(endSession('with-session'));
  t.is(response.status, 200);
  const confirmation = await response.text();
  ({ response, url } = await agent.submit(formAction(confirmation, /session\/end\/confirm/), { xsrf: formField(confirmation, 'xsrf'), logout: 'yes' }));
  t.true(isRedirect(response.status));
  t.is(`${url.origin}${url.pathname}`, POST_LOGOUT_REDIRECT_URI);
  t.is(url.searchParams.get('state'), 'with-session');

  // Without it (signed out everywhere meanwhile): the engine's self-submitting form, then back.
  const again = await signInThroughApp(config);
  await server.runtime.accountSessions.endAll(again.user.id, { reason: 'signed_out_everywhere' });
  const hint = client.buildEndSessionUrl(config, { id_token_hint: again.tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_REDIRECT_URI, state: 'no-session' });
  ({ response, url } = await again.agent.follow(hint));
  t.is(response.status, 200);
  const selfSubmitting = await response.text();
  t.regex(response.headers.get('content-security-policy') ?? '', new RegExp(`form-action 'self' ${new URL(POST_LOGOUT_REDIRECT_URI).origin.replace(/[.]/g, '\\.')}`), 'the browser may follow the form to the app');
  ({ response, url } = await again.agent.submit(formAction(selfSubmitting, /session\/end\/confirm/), { xsrf: formField(selfSubmitting, 'xsrf'), logout: 'yes' }));
  t.is(`${url.origin}${url.pathname}`, POST_LOGOUT_REDIRECT_URI);
  t.is(url.searchParams.get('state'), 'no-session');
});
