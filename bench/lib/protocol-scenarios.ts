// The protocol scenarios both `npm run bench` and `npm run bench:compare` load a server with: what each prepares on
// its target (tokens and codes minted, a token to introspect) and the load it then sends.
import { JWT_API, OPAQUE_API, type Target } from './fixtures.ts';
import type { LoadSpec, Measurement, RunningLoad } from './load.ts';
import {
  clientCredentials, codeExchange, fetchAccessToken, getDocument, introspection, introspects, refreshChains, type TokenPool,
} from './scenarios.ts';

/** The refresh scenario's connections, each with a chain of its own, whatever BENCH_CONNECTIONS says. */
export const REFRESH_CHAINS = 8;
/** Chains in reserve for those an error ends (an error may leave a used token behind: its chain cannot go on). */
const SPARE_CHAINS = 32;
/** Codes are minted for this many times the rate expected. */
const CODE_MARGIN = 2;

export interface Prepared {
  spec: LoadSpec;
  /** Requests per second to hold the load to (the latency target is at half the maximum rate). */
  overallRate?: number;
  started?(load: RunningLoad): void;
  notes?(): string[];
}

export interface ScenarioContext {
  durationSeconds: number;
  /** What this target measured in the scenarios run before, by name. */
  earlier: ReadonlyMap<string, Measurement>;
  /** The fewest requests per second to prepare codes for, whatever ran before. */
  leastExpectedRate: number;
  progress(message: string): void;
}

export interface Scenario {
  /** How bench:compare names it. */
  key: string;
  name: string;
  /** Undefined: BENCH_CONNECTIONS. */
  connections?: number;
  /** The load for this target, or why it cannot take this scenario. */
  prepare(target: Target, context: ScenarioContext): Promise<Prepared | { unsupported: string }>;
}

export const SCENARIOS = {
  clientCredentialsOpaque: 'client_credentials, opaque token',
  clientCredentialsJwt: 'client_credentials, JWT token',
  clientCredentialsHalfRate: 'client_credentials, opaque token, at half its maximum rate',
  refresh: `refresh_token, ${REFRESH_CHAINS} rotating chains`,
  code: 'authorization_code exchange (PKCE)',
  introspectionOpaque: 'introspection, opaque token',
  introspectionJwt: 'introspection, JWT token',
  jwks: 'JWKS',
  discovery: 'discovery',
} as const;

/** The token requests whose fastest rate says how many codes the code exchange may use. */
const TOKEN_REQUESTS = [SCENARIOS.clientCredentialsOpaque, SCENARIOS.clientCredentialsJwt, SCENARIOS.refresh];

/** Every scenario, in the order `npm run bench` runs them. */
export const PROTOCOL_SCENARIOS: readonly Scenario[] = [
  { key: 'cc', name: SCENARIOS.clientCredentialsOpaque, prepare: async (target) => ({ spec: clientCredentials(target, OPAQUE_API) }) },
  { key: 'cc-jwt', name: SCENARIOS.clientCredentialsJwt, prepare: async (target) => ({ spec: clientCredentials(target, JWT_API) }) },
  {
    key: 'cc-half-rate',
    name: SCENARIOS.clientCredentialsHalfRate,
    prepare: async (target, { earlier }) => {
      const fullRate = earlier.get(SCENARIOS.clientCredentialsOpaque)?.requestsPerSecond;
      if (fullRate === undefined) return { unsupported: `needs "${SCENARIOS.clientCredentialsOpaque}" measured first` };
      return { spec: clientCredentials(target, OPAQUE_API), overallRate: Math.max(1, Math.round(fullRate / 2)) };
    },
  },
  {
    key: 'refresh',
    name: SCENARIOS.refresh,
    connections: REFRESH_CHAINS,
    prepare: async (target) => {
      const pool: TokenPool = { tokens: await target.mintRefreshTokens(REFRESH_CHAINS + SPARE_CHAINS), missed: 0 };
      return {
        spec: refreshChains(target, pool),
        notes: () => (pool.missed ? [`every chain in reserve was used: ${pool.missed} requests went without a refresh token (among the errors)`] : []),
      };
    },
  },
  {
    key: 'code',
    name: SCENARIOS.code,
    prepare: async (target, { durationSeconds, earlier, leastExpectedRate, progress }) => {
      const expected = Math.max(...TOKEN_REQUESTS.map((name) => earlier.get(name)?.requestsPerSecond ?? 0), leastExpectedRate);
      const minted = Math.ceil(expected * durationSeconds * CODE_MARGIN);
      progress(`${target.name.padEnd(18)} minting ${minted} authorization codes`);
      const pool: TokenPool = { tokens: await target.mintAuthorizationCodes(minted), missed: 0 };
      let load: RunningLoad | undefined;
      let ranOutAt: number | undefined;
      const startedAt = Date.now();
      return {
        spec: codeExchange(target, pool, () => {
          ranOutAt ??= (Date.now() - startedAt) / 1000;
          load?.stop();
        }),
        started: (running) => (load = running),
        notes: () => [
          `${minted} codes minted (${CODE_MARGIN}× its fastest token request for ${durationSeconds} s), ${pool.tokens.length} left unused`,
          ...(ranOutAt === undefined ? [] : [`the codes ran out after ${ranOutAt.toFixed(1)} s and the load was stopped: ${pool.missed} requests went without a code (among the errors)`]),
        ],
      };
    },
  },
  {
    key: 'introspection',
    name: SCENARIOS.introspectionOpaque,
    prepare: async (target) => {
      const token = await fetchAccessToken(target, OPAQUE_API);
      const probe = await introspects(target, token);
      if (!probe.active) throw new Error(`${target.name} does not introspect its own opaque token: ${probe.answer}`);
      return { spec: introspection(target, () => token) };
    },
  },
  {
    key: 'introspection-jwt',
    name: SCENARIOS.introspectionJwt,
    prepare: async (target) => {
      const token = await fetchAccessToken(target, JWT_API);
      const probe = await introspects(target, token);
      return probe.active ? { spec: introspection(target, () => token) } : { unsupported: `does not introspect JWT access tokens (${probe.answer.slice(0, 160)})` };
    },
  },
  { key: 'jwks', name: SCENARIOS.jwks, prepare: async () => ({ spec: getDocument('/jwks') }) },
  { key: 'discovery', name: SCENARIOS.discovery, prepare: async () => ({ spec: getDocument('/.well-known/openid-configuration') }) },
];
