// The README's "without a library" blocks for a server-side app, run as written with bash, curl and openssl
// against a test server: only the issuer is put in for the README's; the client's id and secret, the code and
// the tokens come in as the variables the blocks name. The ID token is then verified with jose, as the README
// tells the app to.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { PASSWORD, createUser, signIn } from './helpers/oauth.ts';
import { PROJECT_ROOT } from './helpers/process.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { UserAgent } from './helpers/user-agent.ts';

const run = promisify(execFile);
const CALLBACK = 'https://app.example.com/callback';

let server: TestServer;
test.before(async () => {
  server = await startTestServer();
});
test.after.always(async () => {
  await server?.close();
});

/** The sh blocks of the README's section on apps without a library, in order. */
function blocks(): string[] {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('### Any other server-side app, without a library');
  const section = readme.slice(start, readme.indexOf('\n## ', start));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!.replaceAll('http://localhost:3000', server.issuer));
}

/** Runs a block with bash, the variables given in its environment; what it printed, and `after`'s output. */
async function bash(block: string, variables: Record<string, string>, after = ''): Promise<string> {
  const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', `${block}\n${after}`], { env: { PATH: process.env.PATH, ...variables }, timeout: 30_000 });
  return stdout;
}

test('the README\'s curl and openssl steps sign a person in to a web app: authorization URL, code exchange, userinfo', async (t) => {
  const [authorize, exchange, userinfo] = blocks();
  t.truthy(authorize && exchange && userinfo, 'three sh blocks');
  const registered = await server.runtime.clients.create({ name: 'README web app', type: 'web', redirectUris: [CALLBACK] });
  const CLIENT_ID = registered.client_id;
  const CLIENT_SECRET = String(registered.client_secret);

  // 1. The URL to send the browser to; the test keeps what the app would keep in its session.
  const [url, CODE_VERIFIER, STATE, NONCE] = (await bash(authorize!, { CLIENT_ID }, 'printf "%s\\n" "$CODE_VERIFIER" "$STATE" "$NONCE"')).trim().split('\n');
  t.true(url!.startsWith(`${server.issuer}/auth?`), url);
  const user = await createUser(server);
  const callback = await signIn(new UserAgent(), new URL(url!), { email: user.email, password: PASSWORD });
  t.is(`${callback.origin}${callback.pathname}`, CALLBACK);
  t.is(callback.searchParams.get('state'), STATE ?? null, 'the state comes back for the app to check');
  const CODE = callback.searchParams.get('code');
  t.truthy(CODE);

  // 2. The code exchange, with the secret in the Authorization header.
  const tokens = JSON.parse(await bash(exchange!, { CLIENT_ID, CLIENT_SECRET, CODE: CODE!, CODE_VERIFIER: CODE_VERIFIER! })) as Record<string, unknown>;
  t.like(tokens, { token_type: 'Bearer' });
  const { payload } = await jwtVerify(String(tokens.id_token), createRemoteJWKSet(new URL(`${server.issuer}/jwks`)), { issuer: server.issuer, audience: CLIENT_ID });
  t.is(payload.nonce, NONCE);
  t.is(payload.sub, user.id);
  t.is(typeof payload.sid, 'string');

  // 3. Userinfo with the access token.
  const claims = JSON.parse(await bash(userinfo!, { ACCESS_TOKEN: String(tokens.access_token) })) as Record<string, unknown>;
  t.like(claims, { sub: user.id, email: user.email });
});
