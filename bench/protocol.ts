// Measures Gatehouse's hottest protocol endpoints against a baseline: bare oidc-provider with its
// in-memory adapter, served from this same process and measured the same way, one after the other.
// Run with `npm run bench` (embedded defaults) or with DATABASE_URL and REDIS_URL set.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import autocannon from 'autocannon';
import Provider, { type Configuration } from 'oidc-provider';
import { generateJwks } from '../src/keys/secrets.ts';
import { startTestServer } from '../test/helpers/server.ts';

const DURATION_SECONDS = Number(process.argv[2] ?? 5);
const CONNECTIONS = 32;

interface Target {
  origin: string;
  basicAuth: string;
  accessToken: string;
}

interface Scenario {
  name: string;
  request: (target: Target) => autocannon.Request & { method: string };
}

const form = 'application/x-www-form-urlencoded';
const scenarios: Scenario[] = [
  { name: 'JWKS', request: () => ({ method: 'GET', path: '/jwks' }) },
  {
    name: 'client_credentials',
    request: ({ basicAuth }) => ({ method: 'POST', path: '/token', headers: { authorization: basicAuth, 'content-type': form }, body: 'grant_type=client_credentials' }),
  },
  {
    name: 'introspection',
    request: ({ basicAuth, accessToken }) => ({
      method: 'POST', path: '/token/introspection', headers: { authorization: basicAuth, 'content-type': form }, body: `token=${accessToken}`,
    }),
  },
];

async function measure(target: Target, scenario: Scenario): Promise<number> {
  const result = await autocannon({ url: target.origin, connections: CONNECTIONS, duration: DURATION_SECONDS, requests: [scenario.request(target)] });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`${scenario.name} at ${target.origin}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return result.requests.average;
}

async function tokenFor(origin: string, basicAuth: string): Promise<string> {
  const response = await fetch(`${origin}/token`, { method: 'POST', headers: { authorization: basicAuth, 'content-type': form }, body: 'grant_type=client_credentials' });
  return ((await response.json()) as { access_token: string }).access_token;
}

async function startBaseline(): Promise<{ target: Target; close(): Promise<void> }> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const provider = new Provider(origin, {
    jwks: (await generateJwks()) as Configuration['jwks'],
    clients: [{ client_id: 'bench', client_secret: 'bench-secret-bench-secret-bench-secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [] }],
    features: { devInteractions: { enabled: false }, clientCredentials: { enabled: true }, introspection: { enabled: true } },
  });
  server.on('request', provider.callback());
  const basicAuth = `Basic ${Buffer.from('bench:bench-secret-bench-secret-bench-secret').toString('base64')}`;
  return { target: { origin, basicAuth, accessToken: await tokenFor(origin, basicAuth) }, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function startGatehouse(): Promise<{ target: Target; close(): Promise<void> }> {
  // Limits stay on (their counters are part of the cost) but high enough never to refuse the load.
  const gatehouse = await startTestServer({ TOKEN_LIMIT_PER_CLIENT: '1000000000/60', TOKEN_LIMIT_PER_IP: '1000000000/60' });
  const client = await gatehouse.runtime.clients.create({ name: 'Bench service', type: 'service' });
  const basicAuth = `Basic ${Buffer.from(`${client.client_id}:${String(client.client_secret)}`).toString('base64')}`;
  return { target: { origin: gatehouse.issuer, basicAuth, accessToken: await tokenFor(gatehouse.issuer, basicAuth) }, close: () => gatehouse.close() };
}

const baseline = await startBaseline();
const gatehouse = await startGatehouse();
try {
  const rows = [];
  for (const scenario of scenarios) {
    const baselineRate = await measure(baseline.target, scenario);
    const gatehouseRate = await measure(gatehouse.target, scenario);
    rows.push({
      scenario: scenario.name,
      'baseline req/s': Math.round(baselineRate),
      'gatehouse req/s': Math.round(gatehouseRate),
      'ratio (gatehouse / baseline)': (gatehouseRate / baselineRate).toFixed(2),
    });
  }
  const backing = `${process.env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'} + ${process.env.REDIS_URL ? 'Redis' : 'in-process store'}`;
  console.log(`${CONNECTIONS} connections, ${DURATION_SECONDS} s each, Gatehouse on ${backing}`);
  console.table(rows);
} finally {
  await gatehouse.close();
  await baseline.close();
}
