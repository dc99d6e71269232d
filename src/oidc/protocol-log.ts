// What the engine answers, told to operators: every token endpoint success counted by grant type and client,
// and every protocol error (invalid_client, invalid_redirect_uri, invalid_grant…) logged at info with its
// endpoint, client and request id (the logger adds it), and counted. Only the engine's own codes and descriptions, never a credential.
import type { EventEmitter } from 'node:events';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { decodeJwt } from 'jose';
import type { Logger } from 'pino';
import type { Metrics } from '../operations/metrics.ts';

/** The engine's events for errors it answered at each endpoint (lib/helpers/initialize_app.js); server_error is the runtime's. */
const ERROR_EVENTS = [
  'authorization.error', 'grant.error', 'userinfo.error', 'introspection.error', 'revocation.error', 'jwks.error', 'discovery.error',
  'end_session.error', 'end_session_confirm.error', 'end_session_success.error', 'pushed_authorization_request.error',
  'registration_create.error', 'registration_read.error', 'registration_update.error', 'registration_delete.error',
] as const;

interface ProtocolError {
  error?: unknown;
  error_description?: unknown;
  /** The engine's reason for operators (e.g. "client not found"); never sent to the caller. */
  error_detail?: unknown;
}

export function logProtocol(provider: Provider, logger: Logger, metrics: Metrics): void {
  const log = logger.child({ component: 'protocol' });
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const grantType = ctx.oidc.params?.grant_type;
    metrics.tokenIssued(typeof grantType === 'string' ? grantType : 'unknown', ctx.oidc.client?.clientId ?? 'unknown');
  });
  // The engine's typings name each event with its own listener type; all of these take (ctx, error).
  const events = provider as unknown as EventEmitter;
  for (const event of ERROR_EVENTS) {
    events.on(event, (ctx: KoaContextWithOIDC, error: ProtocolError) => {
      const endpoint = ctx.oidc?.route ?? event.replace(/\.error$/, '');
      const code = typeof error.error === 'string' ? error.error : 'unknown';
      metrics.protocolError(endpoint, code);
      log.info({
        endpoint, error: code,
        description: text(error.error_description), detail: text(error.error_detail), clientId: clientOf(ctx),
      }, `${endpoint}: ${code}`);
    });
  }
}

/**
 * The client the request is from: the authenticated one, or the id it named (which may not exist), as a parameter,
 * in HTTP Basic credentials (the part before the secret) or as the issuer of a client assertion (unverified).
 */
function clientOf(ctx: KoaContextWithOIDC): string | undefined {
  if (ctx.oidc?.client) return ctx.oidc.client.clientId;
  const named = ctx.oidc?.params?.client_id ?? basicUser(ctx.get('authorization')) ?? assertionIssuer(ctx.oidc?.params?.client_assertion);
  return typeof named === 'string' ? named.slice(0, 200) : undefined;
}

function basicUser(authorization: string): string | undefined {
  const credentials = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(authorization)?.[1];
  if (credentials === undefined) return undefined;
  const decoded = Buffer.from(credentials, 'base64').toString('utf8');
  const user = decoded.slice(0, Math.max(decoded.indexOf(':'), 0));
  try {
    return decodeURIComponent(user) || undefined;
  } catch {
    return undefined;
  }
}

function assertionIssuer(assertion: unknown): string | undefined {
  if (typeof assertion !== 'string') return undefined;
  try {
    const { iss } = decodeJwt(assertion);
    return typeof iss === 'string' ? iss : undefined;
  } catch {
    return undefined;
  }
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' ? value.slice(0, 300) : undefined;
}
