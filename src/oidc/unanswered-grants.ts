// The engine consumes a code or a refresh token before it saves the tokens it is exchanged for. When the store or the
// database fails in between, the client is answered 503 and told to try again, but what it presented is spent: its
// retry would be taken for a replay, which revokes the grant, and an outage would sign people out of their apps. So a
// token request that fails for an outage before the engine made its answer gives back what it consumed. Once tokens
// were made, they may reach the client after all (the refresh grace period's copy of them, written late): then what
// they replace stays spent, or two chains of refresh tokens would live on. The store may be what is down: the give-back is tried again in the background until it answers, and a
// retry reaching this process first gives it back before it is read. A retry reaching another process in the
// moment between the store's return and the next background try still finds it spent.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from 'pino';
import { DependencyUnavailable } from '../errors.ts';
import type { Store } from '../store/index.ts';
import { TemporarilyUnavailable } from './errors.ts';

/** How long a consumed mark is tried to be taken back while the store is down; a longer outage leaves it spent. */
const GIVE_BACK_FOR_MS = 10 * 60_000;
const RETRY_EVERY_MS = 250;

interface Consumption {
  key: string;
  atEpochSeconds: number;
}

export class UnansweredGrants {
  readonly #store: Store;
  readonly #log: Logger;
  /** What each request under way consumed. */
  readonly #consumedBy = new WeakMap<object, Consumption[]>();
  /** Consumed marks to take back, by store key: the time each was set, and until when to try. */
  readonly #pending = new Map<string, { atEpochSeconds: number; until: number }>();
  #retrying = false;

  constructor(store: Store, logger: Logger) {
    this.#store = store;
    this.#log = logger.child({ component: 'unanswered-grants' });
  }

  /** The adapter consumed `key` for `request`. */
  consumed(request: object, key: string, atEpochSeconds: number): void {
    this.#consumedBy.set(request, [...this.#consumedBy.get(request) ?? [], { key, atEpochSeconds }]);
  }

  /** Before the adapter reads `key`: a mark waiting to be taken back is taken back first (or the read fails as the store does). */
  async settle(key: string): Promise<void> {
    if (this.#pending.has(key)) await this.#giveBack(key);
  }

  /** Around the engine's authorization_code and refresh_token grants (Engine.aroundGrant). */
  readonly around = async (ctx: KoaContextWithOIDC, handle: () => Promise<void>): Promise<void> => {
    try {
      await handle();
    } catch (error) {
      const outage = error instanceof TemporarilyUnavailable || error instanceof DependencyUnavailable;
      if (outage && !madeTokens(ctx)) this.#unanswered(ctx);
      throw error;
    }
  };

  #unanswered(request: object): void {
    const until = Date.now() + GIVE_BACK_FOR_MS;
    for (const { key, atEpochSeconds } of this.#consumedBy.get(request) ?? []) this.#pending.set(key, { atEpochSeconds, until });
    void this.#retry();
  }

  async #retry(): Promise<void> {
    if (this.#retrying) return;
    this.#retrying = true;
    try {
      while (this.#pending.size) {
        await Promise.all([...this.#pending.keys()].map((key) => this.#giveBack(key).catch(() => undefined)));
        if (this.#pending.size) await sleep(RETRY_EVERY_MS, undefined, { ref: false });
      }
    } finally {
      this.#retrying = false;
    }
  }

  async #giveBack(key: string): Promise<void> {
    const pending = this.#pending.get(key);
    if (!pending) return;
    // The key names the token itself: only its model is logged.
    const model = key.slice(0, key.indexOf(':'));
    try {
      await this.#store.unconsume(key, pending.atEpochSeconds);
      this.#pending.delete(key);
      this.#log.info({ model }, 'a token request that failed for an outage gave back what it consumed');
    } catch (error) {
      if (error instanceof DependencyUnavailable && Date.now() < pending.until) throw error;
      this.#pending.delete(key);
      this.#log.warn({ model, err: error }, 'what a failed token request consumed could not be given back: presenting it again revokes its grant');
      throw error;
    }
  }
}

/** Whether the engine made its answer (a token response) before the request failed. */
function madeTokens(ctx: KoaContextWithOIDC): boolean {
  const body = ctx.body as { access_token?: unknown } | null | undefined;
  return typeof body?.access_token === 'string';
}
