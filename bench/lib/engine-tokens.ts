// Sessions, grants, refresh tokens and authorization codes made through an oidc-provider's own models, as a
// finished sign-in leaves them: Gatehouse's through its runtime (saved to the shared Redis), the baseline's in
// its own process. Minting ahead of a scenario keeps the sign-in's cost out of the exchange being measured.
import { randomUUID } from 'node:crypto';
import type Provider from 'oidc-provider';
import { CODE_CHALLENGE, PERSON_SCOPE, REDIRECT_URI } from './fixtures.ts';

export interface Person {
  clientId: string;
  accountId: string;
}

interface SignedInSession {
  uid: string;
  grantId: string;
  sid: string;
  loginTs: number;
}

/** Long enough for any run (the soak included): the tokens minted must not outlive their session. */
const SESSION_TTL_SECONDS = 24 * 3600;
/** Saves in flight at once: enough to keep the store busy, few enough not to swamp it. */
const CONCURRENT_SAVES = 200;

/** A person signed in to the client: a grant of PERSON_SCOPE and a session that holds it. */
async function signIn(provider: Provider, person: Person): Promise<SignedInSession> {
  const grant = new provider.Grant({ accountId: person.accountId, clientId: person.clientId });
  grant.addOIDCScope(PERSON_SCOPE);
  const grantId = await grant.save();
  const sid = randomUUID();
  const loginTs = Math.floor(Date.now() / 1000);
  const session = new provider.Session();
  Object.assign(session, { accountId: person.accountId, loginTs, amr: ['pwd'], authorizations: { [person.clientId]: { grantId, sid } } });
  await session.save(SESSION_TTL_SECONDS);
  return { uid: session.uid, grantId, sid, loginTs };
}

async function clientOf(provider: Provider, clientId: string) {
  const client = await provider.Client.find(clientId);
  if (!client) throw new Error(`the engine does not know the client ${clientId}`);
  return client;
}

/** Runs `make` `count` times, at most CONCURRENT_SAVES at once, and returns the results in order. */
async function inBatches<Result>(count: number, make: (index: number) => Promise<Result>): Promise<Result[]> {
  const results: Result[] = [];
  for (let start = 0; start < count; start += CONCURRENT_SAVES) {
    const batch = Array.from({ length: Math.min(CONCURRENT_SAVES, count - start) }, (_, offset) => make(start + offset));
    results.push(...await Promise.all(batch));
  }
  return results;
}

/**
 * Refresh tokens as a code exchange issues them to a single-page app (bound to the session), each from a sign-in
 * of its own: each starts a chain that rotates independently of the others.
 */
export async function mintRefreshTokens(provider: Provider, person: Person, count: number): Promise<string[]> {
  const client = await clientOf(provider, person.clientId);
  return inBatches(count, async () => {
    const session = await signIn(provider, person);
    const token = new provider.RefreshToken({
      client, accountId: person.accountId, grantId: session.grantId, gty: 'authorization_code', scope: PERSON_SCOPE,
      sessionUid: session.uid, sid: session.sid, authTime: session.loginTs, amr: ['pwd'], expiresWithSession: true, rotations: 0,
    });
    return token.save();
  });
}

/**
 * Authorization codes as the authorization endpoint issues them (PKCE S256, bound to the session), spread over a
 * few sign-ins so that no grant gathers every code.
 */
export async function mintAuthorizationCodes(provider: Provider, person: Person, count: number): Promise<string[]> {
  const client = await clientOf(provider, person.clientId);
  const sessions = await inBatches(Math.min(count, 64), () => signIn(provider, person));
  return inBatches(count, async (index) => {
    const session = sessions[index % sessions.length]!;
    const code = new provider.AuthorizationCode({
      client, accountId: person.accountId, grantId: session.grantId, gty: 'authorization_code', scope: PERSON_SCOPE,
      redirectUri: REDIRECT_URI, codeChallenge: CODE_CHALLENGE, codeChallengeMethod: 'S256', nonce: randomUUID(),
      sessionUid: session.uid, sid: session.sid, authTime: session.loginTs, amr: ['pwd'], expiresWithSession: true,
    });
    return code.save();
  });
}
