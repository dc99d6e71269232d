// @ts-check
// The example SPA's logic: sign in with Gatehouse (authorization code + PKCE S256), show who is signed in,
// call the example API with the access token, refresh (rotating), sign out. oauth4webapi does the protocol.
import * as oauth from 'oauth4webapi';

/** @typedef {{ issuer: string, clientId: string, apiUrl: string }} ExampleConfig */
/**
 * What the app holds while someone is signed in.
 * @typedef {object} SignedIn
 * @property {string} accessToken
 * @property {string} refreshToken
 * @property {string} idToken
 * @property {string} subject
 * @property {number} rotations how many times the refresh token has rotated
 */

// Only the short-lived state of a redirect lives in sessionStorage (it must survive the trip to Gatehouse
// and back): the PKCE verifier, state and nonce of a sign-in, the state of a sign-out. Both are removed
// on return.
const PENDING_SIGN_IN = 'example-spa:pending-sign-in';
const PENDING_SIGN_OUT = 'example-spa:pending-sign-out';

// Tokens live only in this variable, in memory, never in sessionStorage or localStorage: storage can be
// read by any script on this origin, at any later time, and would hand the refresh token to an injected
// script long after the fact. Memory ends with the page. The cost is that a reload shows "Sign in" again;
// while the Gatehouse session lasts, signing in again is a few redirects with no page to fill in.
/** @type {SignedIn | undefined} */
let signedIn;

const view = {
  status: element('status'),
  signedOut: element('signed-out'),
  signedIn: element('signed-in'),
  name: element('user-name'),
  email: element('user-email'),
  subject: element('user-sub'),
  refreshTokenInfo: element('refresh-token-info'),
  api: element('api'),
  apiResult: element('api-result'),
  signInButton: button('sign-in'),
  callApiButton: button('call-api'),
  refreshButton: button('refresh'),
  signOutButton: button('sign-out'),
};

const app = await start().catch((error) => {
  announce(`The app could not start: ${describe(error)}`);
  return undefined;
});
if (app) {
  const here = new URL(location.href);
  try {
    if (here.pathname === '/callback') await completeSignIn(app, here);
    else if (here.searchParams.has('state')) returnFromSignOut(here);
    else announce('');
  } catch (error) {
    announce(`Sign-in failed: ${describe(error)}`);
  }
  view.signInButton.addEventListener('click', () => act(() => signIn(app)));
  view.callApiButton.addEventListener('click', () => act(() => callApi(app)));
  view.refreshButton.addEventListener('click', () => act(() => refresh(app)));
  view.signOutButton.addEventListener('click', () => act(() => signOut(app)));
  await render();
}

/** Reads the example's configuration and Gatehouse's metadata (discovery). */
async function start() {
  const response = await fetch('/config.json');
  if (!response.ok) throw new Error(`config.json answered ${response.status}`);
  const config = /** @type {ExampleConfig} */ (await response.json());
  const issuer = new URL(config.issuer);
  // oauth4webapi refuses plain HTTP unless told; an http:// issuer only makes sense on a developer's machine.
  const requestOptions = issuer.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {};
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, requestOptions));
  /** @type {oauth.Client} */
  const client = { client_id: config.clientId, token_endpoint_auth_method: 'none' };
  return {
    config, as, client, requestOptions,
    redirectUri: new URL('/callback', location.origin).href,
    postLogoutRedirectUri: new URL('/', location.origin).href,
  };
}

/** @typedef {Awaited<ReturnType<typeof start>>} App */

/** @param {App} app */
async function signIn(app) {
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  sessionStorage.setItem(PENDING_SIGN_IN, JSON.stringify({ codeVerifier, state, nonce }));
  const url = new URL(required(app.as.authorization_endpoint, 'authorization_endpoint'));
  url.search = new URLSearchParams({
    client_id: app.client.client_id,
    redirect_uri: app.redirectUri,
    response_type: 'code',
    scope: 'openid profile email',
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
  }).toString();
  announce('Going to Gatehouse to sign in…');
  location.assign(url);
  // Keep the buttons disabled while the browser leaves.
  await new Promise(() => {});
}

/**
 * Back from Gatehouse at the redirect URI: check the response belongs to the sign-in we started, swap
 * the code for tokens (the ID token's iss, aud, exp and nonce are checked by oauth4webapi), ask who it is.
 * @param {App} app
 * @param {URL} callbackUrl
 */
async function completeSignIn(app, callbackUrl) {
  const pending = takePending(PENDING_SIGN_IN);
  // The code works once; a reload of this URL must not try it again, nor a bookmark keep it.
  history.replaceState(null, '', '/');
  if (!pending) throw new Error('this sign-in was not started in this tab, or was already finished. Sign in again.');
  const { codeVerifier, state, nonce } = /** @type {{ codeVerifier: string, state: string, nonce: string }} */ (JSON.parse(pending));
  announce('Finishing sign-in…');
  const parameters = oauth.validateAuthResponse(app.as, app.client, callbackUrl, state);
  const response = await oauth.authorizationCodeGrantRequest(
    app.as, app.client, oauth.None(), parameters, app.redirectUri, codeVerifier, app.requestOptions,
  );
  const tokens = await oauth.processAuthorizationCodeResponse(app.as, app.client, response, { expectedNonce: nonce, requireIdToken: true });
  const claims = required(oauth.getValidatedIdTokenClaims(tokens), 'an ID token');
  signedIn = {
    accessToken: tokens.access_token,
    refreshToken: required(tokens.refresh_token, 'a refresh token'),
    idToken: required(tokens.id_token, 'an ID token'),
    subject: claims.sub,
    rotations: 0,
  };
  await showUser(app);
  announce('You are signed in.');
}

