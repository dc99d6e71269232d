// The baseline of `npm run bench`: bare oidc-provider 9 with its in-memory adapter (a larger store), served by node:http in
// a process of its own (PORT), set up so that every scenario Gatehouse is measured on exists here too. POST
// /bench/mint?kind=refresh|code&count=N mints refresh tokens or codes through its own models (answered in JSON).
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import Provider, { errors, type Configuration } from 'oidc-provider';
import LRU from 'oidc-provider/lib/helpers/lru.js';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import { generateJwks } from '../src/keys/secrets.ts';
import { CLAIMS_BY_SCOPE, SCOPES } from '../src/oidc/scopes.ts';
import {
  AUTHORIZATION_CODE_TTL_SECONDS, BASELINE_PUBLIC_CLIENT_ID, BASELINE_SERVICE_CLIENT, JWT_API, OPAQUE_API, PERSON, REDIRECT_URI, type ApiFixture,
} from './lib/fixtures.ts';
import { mintAuthorizationCodes, mintRefreshTokens } from './lib/engine-tokens.ts';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error('PORT must name the port to listen on');
const issuer = `http://127.0.0.1:${port}`;

// The engine's default adapter keeps about a thousand records and drops the oldest: the sessions, grants and codes
// minted ahead of a scenario would be gone before it used them. The same adapter and store, with room for a run.
const store = new LRU({ maxSize: 200_000 });

const APIS: readonly ApiFixture[] = [OPAQUE_API, JWT_API];
const person = { accountId: 'bench-person', claims: { name: PERSON.name, email: PERSON.email, email_verified: true } };

const configuration: Configuration = {
  adapter: (model) => new MemoryAdapter(model, store),
  jwks: (await generateJwks()) as Configuration['jwks'],
  clients: [
    {
      client_id: BASELINE_SERVICE_CLIENT.id, client_secret: BASELINE_SERVICE_CLIENT.secret, token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
    },
    {
      client_id: BASELINE_PUBLIC_CLIENT_ID, token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], redirect_uris: [REDIRECT_URI],
    },
  ],
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // The same person, scopes and claims as Gatehouse's, so that ID tokens carry as much.
  findAccount: async (_ctx, sub) => (sub === person.accountId ? { accountId: sub, claims: () => ({ sub, ...person.claims }) } : undefined),
  conformIdTokenClaims: false,
  claims: Object.fromEntries(Object.entries(CLAIMS_BY_SCOPE).map(([scope, claims]) => [scope, [...claims]])),
  scopes: [...SCOPES],
  responseTypes: ['code'],
  pkce: { required: () => true },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
  rotateRefreshToken: true,
  // As Gatehouse does for single-page apps: a refresh token at each code exchange, without offline_access.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: 600, ClientCredentials: 600, AuthorizationCode: AUTHORIZATION_CODE_TTL_SECONDS, IdToken: 3600, RefreshToken: 30 * 24 * 3600, Grant: 30 * 24 * 3600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, indicator) => {
        const api = APIS.find((candidate) => candidate.identifier === indicator);
        if (!api) throw new errors.InvalidTarget(`no API is registered as ${indicator}`);
        const format = api === JWT_API ? 'jwt' : 'opaque';
        return { scope: api.scope, audience: api.identifier, accessTokenTTL: 600, accessTokenFormat: format, ...(format === 'jwt' ? { jwt: { sign: { alg: 'ES256' } } } : {}) };
      },
    },
  },
};

const provider = new Provider(issuer, configuration);
const answerProtocol = provider.callback();
const bench = { clientId: BASELINE_PUBLIC_CLIENT_ID, accountId: person.accountId };

/** POST /bench/mint?kind=refresh|code&count=N: the bench's setup door, never used while measuring. */
async function mint(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const url = new URL(request.url ?? '/', issuer);
  const count = Number(url.searchParams.get('count'));
  const kind = url.searchParams.get('kind');
  if (request.method !== 'POST' || url.pathname !== '/bench/mint' || !Number.isInteger(count) || count < 1 || (kind !== 'refresh' && kind !== 'code')) {
    response.writeHead(400, { 'content-type': 'text/plain' }).end('POST /bench/mint?kind=refresh|code&count=N\n');
    return;
  }
  const tokens = kind === 'refresh' ? await mintRefreshTokens(provider, bench, count) : await mintAuthorizationCodes(provider, bench, count);
  response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(tokens));
}

const server = createServer((request, response) => {
  if (request.url?.startsWith('/bench/')) {
    mint(request, response).catch((error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`));
    return;
  }
  void answerProtocol(request, response);
});
server.listen(port, '127.0.0.1');
// Nothing to hand over: everything it holds is for this run alone.
process.on('SIGTERM', () => process.exit(0));
