// The oidc-provider storage adapter: clients come from PostgreSQL, every other model lives in the
// store with its TTL, indexed by grant (for revocation), by session uid, by device user code, and by
// account (sessions and grants, for the sessions page and "sign out everywhere").
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import { ClientError, ClientGone, forRegistrant, type ClientMetadata, type ClientService, type RegisteredSave } from '../clients/clients.ts';
import type { InitialAccessTokens } from './initial-access-tokens.ts';
import type { UnansweredGrants } from './unanswered-grants.ts';
import type { Store, StoredRecord } from '../store/store.ts';
import { asProviderError } from './errors.ts';
import { AccountIndexes } from './account-sessions.ts';
import { GRANT_BOUND_MODELS, requestBeingServed, revokeGrant } from './engine-internals.ts';

/** Models that carry a grantId and so must disappear when their grant is revoked. */
const GRANT_BOUND: ReadonlySet<string> = new Set(GRANT_BOUND_MODELS);

/** Longest a record without its own expiry is kept; the engine gives every stored model one, but for the next. */
const FALLBACK_TTL_SECONDS = 14 * 24 * 3600;

/**
 * A registration access token has no lifetime (RFC 7592, and the engine gives it none): an application that only
 * reads its registration must not lose it after a fortnight. Replaced by each change, and worth nothing once its
 * client is gone, so kept as good as for ever.
 */
const REGISTRATION_ACCESS_TOKEN_TTL_SECONDS = 10 * 365 * 24 * 3600;

/**
 * A pushed authorization request (PAR) serves one authorization request only (RFC 9126 §4). The engine
 * marks it consumed only when an authorization response is sent, so until a sign-in completes its
 * request_uri could start any number of new ones. It finds the record at /auth (refusing a missing one
 * as invalid_request_uri), and once more, by the id kept in the interaction, when that sign-in resumes
 * at /auth/:uid (skipping a missing one): so the first find takes the record, atomically, and every
 * later find gets nothing.
 */
const TAKEN_ON_FIRST_FIND = new Set(['PushedAuthorizationRequest']);

/**
 * Records that name the grant (and, for a token that ends with its session, the session) the engine reads right
 * after them: a refresh checks the session, then the grant; a code exchange and introspection check the grant.
 */
const READ_AHEAD_FROM: ReadonlySet<string> = new Set(['RefreshToken', 'AuthorizationCode', 'AccessToken']);

/** Starts reading, for the request, the person a token was issued to (the engine asks for them next). */
export type PersonReadAhead = (request: object, accountId: string) => void;

/**
 * Reads a request is about to make, started as soon as a token read shows what they are, so that the engine's
 * reads one after the other find them under way (one round trip to the store instead of three, and the person's
 * row read meanwhile). Each is used once, by the request that started it, moments later: no record is served from
 * it to anyone else or later.
 */
class ReadAhead {
  readonly #store: Store;
  readonly #person: PersonReadAhead | undefined;
  readonly #started = new WeakMap<object, Map<string, Promise<StoredRecord | undefined>>>();

  constructor(store: Store, person: PersonReadAhead | undefined) {
    this.#store = store;
    this.#person = person;
  }

  /** After reading a record of one of READ_AHEAD_FROM, in a request. */
  start(request: object, payload: AdapterPayload): void {
    if (typeof payload.accountId === 'string') this.#person?.(request, payload.accountId);
    const grantId = typeof payload.grantId === 'string' ? payload.grantId : undefined;
    const sessionUid = payload.expiresWithSession && typeof payload.sessionUid === 'string' ? payload.sessionUid : undefined;
    if (!grantId && !sessionUid) return;
    const reads = this.#started.get(request) ?? new Map<string, Promise<StoredRecord | undefined>>();
    this.#started.set(request, reads);
    const read = (key: string): Promise<StoredRecord | undefined> => {
      const record = this.#store.get(key);
      // Not needed after all (the request was refused first): its failure is nobody's to handle.
      record.catch(() => {});
      reads.set(key, record);
      return record;
    };
    if (grantId) read(`Grant:${grantId}`);
    if (sessionUid) {
      // Registered before the engine awaits the pointer: the session's own read is under way when it asks.
      read(`Session:uid:${sessionUid}`).then((pointer) => {
        if (pointer) read(`Session:${JSON.parse(pointer.value) as string}`);
      }, () => {});
    }
  }

  /** The read of `key` this request started, if any, taken (a second read of it goes to the store). */
  take(request: object | undefined, key: string): Promise<StoredRecord | undefined> | undefined {
    const reads = request && this.#started.get(request);
    const record = reads?.get(key);
    reads?.delete(key);
    return record;
  }
}

/** What is exchanged for tokens, consumed in the exchange: given back when the exchange fails for an outage. */
const EXCHANGED: ReadonlySet<string> = new Set(['AuthorizationCode', 'RefreshToken']);