/** @param {App} app */
async function showUser(app) {
  const session = requireSignedIn();
  const response = await oauth.userInfoRequest(app.as, app.client, session.accessToken, app.requestOptions);
  // Checks the userinfo is about the person in the ID token.
  const userinfo = await oauth.processUserInfoResponse(app.as, app.client, session.subject, response);
  view.name.textContent = typeof userinfo.name === 'string' ? userinfo.name : '(not shared)';
  view.email.textContent = typeof userinfo.email === 'string' ? userinfo.email : '(not shared)';
  view.subject.textContent = userinfo.sub;
}

/** @param {App} app */
async function callApi(app) {
  const session = requireSignedIn();
  announce('Calling the API…');
  const response = await fetch(app.config.apiUrl, { headers: { Authorization: `Bearer ${session.accessToken}` } });
  const body = await response.json();
  view.apiResult.textContent = JSON.stringify(body, null, 2);
  view.api.hidden = false;
  announce(response.ok
    ? 'The API answered.'
    : `The API refused the call (${response.status}${response.headers.get('WWW-Authenticate') ? `: ${response.headers.get('WWW-Authenticate')}` : ''}).`);
}

/** @param {App} app */
async function refresh(app) {
  const session = requireSignedIn();
  announce('Refreshing the tokens…');
  const response = await oauth.refreshTokenGrantRequest(app.as, app.client, oauth.None(), session.refreshToken, app.requestOptions);
  let tokens;
  try {
    tokens = await oauth.processRefreshTokenResponse(app.as, app.client, response);
  } catch (error) {
    if (error instanceof oauth.ResponseBodyError && error.error === 'invalid_grant') {
      // The grant is over (signed out elsewhere, revoked, expired): nothing local is worth keeping.
      signedIn = undefined;
      throw new Error('your session has ended. Sign in again.');
    }
    throw error;
  }
  const claims = oauth.getValidatedIdTokenClaims(tokens);
  if (claims && claims.sub !== session.subject) throw new Error('the refreshed ID token is about someone else');
  // Gatehouse rotates refresh tokens: the one just used is dead, and presenting it again would end the
  // whole grant. Keep the new one.
  signedIn = {
    ...session,
    accessToken: tokens.access_token,
    refreshToken: required(tokens.refresh_token, 'a new refresh token'),
    idToken: tokens.id_token ?? session.idToken,
    rotations: session.rotations + 1,
  };
  announce('The tokens were refreshed.');
}

/**
 * RP-initiated logout: forget everything here, then let Gatehouse end its session (and with it the
 * grant, so the tokens stop working) and send the browser back to this app.
 * @param {App} app
 */
async function signOut(app) {
  const session = requireSignedIn();
  const state = oauth.generateRandomState();
  signedIn = undefined;
  sessionStorage.setItem(PENDING_SIGN_OUT, state);
  const url = new URL(required(app.as.end_session_endpoint, 'end_session_endpoint'));
  url.search = new URLSearchParams({
    id_token_hint: session.idToken,
    post_logout_redirect_uri: app.postLogoutRedirectUri,
    state,
  }).toString();
  announce('Going to Gatehouse to sign out…');
  location.assign(url);
  await new Promise(() => {});
}

/** @param {URL} url */
function returnFromSignOut(url) {
  const expected = takePending(PENDING_SIGN_OUT);
  history.replaceState(null, '', '/');
  announce(expected !== null && url.searchParams.get('state') === expected ? 'You are signed out.' : '');
}

/**
 * Runs a button's action with every button disabled, and says what went wrong, if anything.
 * @param {() => Promise<void>} action
 */
async function act(action) {
  const buttons = [view.signInButton, view.callApiButton, view.refreshButton, view.signOutButton];
  for (const each of buttons) each.disabled = true;
  try {
    await action();
  } catch (error) {
    announce(`That did not work: ${describe(error)}`);
  } finally {
    for (const each of buttons) each.disabled = false;
    await render();
  }
}

async function render() {
  view.signedOut.hidden = signedIn !== undefined;
  view.signedIn.hidden = signedIn === undefined;
  if (!signedIn) {
    view.api.hidden = true;
    view.apiResult.textContent = '';
    for (const each of [view.name, view.email, view.subject, view.refreshTokenInfo]) each.textContent = '';
    return;
  }
  const times = signedIn.rotations === 1 ? 'time' : 'times';
  view.refreshTokenInfo.textContent = `fingerprint ${await fingerprint(signedIn.refreshToken)}, rotated ${signedIn.rotations} ${times}`;
}

/**
 * A short, non-secret tag of a token (the start of its SHA-256), so rotation is visible without showing the token.
 * @param {string} token
 */
async function fingerprint(token) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token)));
  return [...digest.slice(0, 4)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

function requireSignedIn() {
  if (!signedIn) throw new Error('you are not signed in');
  return signedIn;
}

/**
 * Reads and removes a pending redirect's state: each is good for one return only.
 * @param {string} key
 */
function takePending(key) {
  const value = sessionStorage.getItem(key);
  sessionStorage.removeItem(key);
  return value;
}

/** @param {string} message */
function announce(message) {
  view.status.textContent = message;
}

/** @param {unknown} error */
function describe(error) {
  if (error instanceof oauth.ResponseBodyError || error instanceof oauth.AuthorizationResponseError) {
    return error.error_description ? `${error.error_description} (${error.error})` : error.error;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * @template T
 * @param {T | undefined} value
 * @param {string} what
 * @returns {T}
 */
function required(value, what) {
  if (value === undefined) throw new Error(`Gatehouse did not provide ${what}`);
  return value;
}

/** @param {string} id */
function element(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found;
}

/** @param {string} id */
function button(id) {
  const found = element(id);
  if (!(found instanceof HTMLButtonElement)) throw new Error(`#${id} is not a button`);
  return found;
}
