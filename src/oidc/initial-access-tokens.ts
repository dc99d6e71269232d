// Dynamic client registration (RFC 7591) is open only to the bearer of an initial access token an administrator
// issued: the engine's own InitialAccessToken, which expires, and a number of uses kept beside it in the store.
// Each use is a record of its own, taken atomically (Store.consume), so of two registrations at once with a
// single-use token exactly one goes through. A use is taken as the client is stored, once the engine has
// accepted its metadata: a refused registration spends nothing. Administrators see and revoke tokens by an id
// of their own (a hash of the token): the token itself is shown once, when it is issued.
import { createHash } from 'node:crypto';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Store } from '../store/store.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';

/** The most uses, and the longest life, one initial access token may have. */
export const MAX_INITIAL_ACCESS_TOKEN_USES = 100;
export const MAX_INITIAL_ACCESS_TOKEN_SECONDS = 30 * 24 * 3600;

/** An issued token as administrators see it, without the token. */
export interface InitialAccessTokenSummary {
  id: string;
  expiresAt: Date;
  uses: number;
  usesLeft: number;
}

export interface IssuedInitialAccessToken extends InitialAccessTokenSummary {
  /** The token itself: shown once. */
  token: string;
}

/** What is kept of an issued token under its id (the engine's own record is found by the token). */
interface Issued {
  jti: string;
  expiresAt: number;
  uses: number;
}

const ISSUED_INDEX = 'InitialAccessToken:issued';

export class InitialAccessTokens {
  readonly #engine: () => Provider;
  readonly #store: Store;
  readonly #audit: Pick<AuditTrail, 'record'>;

  /** `engine`: the provider, made after this (its storage adapter spends the uses). */
  constructor(engine: () => Provider, store: Store, audit: Pick<AuditTrail, 'record'>) {
    this.#engine = engine;
    this.#store = store;
    this.#audit = audit;
  }

  /** A new initial access token, good for `uses` registrations within `expiresInSeconds`. */
  async issue(options: { uses: number; expiresInSeconds: number; actor: AuditActor }): Promise<IssuedInitialAccessToken> {
    if (!Number.isInteger(options.uses) || options.uses < 1 || options.uses > MAX_INITIAL_ACCESS_TOKEN_USES) throw new RangeError(`an initial access token has 1 to ${MAX_INITIAL_ACCESS_TOKEN_USES} uses`);
    const model = new (this.#engine().InitialAccessToken)({ expiresIn: options.expiresInSeconds });
    const token = await model.save();
    // Its id is known once saved (an opaque token's id is its value); it is handed out only with its uses.
    const ttl = options.expiresInSeconds;
    for (let use = 1; use <= options.uses; use += 1) await this.#store.put(useKey(model.jti, use), '1', ttl);
    const id = idOf(model.jti);
    const issued: Issued = { jti: model.jti, expiresAt: Math.floor(Date.now() / 1000) + ttl, uses: options.uses };
    await this.#store.put(issuedKey(id), JSON.stringify(issued), ttl);
    await this.#store.addToIndex(ISSUED_INDEX, id, ttl);
    await this.#audit.record({ action: 'initial_access_token.issued', outcome: 'success', actor: options.actor, detail: { id, uses: options.uses, expiresInSeconds: ttl } });
    return { token, id, expiresAt: new Date(issued.expiresAt * 1000), uses: options.uses, usesLeft: options.uses };
  }

  /** The tokens that may still register a client, soonest to expire first. */
  async list(): Promise<InitialAccessTokenSummary[]> {
    const ids = await this.#store.indexMembers(ISSUED_INDEX);
    const summaries = await Promise.all(ids.map(async (id) => ({ id, summary: await this.#summary(id) })));
    const gone = summaries.filter((entry) => !entry.summary || entry.summary.usesLeft === 0).map((entry) => entry.id);
    if (gone.length) await this.#store.removeFromIndex(ISSUED_INDEX, gone);
    return summaries.flatMap((entry) => (entry.summary && entry.summary.usesLeft > 0 ? [entry.summary] : []))
      .sort((a, b) => a.expiresAt.getTime() - b.expiresAt.getTime());
  }

  /** Withdraws a token before it is used up or expires; false when there is none with this id. */
  async revoke(id: string, actor: AuditActor): Promise<boolean> {
    const issued = await this.#issued(id);
    if (!issued) return false;
    await this.#forget(issued.jti, issued.uses);
    await this.#audit.record({ action: 'initial_access_token.revoked', outcome: 'success', actor, detail: { id } });
    return true;
  }

  /**
   * Takes one use of the token (by the engine's id of it) for the registration being stored; throws the engine's
   * invalid_token when none is left, and forgets the token once its last use is taken.
   */
  async spendOne(jti: string): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    for (let use = 1; use <= MAX_INITIAL_ACCESS_TOKEN_USES; use += 1) {
      const key = useKey(jti, use);
      if (await this.#store.consume(key, now)) {
        if (!await this.#store.get(useKey(jti, use + 1))) await this.#forget(jti, use);
        return;
      }
      if (!await this.#store.get(key)) break;
    }
    await this.#forget(jti, MAX_INITIAL_ACCESS_TOKEN_USES);
    throw new errors.InvalidToken('the initial access token has been used as many times as it may');
  }

  async #summary(id: string): Promise<InitialAccessTokenSummary | undefined> {
    const issued = await this.#issued(id);
    if (!issued) return undefined;
    const left = await Promise.all(Array.from({ length: issued.uses }, async (_, index) => {
      const record = await this.#store.get(useKey(issued.jti, index + 1));
      return record !== undefined && record.consumedAt === undefined;
    }));
    return { id, expiresAt: new Date(issued.expiresAt * 1000), uses: issued.uses, usesLeft: left.filter(Boolean).length };
  }

  async #issued(id: string): Promise<Issued | undefined> {
    if (!/^[0-9a-f]{32}$/.test(id)) return undefined;
    const record = await this.#store.get(issuedKey(id));
    return record ? JSON.parse(record.value) as Issued : undefined;
  }

  /** The engine's record, its uses and what is kept under its id: nothing of it opens registration any more. */
  async #forget(jti: string, uses: number): Promise<void> {
    await (await this.#engine().InitialAccessToken.find(jti))?.destroy();
    const id = idOf(jti);
    await this.#store.delete([issuedKey(id), ...Array.from({ length: uses }, (_, index) => useKey(jti, index + 1))]);
    await this.#store.removeFromIndex(ISSUED_INDEX, [id]);
  }
}

/** The id administrators know a token by: a hash of it, which says nothing of the token itself. */
function idOf(jti: string): string {
  // Hex, as client ids are: base64url could begin with '-', which a command line takes for an option.
  return createHash('sha256').update(`initial access token\0${jti}`).digest('hex').slice(0, 32);
}

function issuedKey(id: string): string {
  return `InitialAccessToken:id:${id}`;
}

function useKey(jti: string, use: number): string {
  return `InitialAccessToken:${jti}:use:${use}`;
}
