// An example API (resource server) protected by Gatehouse: GET /orders answers only to an access token issued for
// this API (its audience) carrying the orders:read scope. It checks tokens one of two ways: by JWKS (jose
// verifies the JWT's signature, issuer, audience, type and expiry itself, no call to Gatehouse per request), or,
// with VERIFY=introspection, by asking Gatehouse about each token (RFC 7662) as the API's resource server, so that
// a revoked token is refused at once. Run it: ISSUER=… AUDIENCE=… [VERIFY=introspection CLIENT_ID=… CLIENT_SECRET=…]
// npx node examples/resource-server/server.ts
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { closeServer, listen } from '../listen.ts';

export interface ResourceServerOptions {
  /** Gatehouse's issuer URL. */
  issuer: string;
  /** This API's identifier (its resource indicator): the audience its tokens must have. */
  audience: string;
  /** 'jwks' (the default): verify JWTs here. 'introspection': ask Gatehouse about every token. */
  verify?: 'jwks' | 'introspection';
  /** For introspection: a service client registered with --resource-server <audience>. */
  clientId?: string;
  clientSecret?: string;
  port?: number;
  host?: string;
}

/** What a checked token says: who, and what they may do. */
interface Grant {
  sub: string | undefined;
  scopes: Set<string>;
}

type Check = (token: string) => Promise<Grant | undefined>;

const REQUIRED_SCOPE = 'orders:read';

export async function startResourceServer(options: ResourceServerOptions): Promise<{ origin: string; close(): Promise<void> }> {
  const check = options.verify === 'introspection' ? byIntrospection(options) : byJwks(options);
  const server = createServer((request, response) => {
    handle(request, response, check).catch((error: unknown) => {
      // Never the token in a log line.
      console.error('example resource server: the token could not be checked:', error instanceof Error ? error.message : error);
      if (!response.headersSent) send(response, 503, { error: 'temporarily_unavailable' });
    });
  });
  const origin = await listen(server, options.port ?? 0, options.host ?? '127.0.0.1');
  return { origin, close: () => closeServer(server) };
}

/** JWT access tokens (RFC 9068) verified here with Gatehouse's published keys, fetched once and cached by jose. */
function byJwks({ issuer, audience }: ResourceServerOptions): Check {
  const keys = createRemoteJWKSet(new URL('/jwks', issuer));
  return async (token) => {
    try {
      const { payload } = await jwtVerify(token, keys, { issuer, audience, typ: 'at+jwt' });
      // A DPoP-bound token (cnf) is worth nothing without a proof of its key, which this API does not check.
      if (payload.cnf !== undefined) return undefined;
      return { sub: payload.sub, scopes: new Set(String(payload.scope ?? '').split(' ')) };
    } catch {
      return undefined;
    }
  };
}

/** Any token, asked about at Gatehouse; only a token for this API is active for its resource server. */
function byIntrospection({ issuer, audience, clientId, clientSecret }: ResourceServerOptions): Check {
  if (!clientId || !clientSecret) throw new Error('introspection needs CLIENT_ID and CLIENT_SECRET of a service client registered with --resource-server');
  const issuerUrl = new URL(issuer);
  // oauth4webapi refuses plain HTTP unless told; an http:// issuer only makes sense on a developer's machine.
  const options = issuerUrl.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {};
  const client: oauth.Client = { client_id: clientId };
  const authentication = oauth.ClientSecretBasic(clientSecret);
  let metadata: Promise<oauth.AuthorizationServer> | undefined;
  return async (token) => {
    metadata ??= oauth.discoveryRequest(issuerUrl, options).then((response) => oauth.processDiscoveryResponse(issuerUrl, response));
    const as = await metadata.catch((error: unknown) => {
      metadata = undefined;
      throw error;
    });
    const answer = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, authentication, token, options));
    // Gatehouse says inactive for another API's token; checking the audience here too costs nothing.
    const audiences = Array.isArray(answer.aud) ? answer.aud : [answer.aud];
    if (!answer.active || answer.token_type?.toLowerCase() !== 'bearer' || !audiences.includes(audience)) return undefined;
    return { sub: answer.sub, scopes: new Set((answer.scope ?? '').split(' ')) };
  };
}

async function handle(request: IncomingMessage, response: ServerResponse, check: Check): Promise<void> {
  const { pathname } = new URL(request.url ?? '/', 'http://api.invalid');
  if (pathname !== '/orders' || request.method !== 'GET') {
    send(response, 404, { error: 'not_found' });
    return;
  }
  const token = /^Bearer +([\w\-.~+/]+=*)$/i.exec(request.headers.authorization ?? '')?.[1];
  if (!token) {
    // RFC 6750 §3.1: no credentials, no error code.
    response.setHeader('WWW-Authenticate', 'Bearer');
    send(response, 401, { error: 'missing_token' });
    return;
  }
  const grant = await check(token);
  if (!grant) {
    response.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
    send(response, 401, { error: 'invalid_token' });
    return;
  }
  if (!grant.scopes.has(REQUIRED_SCOPE)) {
    response.setHeader('WWW-Authenticate', `Bearer error="insufficient_scope", scope="${REQUIRED_SCOPE}"`);
    send(response, 403, { error: 'insufficient_scope' });
    return;
  }
  send(response, 200, { orders: [], for: grant.sub });
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  response.end(JSON.stringify(body));
}

// Run directly: the settings come from the environment.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { ISSUER = 'http://localhost:3000', AUDIENCE, VERIFY, CLIENT_ID, CLIENT_SECRET, PORT = '5175', HOST = 'localhost' } = process.env;
  if (!AUDIENCE) throw new Error('set AUDIENCE to the API\'s identifier (apis create --identifier)');
  const running = await startResourceServer({
    issuer: ISSUER, audience: AUDIENCE, verify: VERIFY === 'introspection' ? 'introspection' : 'jwks', clientId: CLIENT_ID, clientSecret: CLIENT_SECRET,
    port: Number(PORT), host: HOST,
  });
  console.log(`example resource server: ${running.origin}/orders (checking tokens by ${VERIFY === 'introspection' ? 'introspection' : 'JWKS'})`);
}
