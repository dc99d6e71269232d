// The requests of each scenario, the same for both servers: token requests by grant, introspection, the public
// documents. Each also says which answers count as right (a 200 saying `"active": false` is an error here).
import { basicAuthorization, CODE_VERIFIER, REDIRECT_URI, type ApiFixture, type Target } from './fixtures.ts';
import type { LoadSpec } from './load.ts';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

function form(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

/** client_credentials for one API: its token comes in the API's format (opaque or JWT). */
export function clientCredentials(target: Target, api: ApiFixture): LoadSpec {
  const body = form({ grant_type: 'client_credentials', resource: api.identifier, scope: api.scope });
  return {
    method: 'POST', path: '/token', headers: { ...FORM, authorization: basicAuthorization(target.serviceClient) },
    body: () => body,
    onAnswer: (status, answer) => (status === 200 && !answer.includes('"access_token"') ? 'no access_token in the answer' : undefined),
  };
}

/** One client_credentials token for an API, fetched once (what introspection then asks about). */
export async function fetchAccessToken(target: Target, api: ApiFixture): Promise<string> {
  const response = await fetch(`${target.origin}/token`, {
    method: 'POST', headers: { ...FORM, authorization: basicAuthorization(target.serviceClient) },
    body: form({ grant_type: 'client_credentials', resource: api.identifier, scope: api.scope }),
  });
  const answer = await response.json() as { access_token?: string };
  if (!response.ok || !answer.access_token) throw new Error(`${target.name}: client_credentials for ${api.identifier} answered ${response.status} ${JSON.stringify(answer)}`);
  return answer.access_token;
}

/** Introspection by the client the token was issued to; anything but `"active": true` is an error. */
export function introspection(target: Target, currentToken: () => string): LoadSpec {
  return {
    method: 'POST', path: '/token/introspection', headers: { ...FORM, authorization: basicAuthorization(target.serviceClient) },
    body: () => form({ token: currentToken() }),
    onAnswer: (status, answer) => (status === 200 && !answer.includes('"active":true') ? 'token not active' : undefined),
  };
}

/** Whether the server says a token is active when its client asks (the baseline refuses JWTs: then no scenario). */
export async function introspects(target: Target, token: string): Promise<{ active: boolean; answer: string }> {
  const response = await fetch(`${target.origin}/token/introspection`, {
    method: 'POST', headers: { ...FORM, authorization: basicAuthorization(target.serviceClient) }, body: form({ token }),
  });
  const answer = await response.text();
  return { active: response.status === 200 && answer.includes('"active":true'), answer: `${response.status} ${answer}` };
}

export interface TokenPool {
  tokens: string[];
  /** Requests that found the pool empty (each sent with a token that cannot work, so an error). */
  missed: number;
}

/**
 * The refresh_token grant on rotating chains: each connection takes a refresh token from the pool and then sends
 * the one its last answer returned. An error ends its chain (the token may have been used): it takes another.
 */
export function refreshChains(target: Target, pool: TokenPool): LoadSpec {
  return {
    method: 'POST', path: '/token', headers: FORM,
    body: (connection) => {
      connection.token ??= pool.tokens.pop();
      if (connection.token === undefined) pool.missed += 1;
      return form({ grant_type: 'refresh_token', client_id: target.publicClientId, refresh_token: connection.token ?? 'none-left' });
    },
    onAnswer: (status, answer, connection) => {
      connection.token = undefined;
      if (status !== 200) return undefined;
      const next = refreshTokenIn(answer);
      if (next === undefined) return 'no refresh_token in the answer';
      connection.token = next;
      return undefined;
    },
  };
}

function refreshTokenIn(answer: string): string | undefined {
  try {
    const token = (JSON.parse(answer) as { refresh_token?: unknown }).refresh_token;
    return typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}

/** The code exchange (PKCE), each request with a code of its own from the pool; `onEmpty` is told when it runs out. */
export function codeExchange(target: Target, pool: TokenPool, onEmpty: () => void): LoadSpec {
  return {
    method: 'POST', path: '/token', headers: FORM,
    body: () => {
      const code = pool.tokens.pop();
      if (code === undefined) {
        pool.missed += 1;
        onEmpty();
      }
      return form({ grant_type: 'authorization_code', client_id: target.publicClientId, code: code ?? 'none-left', redirect_uri: REDIRECT_URI, code_verifier: CODE_VERIFIER });
    },
    onAnswer: (status, answer) => (status === 200 && !answer.includes('"refresh_token"') ? 'no refresh_token in the answer' : undefined),
  };
}

export function getDocument(path: string): LoadSpec {
  return { method: 'GET', path };
}