/**
 * `grantRevoked`: told whenever the engine (or Gatehouse through it) revokes a grant's tokens, so that what it
 * does not store — JWT access tokens — is revoked with them (src/oidc/jwt-access-tokens.ts). `unanswered`: told
 * what each token request consumed, and asked before a code or refresh token is read (unanswered-grants.ts).
 * `readPerson`: see PersonReadAhead.
 */
export function createAdapterFactory(
  store: Store, clients: ClientService, grantRevoked: (grantId: string) => Promise<void>, initialAccessTokens: Pick<InitialAccessTokens, 'spendOne'>,
  unanswered?: Pick<UnansweredGrants, 'consumed' | 'settle'>, readPerson?: PersonReadAhead,
): (model: string) => Adapter {
  const accountIndexes = new AccountIndexes(store);
  const readAhead = new ReadAhead(store, readPerson);
  return (model) => (model === 'Client'
    ? new ClientAdapter(clients, initialAccessTokens)
    : new StoreAdapter(model, store, accountIndexes, readAhead, {
      grantRevoked: model === 'AccessToken' ? grantRevoked : undefined, unanswered: EXCHANGED.has(model) ? unanswered : undefined,
    }));
}

class StoreAdapter implements Adapter {
  readonly #model: string;
  readonly #store: Store;
  readonly #accountIndexes: AccountIndexes;
  readonly #readAhead: ReadAhead;
  readonly #grantRevoked: ((grantId: string) => Promise<void>) | undefined;
  readonly #unanswered: Pick<UnansweredGrants, 'consumed' | 'settle'> | undefined;

  constructor(model: string, store: Store, accountIndexes: AccountIndexes, readAhead: ReadAhead, options: {
    grantRevoked?: ((grantId: string) => Promise<void>) | undefined; unanswered?: Pick<UnansweredGrants, 'consumed' | 'settle'> | undefined;
  }) {
    this.#model = model;
    this.#store = store;
    this.#accountIndexes = accountIndexes;
    this.#readAhead = readAhead;
    this.#grantRevoked = options.grantRevoked;
    this.#unanswered = options.unanswered;
  }

