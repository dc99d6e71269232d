// examples/resource-server, run both ways against a test server: by JWKS and by introspection it serves a token
// for its API that carries orders:read, and refuses a token for another API (401), one without the scope (403)
// and none at all (401). Introspection also refuses a revoked token at once; JWKS cannot know (the README says so).
import test from 'ava';
import * as oauth from 'oauth4webapi';
import { startResourceServer } from '../examples/resource-server/server.ts';
import { discover, insecure } from './helpers/oauth.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';

let server: TestServer;
let as: oauth.AuthorizationServer;
test.before(async () => {
  server = await startTestServer();
  as = await discover(server);
});
test.after.always(async () => {
  await server?.close();
});

async function service(input: Parameters<typeof server.runtime.clients.create>[0]) {
  const metadata = await server.runtime.clients.create(input);
  return { client: { client_id: metadata.client_id } as oauth.Client, authentication: oauth.ClientSecretBasic(String(metadata.client_secret)), secret: String(metadata.client_secret) };
}

for (const verify of ['jwks', 'introspection'] as const) {
  test(`by ${verify}: its own API's token with orders:read is served; another API's, one without the scope, and none are refused`, async (t) => {
    const suffix = crypto.randomUUID().slice(0, 8);
    const orders = await server.runtime.apis.create({ identifier: `https://orders-${suffix}.example.com`, name: 'Orders', scopes: [{ name: 'orders:read' }, { name: 'orders:audit' }] });
    const other = await server.runtime.apis.create({ identifier: `https://billing-${suffix}.example.com`, name: 'Billing', scopes: [{ name: 'orders:read' }] });
    const resourceServer = await service({ name: 'Orders API server', type: 'service', resourceServer: orders.identifier });
    const caller = await service({ name: 'Caller', type: 'service', apiScopes: ['orders:read', 'orders:audit'] });
    const api = await startResourceServer({
      issuer: server.issuer, audience: orders.identifier, verify, clientId: resourceServer.client.client_id, clientSecret: resourceServer.secret,
    });
    t.teardown(() => api.close());
    const tokenFor = async (resource: string, scope: string) => (await oauth.processClientCredentialsResponse(as, caller.client,
      await oauth.clientCredentialsGrantRequest(as, caller.client, caller.authentication, new URLSearchParams({ resource, scope }), insecure))).access_token;
    const call = (token?: string) => fetch(`${api.origin}/orders`, token ? { headers: { authorization: `Bearer ${token}` } } : {});

    const good = await tokenFor(orders.identifier, 'orders:read');
    const served = await call(good);
    t.is(served.status, 200);
    t.deepEqual(await served.json(), { orders: [], for: caller.client.client_id });

    const elsewhere = await call(await tokenFor(other.identifier, 'orders:read'));
    t.is(elsewhere.status, 401);
    t.is(elsewhere.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
    const narrow = await call(await tokenFor(orders.identifier, 'orders:audit'));
    t.is(narrow.status, 403);
    t.regex(narrow.headers.get('www-authenticate') ?? '', /insufficient_scope/);
    t.is((await call()).status, 401);

    // A DPoP-bound token (RFC 9449) is no bearer token: whoever copied it has no proof of its key.
    const DPoP = oauth.DPoP(caller.client, await oauth.generateKeyPair('ES256'));
    const bound = () => oauth.clientCredentialsGrantRequest(as, caller.client, caller.authentication,
      new URLSearchParams({ resource: orders.identifier, scope: 'orders:read' }), { ...insecure, DPoP });
    const boundTokens = await oauth.processClientCredentialsResponse(as, caller.client, await bound()).catch(async (error: unknown) => {
      if (!oauth.isDPoPNonceError(error)) throw error;
      return oauth.processClientCredentialsResponse(as, caller.client, await bound());
    });
    t.is(boundTokens.token_type, 'dpop');
    t.is((await call(boundTokens.access_token)).status, 401);

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, caller.client, caller.authentication, good, insecure));
    t.is((await call(good)).status, verify === 'introspection' ? 401 : 200, 'only introspection sees a revocation before the token expires');
  });
}
