// Protocol plumbing for tests: discovery through oauth4webapi, client registration through the
// service the CLI uses, and a person signing in through the real login and consent pages.
import * as oauth from 'oauth4webapi';
import type { ClientMetadata } from '../../src/clients/clients.ts';
import type { TestServer } from './server.ts';
import { UserAgent, formField, isRedirect } from './user-agent.ts';

export const insecure = { [oauth.allowInsecureRequests]: true } as const;
export const REDIRECT_URI = 'http://127.0.0.1:4999/callback';
export const POST_LOGOUT_REDIRECT_URI = 'http://127.0.0.1:4999/';

export async function discover(server: TestServer): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(server.issuer);
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, insecure));
}

export async function registerSpa(server: TestServer, scope?: string): Promise<{ metadata: ClientMetadata; client: oauth.Client }> {
  const metadata = await server.runtime.clients.create({
    name: 'Test SPA', type: 'spa', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_REDIRECT_URI], scope,
  });
  return { metadata, client: { client_id: metadata.client_id, token_endpoint_auth_method: 'none' } };
}

export async function registerConfidential(server: TestServer, type: 'web' | 'service'): Promise<{ client: oauth.Client; secret: string }> {
  const metadata = await server.runtime.clients.create({
    name: `Test ${type}`, type, ...(type === 'web' ? { redirectUris: [REDIRECT_URI] } : {}),
  });
  return { client: { client_id: metadata.client_id }, secret: String(metadata.client_secret) };
}

export interface AuthorizationRequest {
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export async function authorizationRequest(
  as: oauth.AuthorizationServer,
  clientId: string,
  overrides: Record<string, string | undefined> = {},
): Promise<AuthorizationRequest> {
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const url = new URL(as.authorization_endpoint!);
  const parameters: Record<string, string | undefined> = {
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    response_type: 'code',
    scope: 'openid profile email',
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
    ...overrides,
  };
  for (const [name, value] of Object.entries(parameters)) if (value !== undefined) url.searchParams.set(name, value);
  return { url, state, nonce, codeVerifier };
}

/**
 * Signs a person in through the login page and, when asked, the consent page, and returns where the
 * server finally sent the browser (the client's callback, with code or error).
 */
export async function signIn(
  agent: UserAgent,
  authorizationUrl: URL,
  credentials: { email: string; password: string },
): Promise<URL> {
  let { response, url } = await agent.follow(authorizationUrl);
  for (let step = 0; step < 4; step += 1) {
    if (isRedirect(response.status)) return url;
    const page = await response.text();
    if (page.includes('name="password"')) {
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/login`, url), {
        csrf: formField(page, 'csrf'), email: credentials.email, password: credentials.password,
      }));
    } else if (url.pathname.startsWith('/interaction/') && page.includes('/confirm"')) {
      ({ response, url } = await agent.submit(new URL(`${url.pathname}/confirm`, url), { csrf: formField(page, 'csrf') }));
    } else {
      throw new Error(`sign-in stopped on ${url.pathname} with ${response.status}: ${page.slice(0, 300)}`);
    }
  }
  throw new Error('sign-in did not finish');
}

export const PASSWORD = 'correct horse battery staple';

export async function createUser(server: TestServer, email = `person-${crypto.randomUUID()}@example.com`) {
  return server.runtime.users.create({ email, password: PASSWORD, name: 'Ada Lovelace', emailVerified: true });
}

/** A new single-page app and a new person, signed in through the login and consent pages: the code, not yet exchanged. */
export async function signInWithNewSpa(server: TestServer) {
  const as = await discover(server);
  const { client } = await registerSpa(server);
  const user = await createUser(server);
  const agent = new UserAgent();
  const request = await authorizationRequest(as, client.client_id);
  const callback = await signIn(agent, request.url, { email: user.email, password: PASSWORD });
  return { as, client, user, agent, request, callback, parameters: oauth.validateAuthResponse(as, client, callback, request.state) };
}

/**
 * A new single-page app and a new person, signed in through the login and consent pages, with the
 * tokens of the code exchange (ID token validated by oauth4webapi).
 */
export async function signInToNewSpa(server: TestServer) {
  const { as, client, user, agent, request, callback, parameters } = await signInWithNewSpa(server);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), parameters, REDIRECT_URI, request.codeVerifier, insecure);
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: request.nonce, requireIdToken: true });
  return { as, client, user, agent, request, callback, parameters, tokens };
}
