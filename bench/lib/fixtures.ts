// What both servers under measurement are set up with, so that each scenario asks the same of each: the two
// APIs (one JWT, one opaque), the person's scopes, the browser app's redirect URI and PKCE pair, the password.
import { createHash } from 'node:crypto';

export interface ApiFixture {
  identifier: string;
  scope: string;
}

/** An API whose access tokens are opaque: stored, and checked by introspection. */
export const OPAQUE_API: ApiFixture = { identifier: 'https://opaque-api.bench.example', scope: 'opaque:read' };
/** An API whose access tokens are JWTs (RFC 9068, ES256), checked with the JWKS. */
export const JWT_API: ApiFixture = { identifier: 'https://jwt-api.bench.example', scope: 'jwt:read' };

/** What a single-page app asks for when a person signs in to it. */
export const PERSON_SCOPE = 'openid profile email';
export const REDIRECT_URI = 'http://127.0.0.1:4999/callback';

/** One PKCE pair for every minted code: the server still hashes the verifier at each exchange. */
export const CODE_VERIFIER = 'bench-code-verifier-bench-code-verifier-bench-code-verifier';
export const CODE_CHALLENGE = createHash('sha256').update(CODE_VERIFIER).digest('base64url');

export const PERSON = { email: 'bench.person@example.com', password: 'correct horse battery staple', name: 'Bench Person' };

/**
 * Authorization codes live this long on both servers during a run (the usual 60 s could end before a scenario
 * reaches the last of the codes minted ahead of it).
 */
export const AUTHORIZATION_CODE_TTL_SECONDS = 600;

/** The baseline's clients (Gatehouse's are registered through its runtime, with ids and secrets of its making). */
export const BASELINE_SERVICE_CLIENT = { id: 'bench-service', secret: 'bench-service-secret-bench-service-secret' };
export const BASELINE_PUBLIC_CLIENT_ID = 'bench-single-page-app';

/** A server under measurement: where it answers, and the clients and tokens a scenario uses there. */
export interface Target {
  /** "baseline" or "gatehouse". */
  name: string;
  origin: string;
  /** The process to watch (its memory, and its children's). */
  pid: number;
  serviceClient: { id: string; secret: string };
  publicClientId: string;
  /** Fresh refresh tokens, each the start of a chain of its own (its own session and grant). */
  mintRefreshTokens(count: number): Promise<string[]>;
  /** Fresh authorization codes for the public client, with CODE_CHALLENGE. */
  mintAuthorizationCodes(count: number): Promise<string[]>;
}

export function basicAuthorization(client: { id: string; secret: string }): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(client.id)}:${encodeURIComponent(client.secret)}`).toString('base64')}`;
}
