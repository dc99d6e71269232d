// Dynamic client registration (RFC 7591) is open only to the bearer of an initial access token an administrator
// issued: the engine's own InitialAccessToken, which expires, and a number of uses kept beside it in the store.
// Each use is a record of its own, taken atomically (Store.consume), so of two registrations at once with a
// single-use token exactly one goes through. A use is taken as the client is stored, once the engine has
// accepted its metadata: a refused registration spends nothing.
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Store } from '../store/store.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';

/** The most uses, and the longest life, one initial access token may have. */
export const MAX_INITIAL_ACCESS_TOKEN_USES = 100;
export const MAX_INITIAL_ACCESS_TOKEN_SECONDS = 30 * 24 * 3600;

export interface IssuedInitialAccessToken {
  /** The token itself: shown once, never stored in the clear by anyone but the engine's store. */
  token: string;
  expiresAt: Date;
  uses: number;
}

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
    for (let use = 1; use <= options.uses; use += 1) await this.#store.put(useKey(model.jti, use), '1', options.expiresInSeconds);
    await this.#audit.record({ action: 'initial_access_token.issued', outcome: 'success', actor: options.actor, detail: { uses: options.uses, expiresInSeconds: options.expiresInSeconds } });
    return { token, expiresAt: new Date(Date.now() + options.expiresInSeconds * 1000), uses: options.uses };
  }

  /**
   * Takes one use of the token (by its id) for the registration being stored; throws the engine's invalid_token
   * when none is left, and forgets the token once its last use is taken.
   */
  async spendOne(tokenId: string): Promise<void> {
    const now = Math.floor(Date.now() / 1000);
    for (let use = 1; use <= MAX_INITIAL_ACCESS_TOKEN_USES; use += 1) {
      const key = useKey(tokenId, use);
      if (await this.#store.consume(key, now)) {
        if (!await this.#store.get(useKey(tokenId, use + 1))) await this.#forget(tokenId);
        return;
      }
      if (!await this.#store.get(key)) break;
    }
    await this.#forget(tokenId);
    throw new errors.InvalidToken('the initial access token has been used as many times as it may');
  }

  async #forget(tokenId: string): Promise<void> {
    await (await this.#engine().InitialAccessToken.find(tokenId))?.destroy();
  }
}

function useKey(tokenId: string, use: number): string {
  return `InitialAccessToken:${tokenId}:use:${use}`;
}
