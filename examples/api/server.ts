// The example resource server: GET /api/hello answers only to a live Gatehouse access token, checked by
// introspection (RFC 7662) with a service client's credentials. CORS lets the example SPA's origin call it.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import * as oauth from 'oauth4webapi';
import { closeServer, listen } from '../listen.ts';

export interface ApiOptions {
  /** Gatehouse's issuer URL. */
  issuer: string;
  /** A `service` client of Gatehouse: it may introspect every client's tokens. */
  clientId: string;
  clientSecret: string;
  /** The SPA's origin: the only origin whose scripts may call this API. */
  allowedOrigin: string;
  port?: number;
  host?: string;
}

export interface RunningApi {
  origin: string;
  close(): Promise<void>;
}

type Introspect = (token: string) => Promise<oauth.IntrospectionResponse>;

export async function startApi(options: ApiOptions): Promise<RunningApi> {
  const introspect = introspector(options);
  const server = createServer((request, response) => {
    handle(request, response, options.allowedOrigin, introspect).catch((error: unknown) => {
      console.error('example API: request failed:', error instanceof Error ? error.message : error);
      if (!response.headersSent) sendJson(response, 500, { error: 'server_error' });
      else response.destroy();
    });
  });
  const origin = await listen(server, options.port ?? 0, options.host ?? '127.0.0.1');
  return { origin, close: () => closeServer(server) };
}

function introspector({ issuer, clientId, clientSecret }: ApiOptions): Introspect {
  const issuerUrl = new URL(issuer);
  // oauth4webapi refuses plain HTTP unless told; an http:// issuer only makes sense on a developer's machine.
  const requestOptions = issuerUrl.protocol === 'http:' ? { [oauth.allowInsecureRequests]: true } : {};
  const client: oauth.Client = { client_id: clientId };
  const authentication = oauth.ClientSecretBasic(clientSecret);
  // Discovered on first use and kept; forgotten on failure, so an API started before Gatehouse recovers.
  let metadata: Promise<oauth.AuthorizationServer> | undefined;
  const discover = (): Promise<oauth.AuthorizationServer> => {
    if (metadata) return metadata;
    const pending = oauth.discoveryRequest(issuerUrl, requestOptions)
      .then((response) => oauth.processDiscoveryResponse(issuerUrl, response));
    pending.catch(() => {
      if (metadata === pending) metadata = undefined;
    });
    metadata = pending;
    return pending;
  };
  // Every request asks Gatehouse afresh, never from a cache: a token revoked, or ended by a sign-out,
  // is refused from that moment on.
  return async (token) => {
    const as = await discover();
    const response = await oauth.introspectionRequest(as, client, authentication, token, requestOptions);
    return oauth.processIntrospectionResponse(as, client, response);
  };
}

async function handle(request: IncomingMessage, response: ServerResponse, allowedOrigin: string, introspect: Introspect): Promise<void> {
  const { pathname } = new URL(request.url ?? '/', 'http://api.invalid');
  const origin = request.headers.origin;
  response.setHeader('Vary', 'Origin');
  if (origin === allowedOrigin) {
    response.setHeader('Access-Control-Allow-Origin', origin);
    // Lets the SPA read why a token was refused.
    response.setHeader('Access-Control-Expose-Headers', 'WWW-Authenticate');
  }
  if (pathname !== '/api/hello') {
    sendJson(response, 404, { error: 'not_found' });
    return;
  }
  if (request.method === 'OPTIONS') {
    // The preflight: Authorization is not a CORS-safelisted header, so the browser asks before sending it.
    if (origin === allowedOrigin) {
      response.setHeader('Access-Control-Allow-Methods', 'GET');
      response.setHeader('Access-Control-Allow-Headers', 'Authorization');
      response.setHeader('Access-Control-Max-Age', '600');
    }
    response.writeHead(204).end();
    return;
  }
  if (request.method !== 'GET') {
    response.setHeader('Allow', 'GET, OPTIONS');
    sendJson(response, 405, { error: 'method_not_allowed' });
    return;
  }

  const token = bearerToken(request.headers.authorization);
  if (!token) {
    // RFC 6750 §3.1: a request without credentials gets the challenge and no error code.
    response.setHeader('WWW-Authenticate', 'Bearer');
    sendJson(response, 401, { error: 'missing_token', error_description: 'Send an access token: Authorization: Bearer <token>.' });
    return;
  }
  let introspection: oauth.IntrospectionResponse;
  try {
    introspection = await introspect(token);
  } catch (error) {
    // Never the token itself in a log line.
    console.error('example API: introspection failed:', error instanceof Error ? error.message : error);
    sendJson(response, 503, { error: 'temporarily_unavailable', error_description: 'The token could not be checked with Gatehouse.' });
    return;
  }
  // Refresh tokens introspect as active too, without token_type Bearer: they are not for APIs.
  if (!introspection.active || introspection.token_type?.toLowerCase() !== 'bearer') {
    response.setHeader('WWW-Authenticate', 'Bearer error="invalid_token", error_description="The access token is not active"');
    sendJson(response, 401, { error: 'invalid_token', error_description: 'The access token is not active.' });
    return;
  }
  sendJson(response, 200, { message: 'Hello from the example API!', sub: introspection.sub, scope: introspection.scope });
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or undefined. */
function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header ?? '');
  return match?.[1];
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  response.end(JSON.stringify(body));
}
