// A person's signed-in sessions across browsers, and the grants behind them: listing them for the
// sessions page, and ending one or all (which revokes their grants and every token issued under them).
import type Provider from 'oidc-provider';
import type { Store } from '../store/store.ts';

export interface SessionSummary {
  /** The session's stable uid (the engine rotates its id at login; the uid names it for the person). */
  uid: string;
  /** Epoch seconds of the login. */
  loginTs: number | undefined;
  /** How the person signed in (pwd, otp). */
  amr: string[];
  /** "Firefox on Linux", from the browser that signed in, when known. */
  device: string | undefined;
  ip: string | undefined;
  /** Names of the applications signed in through this session. */
  clientIds: string[];
}

export class AccountSessions {
  readonly #provider: Provider;
  readonly #store: Store;

  constructor(provider: Provider, store: Store) {
    this.#provider = provider;
    this.#store = store;
  }

  /** The account's live sessions, newest first. */
  async list(_accountId: string): Promise<SessionSummary[]> {
    void this.#provider; void this.#store;
    throw new Error('not built yet');
  }

  /** Ends one of the account's sessions and revokes the grants made through it; false when it is not theirs or gone. */
  async end(_accountId: string, _sessionUid: string): Promise<boolean> {
    throw new Error('not built yet');
  }

  /**
   * Ends every session of the account and revokes every grant of the account (refresh tokens of
   * applications that outlive any session included), except the session named in `keep` and its grants.
   */
  async endAll(_accountId: string, _options: { keep?: string } = {}): Promise<{ sessions: number; grants: number }> {
    throw new Error('not built yet');
  }
}