  #key(id: string): string {
    return `${this.#model}:${id}`;
  }

  upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    return asProviderError(async () => {
      const ttl = expiresIn > 0 ? expiresIn : this.#model === 'RegistrationAccessToken' ? REGISTRATION_ACCESS_TOKEN_TTL_SECONDS : FALLBACK_TTL_SECONDS;
      const key = this.#key(id);
      // A session ended from the sessions page stays ended, even if a request of its browser saves it late.
      if (this.#model === 'Session' && !(await this.#accountIndexes.mayStoreSession(payload, ttl))) return;
      // The record and its indexes are written together, in one round trip: the engine hands nothing out unless all
      // of them were written (a failed index fails the request), so written one after the other they would only wait.
      const writes: Promise<void>[] = [this.#store.put(key, JSON.stringify(payload), ttl)];
      if (this.#model === 'Grant') writes.push(this.#accountIndexes.grantSaved(id, payload, ttl));
      if (payload.grantId && GRANT_BOUND.has(this.#model)) {
        writes.push(this.#store.addToIndex(grantIndexKey(this.#model, payload.grantId), key, ttl));
      }
      if (payload.uid) writes.push(this.#store.put(`${this.#model}:uid:${payload.uid}`, JSON.stringify(id), ttl));
      if (payload.userCode) writes.push(this.#store.put(`${this.#model}:userCode:${payload.userCode}`, JSON.stringify(id), ttl));
      await Promise.all(writes);
    });
  }

  find(id: string): Promise<AdapterPayload | undefined> {
    const key = this.#key(id);
    if (TAKEN_ON_FIRST_FIND.has(this.#model)) return asProviderError(() => this.#take(key));
    // Codes and refresh tokens only: every other read (a session, an access token at introspection) goes straight on.
    const unanswered = this.#unanswered;
    if (!unanswered) return asProviderError(() => this.#read(key));
    return asProviderError(async () => {
      await unanswered.settle(key);
      return this.#read(key);
    });
  }

  findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return asProviderError(() => this.#findThrough(`${this.#model}:uid:${uid}`));
  }

  findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return asProviderError(() => this.#findThrough(`${this.#model}:userCode:${userCode}`));
  }

  /**
   * The engine does not look at whether consuming succeeded, so two concurrent exchanges of one code
   * or refresh token would both win. The store consumes atomically; the loser fails here.
   */
  consume(id: string): Promise<void> {
    // Already consumed by the find that took it: the engine consumes it when answering that same request.
    if (TAKEN_ON_FIRST_FIND.has(this.#model)) return Promise.resolve();
    return asProviderError(async () => {
      const key = this.#key(id);
      const atEpochSeconds = Math.floor(Date.now() / 1000);
      const won = await this.#store.consume(key, atEpochSeconds);
      const request = requestBeingServed();
      if (won) {
        if (request) this.#unanswered?.consumed(request, key, atEpochSeconds);
        return;
      }
      // Lost to a request presenting the same code or refresh token at the same moment: a reuse like any other, so
      // its grant goes (the engine revokes it only for a token it read as consumed already, which a request racing
      // the winner may not have).
      const record = await this.#store.get(key);
      const grantId = record ? (JSON.parse(record.value) as AdapterPayload).grantId : undefined;
      if (request && typeof grantId === 'string' && GRANT_BOUND.has(this.#model)) await revokeGrant(request.oidc.provider, grantId);
      throw new errors.InvalidGrant(`${this.#model} was already used or has expired`);
    });
  }

  destroy(id: string): Promise<void> {
    return asProviderError(() => this.#store.delete([this.#key(id)]));
  }

  revokeByGrantId(grantId: string): Promise<void> {
    return asProviderError(async () => {
      const indexKey = grantIndexKey(this.#model, grantId);
      // The JWTs first: they can only be revoked by a marker, and must not outlive the stored tokens.
      await this.#grantRevoked?.(grantId);
      const keys = await this.#store.indexMembers(indexKey);
      await this.#store.delete([...keys, indexKey]);
    });
  }

  async #read(key: string): Promise<AdapterPayload | undefined> {
    const request = requestBeingServed();
    const record = await (this.#readAhead.take(request, key) ?? this.#store.get(key));
    if (!record) return undefined;
    const payload = JSON.parse(record.value) as AdapterPayload;
    if (request && READ_AHEAD_FROM.has(this.#model)) this.#readAhead.start(request, payload);
    return record.consumedAt === undefined ? payload : { ...payload, consumed: record.consumedAt };
  }

  /** The record for the first caller only: the store's consume decides between concurrent ones. */
  async #take(key: string): Promise<AdapterPayload | undefined> {
    if (!(await this.#store.consume(key, Math.floor(Date.now() / 1000)))) return undefined;
    const record = await this.#store.get(key);
    return record ? JSON.parse(record.value) as AdapterPayload : undefined;
  }

  async #findThrough(pointerKey: string): Promise<AdapterPayload | undefined> {
    const pointer = await (this.#readAhead.take(requestBeingServed(), pointerKey) ?? this.#store.get(pointerKey));
    return pointer ? this.#read(this.#key(JSON.parse(pointer.value) as string)) : undefined;
  }
}

function grantIndexKey(model: string, grantId: string): string {
  return `grant:${grantId}:${model}`;
}

/** The engine's routes where an application reads its client (RFC 7592), or changes it and is answered with it. */
const READ_BY_REGISTRANT: ReadonlySet<string> = new Set(['client', 'client_update']);

/**
 * Clients are Gatehouse's (ClientService): the engine reads them here, and stores here those that applications
 * register themselves (RFC 7591) or change or remove with their registration access token (RFC 7592).
 */
class ClientAdapter implements Adapter {
  readonly #clients: ClientService;
  readonly #initialAccessTokens: Pick<InitialAccessTokens, 'spendOne'>;

  constructor(clients: ClientService, initialAccessTokens: Pick<InitialAccessTokens, 'spendOne'>) {
    this.#clients = clients;
    this.#initialAccessTokens = initialAccessTokens;
  }

  find(id: string): Promise<AdapterPayload | undefined> {
    return asProviderError(async () => {
      const metadata = await this.#clients.find(id);
      const route = requestBeingServed()?.oidc?.route;
      // The engine answers these with what it reads here: never a secret but the client's current one.
      return (metadata && route && READ_BY_REGISTRANT.has(route) ? forRegistrant(metadata) : metadata) as AdapterPayload | undefined;
    });
  }

  /** Called by the engine's registration endpoints alone, with metadata it has checked. */
  async upsert(_id: string, payload: AdapterPayload): Promise<void> {
    const metadata = payload as unknown as ClientMetadata;
    const ctx = requestBeingServed();
    // A registration spends one use of its initial access token, once its client is stored.
    const initialAccessToken = ctx?.oidc.route === 'registration' ? ctx.oidc.entities.InitialAccessToken : undefined;
    const how: RegisteredSave = ctx?.oidc.route === 'registration'
      ? { created: async () => { if (initialAccessToken) await this.#initialAccessTokens.spendOne(initialAccessToken.jti); } }
      : 'update';
    await asProviderError(async () => {
      try {
        await this.#clients.saveRegistered(metadata, how);
      } catch (error) {
        if (error instanceof ClientError) throw new errors.InvalidClientMetadata(error.message);
        if (error instanceof ClientGone) {
          // RFC 7592 §2.2: 401, and the registration access token of a client that is gone is revoked.
          await ctx?.oidc.entities.RegistrationAccessToken?.destroy();
          throw new errors.InvalidToken(error.message);
        }
        throw error;
      }
    });
  }

  /** A client removed with its registration access token (RFC 7592). */
  async destroy(id: string): Promise<void> {
    await asProviderError(() => this.#clients.delete(id, { type: 'client', id }));
  }

  async consume(): Promise<void> {}
  async revokeByGrantId(): Promise<void> {}
  async findByUid(): Promise<undefined> { return undefined; }
  async findByUserCode(): Promise<undefined> { return undefined; }
}
