// Native apps (RFC 8252) through openid-client, as a desktop or mobile app would use it: a public client with
// PKCE, redirected to the loopback interface on whatever port the app got (registered without one), or to a
// private-use URI scheme; refresh tokens with offline_access; and the redirect URIs such an app may not register.
import test from 'ava';
import * as client from 'openid-client';
import { ClientError } from '../src/clients/clients.ts';
import { PASSWORD, createUser, signIn } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent } from './helpers/user-agent.ts';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

/** openid-client's configuration for a public client (the development server is on http). */
const configurationFor = (clientId: string) => client.discovery(new URL(server.issuer), clientId, undefined, client.None(), { execute: [client.allowInsecureRequests] });

/** Signs a new person in through the app's redirect URI; the callback URL the app receives, and what it must check it with. */
async function signInThroughApp(config: client.Configuration, redirectUri: string) {
  const codeVerifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri, scope: 'openid email offline_access', prompt: 'consent', state,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier), code_challenge_method: 'S256',
  });
  const user = await createUser(server);
  const callback = await signIn(new UserAgent(), url, { email: user.email, password: PASSWORD });
  return { user, callback, checks: { pkceCodeVerifier: codeVerifier, expectedState: state } };
}

test('a native app registered with http://127.0.0.1/callback signs in on any port the system gave it, and its refresh tokens rotate', async (t) => {
  const registered = await server.runtime.clients.create({ name: 'Desktop app', type: 'native', redirectUris: ['http://127.0.0.1/callback'] });
  t.like(registered, { application_type: 'native', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] });
  t.false('client_secret' in registered, 'an installed app cannot keep a secret');
  const config = await configurationFor(registered.client_id);

  const { user, callback, checks } = await signInThroughApp(config, 'http://127.0.0.1:53187/callback');
  t.is(`${callback.origin}${callback.pathname}`, 'http://127.0.0.1:53187/callback');
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  t.is(tokens.claims()?.sub, user.id);
  t.truthy(tokens.refresh_token, 'offline access, asked for and consented to');
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
  t.truthy(refreshed.access_token);
  t.not(refreshed.refresh_token, tokens.refresh_token, 'rotated');
  const reused = await t.throwsAsync(client.refreshTokenGrant(config, tokens.refresh_token!));
  t.is((reused as client.ResponseBodyError).error, 'invalid_grant', 'a rotated refresh token is refused (and revokes the grant)');

  // The port is the app's; the rest of the URI is not: another path, or localhost, is refused at the authorization endpoint.
  for (const redirectUri of ['http://127.0.0.1:53187/other', 'http://localhost:53187/callback', 'http://[::1]:53187/callback']) {
    const url = client.buildAuthorizationUrl(config, { redirect_uri: redirectUri, scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
    const { response } = await new UserAgent().follow(url);
    t.is(response.status, 400, redirectUri);
  }
});

test('a native app with a private-use URI scheme (reverse domain name) gets its code there, and openid-client exchanges it', async (t) => {
  const registered = await server.runtime.clients.create({ name: 'Mobile app', type: 'native', redirectUris: ['com.example.mobile:/oauth/callback'] });
  const config = await configurationFor(registered.client_id);
  // The login page's forms end, through redirects, at the app's scheme: a browser must be allowed to follow them.
  const probe = client.buildAuthorizationUrl(config, { redirect_uri: 'com.example.mobile:/oauth/callback', scope: 'openid', code_challenge: await client.calculatePKCECodeChallenge(client.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
  const { response: login } = await new UserAgent().follow(probe);
  t.regex(login.headers.get('content-security-policy') ?? '', /form-action 'self' com\.example\.mobile:(;|$)/);
  const { user, callback, checks } = await signInThroughApp(config, 'com.example.mobile:/oauth/callback');
  t.is(callback.protocol, 'com.example.mobile:');
  const tokens = await client.authorizationCodeGrant(config, callback, checks);
  t.is(tokens.claims()?.sub, user.id);
  t.is(tokens.claims()?.email, user.email);
});

test('a native app may not register localhost, an http host other than the loopback IP, a scheme that is not a reversed domain name, or a fragment', async (t) => {
  const refused = [
    'http://localhost/callback', 'http://localhost:8080/callback', 'http://app.example.com/callback', 'myapp:/callback',
    'javascript:alert(1)', 'com.example.app:/callback#fragment', 'not a uri',
  ];
  for (const uri of refused) {
    await t.throwsAsync(server.runtime.clients.create({ name: 'Refused app', type: 'native', redirectUris: [uri] }), { instanceOf: ClientError }, uri);
  }
  const app = await server.runtime.clients.create({ name: 'Allowed app', type: 'native', redirectUris: ['http://[::1]/callback', 'https://app.example.com/native-callback'] });
  await t.throwsAsync(server.runtime.clients.update(app.client_id, { redirectUris: ['http://localhost/callback'] }), { instanceOf: ClientError }, 'an update is held to the same rules');
  t.like(await server.runtime.clients.find(app.client_id), { redirect_uris: ['http://[::1]/callback', 'https://app.example.com/native-callback'] });
});
