// A client's optional refresh-token grace period (metadata refresh_token_grace_period, seconds; off by default):
// a single-page app open in several tabs may refresh with the same token at the same moment. Without a grace
// period the second use is taken for a stolen token and revokes the grant (every tab is signed out). Within it,
// every presentation of that token gets the very answer the first got — the same new tokens — so the chain never
// forks. The trade-off: for those seconds, whoever presents the token (a thief with a copy, too) gets those tokens
// rather than setting off the revocation; the reuse is still caught after them. A token bound to a DPoP key gets the
// answer only with a new, valid proof of that key, as the engine would ask.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { REFRESH_TOKEN_GRACE_PERIOD } from '../clients/clients.ts';
import type { Sealer } from '../keys/sealed.ts';
import type { Store } from '../store/index.ts';
import { spendDpopProof, verifiedDpopProof } from './engine-internals.ts';

/** How long a presentation waits for the first one's answer before the engine judges it alone. */
const WAIT_FOR_FIRST_SECONDS = 5;
const POLL_MS = 20;

interface Answered {
  /** The first answer, sealed with ENCRYPTION_KEYS: it holds tokens. */
  sealed: string;
  /** The DPoP key it was bound to, if any: the same answer only goes to a holder of the same key. */
  jkt: string | undefined;
  /** What the first presentation asked for (its resource and scope): the answer fits only the same request. */
  asked: string;
}
type Entry = { pending: true } | Answered;

/**
 * Around the engine's refresh_token grant (Engine.aroundGrant): the first presentation of a token claims it in the
 * store and is handled by the engine; the others within the client's grace period wait for its answer and get it.
 */
export function refreshTokenGracePeriod(store: Store, sealer: Sealer) {
  return async function withGracePeriod(ctx: KoaContextWithOIDC, handle: () => Promise<void>): Promise<void> {
    const seconds = gracePeriodOf(ctx.oidc.client);
    const token = ctx.oidc.params?.refresh_token;
    if (!seconds || typeof token !== 'string') return handle();
    // Per client: another client presenting the token is not a second tab, and its request is the engine's to refuse.
    const context = `refresh-grace:${ctx.oidc.client!.clientId}`;
    const key = `${context}:${createHash('sha256').update(token).digest('base64url')}`;
    const { provider } = ctx.oidc;

    // The claim lasts as long as the others wait for it: a first presentation slower than the period (a slow store)
    // must not let a repeat that came within the period reach the engine, which would take it for a replay.
    if (await store.create(key, JSON.stringify({ pending: true } satisfies Entry), seconds + WAIT_FOR_FIRST_SECONDS)) {
      try {
        await handle();
      } catch (error) {
        // Refused: the others are judged by the engine as this one was (the claim, if it cannot be deleted now, ends on
        // its own, and they wait for it no longer than WAIT_FOR_FIRST_SECONDS). The refusal is this request's answer.
        await store.delete([key]).catch(() => undefined);
        throw error;
      }
      // The proof the engine verified while handling it (kept for the request).
      const jkt = (await verifiedDpopProof(provider, ctx))?.thumbprint;
      const answered: Answered = { sealed: await sealer.seal(JSON.stringify(ctx.body), context), jkt, asked: whatIsAsked(ctx) };
      // The tokens are made and saved, and their refresh token replaces the one presented, for good: they are this
      // request's answer even if the store cannot keep their copy for the other tabs now (those then get the engine's
      // answer after WAIT_FOR_FIRST_SECONDS, as without a grace period).
      await store.put(key, JSON.stringify(answered), seconds).catch(() => undefined);
      return;
    }
    const first = await firstAnswer(store, key);
    // No answer to give (the first was refused, or is taking too long): the engine decides.
    if (!first) return handle();
    // Another API or other scopes than the first asked: its answer would not fit, and the engine would take this
    // for a stolen token and revoke the grant. Refused alone; the app retries with the new refresh token.
    if (first.asked !== whatIsAsked(ctx)) {
      const refusal = new errors.InvalidGrant('asked for another resource or scope within the grace period');
      refusal.error_description = 'this refresh token was just used for another resource or scope; use the refresh token that answer gave';
      throw refusal;
    }
    const answer = JSON.parse(await sealer.open(first.sealed, context)) as { refresh_token?: unknown };
    // Its tokens revoked since (signed out everywhere, a password reset, the account disabled): the engine answers.
    if (typeof answer.refresh_token === 'string' && !await provider.RefreshToken.find(answer.refresh_token)) return handle();
    // A repeat's proof is verified as the engine would (a made-up or copied one is refused); another key: the engine decides.
    const proof = await verifiedDpopProof(provider, ctx);
    if (proof?.thumbprint !== first.jkt) return handle();
    await spendDpopProof(provider, ctx, proof, ctx.oidc.client!.clientId);
    ctx.body = answer;
  };
}

async function firstAnswer(store: Store, key: string): Promise<Answered | undefined> {
  const deadline = Date.now() + WAIT_FOR_FIRST_SECONDS * 1000;
  while (Date.now() < deadline) {
    const record = await store.get(key);
    if (!record) return undefined;
    const entry = JSON.parse(record.value) as Entry;
    if (!('pending' in entry)) return entry;
    await sleep(POLL_MS);
  }
  return undefined;
}

/** A request's resource indicators and scope, in a form that compares equal whatever their order. */
function whatIsAsked(ctx: KoaContextWithOIDC): string {
  const { resource, scope } = ctx.oidc.params ?? {};
  const resources = (Array.isArray(resource) ? resource : [resource]).filter((value) => typeof value === 'string').sort();
  const scopes = typeof scope === 'string' ? scope.split(' ').filter(Boolean).sort() : [];
  return JSON.stringify([resources, scopes]);
}

function gracePeriodOf(client: KoaContextWithOIDC['oidc']['client']): number {
  const seconds = (client as unknown as Record<string, unknown> | undefined)?.[REFRESH_TOKEN_GRACE_PERIOD];
  return typeof seconds === 'number' ? seconds : 0;
}
