// Serves the example SPA (its static files, its config.json and the browser build of oauth4webapi) and
// starts the example API beside it on an origin of its own, so the SPA's API call is cross-origin as in
// a real deployment. `node examples/spa/server.ts` runs it; tests call startExample().
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startApi, type RunningApi } from '../api/server.ts';
import { closeServer, listen } from '../listen.ts';

export interface ExampleOptions {
  /** Gatehouse's issuer URL. */
  issuer: string;
  /** The SPA's client: type spa, redirect URI <origin>/callback, post-logout redirect URI <origin>/. */
  clientId: string;
  /** The API's service client, for introspection. */
  apiClientId: string;
  apiClientSecret: string;
  /** The SPA's port; 0 (the default) picks a free one. */
  port?: number;
  /** The API's port; 0 (the default) picks a free one. */
  apiPort?: number;
  /** Host name (or IPv4 address) to listen on and to put in the origins; 127.0.0.1 unless told. */
  host?: string;
}

export interface RunningExample {
  /** The SPA's origin: register `${origin}/callback` and `${origin}/` with Gatehouse. */
  origin: string;
  /** The example API's origin; it serves GET /api/hello. */
  apiOrigin: string;
  close(): Promise<void>;
}

const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));
// The package's browser-ready ES module: one file, no imports of its own.
const OAUTH4WEBAPI = createRequire(import.meta.url).resolve('oauth4webapi');

/** Every path the SPA server answers, and nothing else: no file system paths come from the URL. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: path.join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  // The redirect URI: the same page, which sees the code in its URL and finishes the sign-in.
  '/callback': { file: path.join(PUBLIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: path.join(PUBLIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: path.join(PUBLIC_DIR, 'style.css'), type: 'text/css; charset=utf-8' },
  '/vendor/oauth4webapi.js': { file: OAUTH4WEBAPI, type: 'text/javascript; charset=utf-8' },
};

export async function startExample(options: ExampleOptions): Promise<RunningExample> {
  const host = options.host ?? '127.0.0.1';
  const spa = createServer();
  const origin = await listen(spa, options.port ?? 0, host);
  let api: RunningApi;
  try {
    api = await startApi({
      issuer: options.issuer, clientId: options.apiClientId, clientSecret: options.apiClientSecret,
      allowedOrigin: origin, port: options.apiPort ?? 0, host,
    });
  } catch (error) {
    await closeServer(spa);
    throw error;
  }
  const config = { issuer: options.issuer, clientId: options.clientId, apiUrl: new URL('/api/hello', api.origin).href };
  const connectSources = [...new Set(["'self'", new URL(options.issuer).origin, api.origin])];
  spa.on('request', (request: IncomingMessage, response: ServerResponse) => {
    serve(request, response, config, connectSources).catch((error: unknown) => {
      console.error('example SPA server: request failed:', error instanceof Error ? error.message : error);
      if (!response.headersSent) response.writeHead(500).end();
      else response.destroy();
    });
  });
  return {
    origin,
    apiOrigin: api.origin,
    async close() {
      await Promise.all([closeServer(spa), api.close()]);
    },
  };
}

async function serve(request: IncomingMessage, response: ServerResponse, config: object, connectSources: string[]): Promise<void> {
  const { pathname } = new URL(request.url ?? '/', 'http://spa.invalid');
  response.setHeader('X-Content-Type-Options', 'nosniff');
  // The callback URL carries a code and state; keep them out of Referer headers.
  response.setHeader('Referrer-Policy', 'no-referrer');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.writeHead(405, { Allow: 'GET, HEAD' }).end();
    return;
  }
  if (pathname === '/config.json') {
    response.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    response.end(JSON.stringify(config));
    return;
  }
  const entry = FILES[pathname];
  if (!entry) {
    response.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('Not found');
    return;
  }
  const body = await readFile(entry.file);
  const headers: Record<string, string> = { 'Content-Type': entry.type, 'Cache-Control': 'no-cache' };
  if (entry.type.startsWith('text/html')) {
    headers['Content-Security-Policy'] = contentSecurityPolicy(body.toString('utf8'), connectSources);
    headers['Cross-Origin-Opener-Policy'] = 'same-origin';
    headers['X-Frame-Options'] = 'DENY';
  }
  response.writeHead(200, headers);
  response.end(request.method === 'HEAD' ? undefined : body);
}

/**
 * Tokens live in this page, so script injection is what would steal them: only our own scripts run
 * (plus the inline import map, allowed by its hash), and the page talks only to itself, Gatehouse and the API.
 */
function contentSecurityPolicy(html: string, connectSources: string[]): string {
  const importMaps = [...html.matchAll(/<script type="importmap">([\s\S]*?)<\/script>/g)]
    .map((match) => `'sha256-${createHash('sha256').update(match[1] ?? '').digest('base64')}'`);
  return [
    "default-src 'none'",
    `script-src 'self' ${importMaps.join(' ')}`.trim(),
    `connect-src ${connectSources.join(' ')}`,
    "style-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

// Standalone: the example's own environment, read here only (it is not part of Gatehouse).
if (import.meta.main) {
  const required = (name: string): string => {
    const value = process.env[name];
    if (!value) {
      console.error(`examples/spa/server.ts: set ${name} (see examples/README.md)`);
      process.exit(2);
    }
    return value;
  };
  const example = await startExample({
    issuer: process.env.ISSUER || 'http://localhost:3000',
    clientId: required('CLIENT_ID'),
    apiClientId: required('API_CLIENT_ID'),
    apiClientSecret: required('API_CLIENT_SECRET'),
    port: Number(process.env.PORT || 5173),
    apiPort: Number(process.env.API_PORT || 5174),
    host: process.env.HOST || 'localhost',
  });
  console.log(`Example SPA: ${example.origin}/  (API: ${example.apiOrigin}/api/hello)`);
  const stop = () => {
    example.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
