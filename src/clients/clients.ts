// Registered OAuth clients: the three kinds Gatehouse offers and the metadata each gets,
// kept in PostgreSQL (with recent reads in memory, see client-cache.ts) and read by the oidc-provider adapter.
import { randomBytes } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Prisma } from '../db/index.ts';
import type { Prisma as PrismaTypes } from '../db/generated/client.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';
import type { ApiWithdrawal } from '../apis/apis.ts';
import type { ClientCache } from './client-cache.ts';
import { originOf, secureUriProblem } from '../urls.ts';
import { UNSTORABLE_TEXT, describeNameProblem, nameProblem, pathsToUnstorableText } from '../text.ts';
import { publicHostProblem } from './public-hosts.ts';

type JsonObject = PrismaTypes.InputJsonObject;

export type ClientType = 'spa' | 'web' | 'native' | 'service';
export const CLIENT_TYPES: readonly ClientType[] = ['spa', 'web', 'native', 'service'];

export interface NewClient {
  name: string;
  type: ClientType;
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  /** Space-separated scopes about the person the client may request; omitted means the standard OIDC scopes. */
  scope?: string;
  /** Scopes of APIs the client may ask for, at any API defining them (metadata api_scopes). */
  apiScopes?: string[] | undefined;
  /** The API (its identifier) the client's tokens are for when a request names none (metadata default_resource). */
  defaultApi?: string | undefined;
  /** A service client that is an API's resource server: it may introspect that API's tokens (metadata resource_server). */
  resourceServer?: string | undefined;
  /** Every sign-in to this client must include the second factor (metadata require_second_factor). */
  requireSecondFactor?: boolean;
  /** One of the organisation's own applications: allowed what it asks, with no consent page (metadata first_party). */
  firstParty?: boolean;
  /** How a web app presents its secret at the token endpoint (RFC 6749 2.3.1): in the Authorization header (default), or in the form. */
  tokenEndpointAuthMethod?: SecretAuthMethod;
  /** Where Gatehouse's server POSTs a logout token when a session ends (Back-Channel Logout 1.0): web clients. */
  backchannelLogoutUri?: string | undefined;
  /** What the browser loads in a hidden frame when it signs out (Front-Channel Logout 1.0): web and spa clients. */
  frontchannelLogoutUri?: string | undefined;
  /** Seconds in which a refresh token presented again gets the first answer (src/oidc/refresh-grace.ts); 0: off. */
  refreshTokenGracePeriod?: number | undefined;
}

export type SecretAuthMethod = 'client_secret_basic' | 'client_secret_post';
export const SECRET_AUTH_METHODS: readonly SecretAuthMethod[] = ['client_secret_basic', 'client_secret_post'];

export interface ClientChanges {
  name?: string | undefined;
  redirectUris?: string[] | undefined;
  postLogoutRedirectUris?: string[] | undefined;
  scope?: string | undefined;
  /** Replaces the API scopes the client may ask for (empty: none). */
  apiScopes?: string[] | undefined;
  /** A new default API; null removes it. */
  defaultApi?: string | null | undefined;
  /** The API whose resource server the client is; null removes it. */
  resourceServer?: string | null | undefined;
  firstParty?: boolean | undefined;
  /** Whether every sign-in to it must include the second factor (not for a service client, which signs nobody in). */
  requireSecondFactor?: boolean | undefined;
  /** A new back-channel logout URI; null removes it. */
  backchannelLogoutUri?: string | null | undefined;
  /** A new front-channel logout URI; null removes it. */
  frontchannelLogoutUri?: string | null | undefined;
  /** A new refresh-token grace period in seconds; 0 turns it off. */
  refreshTokenGracePeriod?: number | undefined;
}

/** oidc-provider client metadata, as stored. */
export type ClientMetadata = Record<string, unknown> & { client_id: string };

/** Client metadata: seconds in which a refresh token presented again gets the first answer (see src/oidc/refresh-grace.ts). */
export const REFRESH_TOKEN_GRACE_PERIOD = 'refresh_token_grace_period';
/** "A few seconds": enough for tabs that woke together, short enough to leave a thief little. */
export const LONGEST_REFRESH_TOKEN_GRACE_PERIOD = 60;

/** RFC 6749 appendix A.1: client_id is printable ASCII. Anything else cannot name a client. */
const CLIENT_ID_SYNTAX = /^[\x20-\x7e]{1,255}$/;

export class ClientError extends Error {
  override name = 'ClientError';
}

/**
 * How a self-registered client is saved: an update of it (RFC 7592), or its registration, with what is to happen
 * once it is written (spending a use of the initial access token); if that fails, the client is taken away again.
 */
export type RegisteredSave = 'update' | { created(): Promise<void> };

/** The client an update (RFC 7592) names was deleted meanwhile. */
export class ClientGone extends Error {
  constructor() {
    super('the client no longer exists');
    this.name = 'ClientGone';
  }
}

/** The client changed since the version a change was made to (another administrator's change, at the same time). */
export class ClientChangedMeanwhile extends ClientError {
  override name = 'ClientChangedMeanwhile';

  constructor() {
    super('the client changed meanwhile: read it again');
  }
}

/** Checks metadata the way the engine will read it (oidc-provider's Client.validate). */
export type ClientMetadataValidator = (metadata: ClientMetadata) => Promise<void>;

export class ClientService {
  readonly #prisma: Prisma;
  readonly #validate: ClientMetadataValidator;
  readonly #audit: AuditTrail;
  readonly #cache: ClientCache;

  /** Every create, update and delete goes through `cache.changed`, which tells the other instances. */
  constructor(prisma: Prisma, validate: ClientMetadataValidator, audit: AuditTrail, cache: ClientCache) {
    this.#prisma = prisma;
    this.#validate = validate;
    this.#audit = audit;
    this.#cache = cache;
  }

  /** Gatehouse's rules for a client's text (textProblem), then the engine's for its metadata: at every door alike. */
  async #check(metadata: ClientMetadata): Promise<void> {
    const problem = textProblem(metadata);
    if (problem) throw new ClientError(problem);
    await this.#validate(metadata);
  }

  /** Registers a client; `actor` says who asked (an administrator by default) for the audit trail. */
  async create(input: NewClient, actor: AuditActor = { type: 'admin' }): Promise<ClientMetadata> {
    const metadata = metadataFor(input);
    await this.#check(metadata);
    await this.#prisma.client.create({ data: { id: metadata.client_id, metadata: metadata as unknown as JsonObject } });
    // No instance may go on taking the new id for an unknown one.
    await this.#cache.changed(metadata.client_id);
    await this.#audit.record({
      action: 'client.created', outcome: 'success', actor, clientId: metadata.client_id,
      detail: { name: String(metadata.client_name), type: input.type, redirectUris: input.redirectUris ?? [] },
    });
    return metadata;
  }

  /**
   * Changes a client's name, redirect URIs, post-logout redirect URIs or scope; what is not given stays.
   * Its id, kind and secret never change. Undefined when there is no such client. `unchangedSince`: the version
   * (updatedAt) it was read at; ClientChangedMeanwhile when it moved on, or when it changes during this one.
   */
  async update(clientId: string, changes: ClientChanges, actor: AuditActor = { type: 'admin' }, unchangedSince?: Date): Promise<ClientMetadata | undefined> {
    // From the database itself: the change is made to what is stored, never to a copy in memory.
    const stored = CLIENT_ID_SYNTAX.test(clientId) ? await this.record(clientId) : undefined;
    if (!stored) return undefined;
    if (unchangedSince && stored.updatedAt.getTime() !== unchangedSince.getTime()) throw new ClientChangedMeanwhile();
    const current = stored.metadata;
    const name = changes.name?.trim();
    if (changes.name !== undefined && !name) throw new ClientError('a client needs a name');
    const type = clientTypeOf(current);
    const isService = type === 'service';
    if (isService && changes.firstParty) throw new ClientError('a service client signs nobody in: there is no consent to skip');
    if (isService && changes.requireSecondFactor) throw new ClientError('a service client signs nobody in: it cannot require a second factor');
    if (isService && changes.refreshTokenGracePeriod) throw new ClientError(NO_REFRESH_TOKENS);
    if (isService && (changes.redirectUris?.length || changes.postLogoutRedirectUris?.length)) {
      throw new ClientError('a service client signs nobody in: it takes no redirect URIs');
    }
    if (!isService && changes.redirectUris && !changes.redirectUris.length) throw new ClientError('a client that signs people in needs at least one redirect URI');
    checkRedirects(type, { redirect_uris: changes.redirectUris ?? [], post_logout_redirect_uris: changes.postLogoutRedirectUris ?? [] });
    const metadata: ClientMetadata = {
      ...withoutLogoutUris(current, { back: changes.backchannelLogoutUri !== undefined, front: changes.frontchannelLogoutUri !== undefined }),
      ...logoutMetadata(type, { back: changes.backchannelLogoutUri ?? undefined, front: changes.frontchannelLogoutUri ?? undefined }),
      ...(name ? { client_name: name } : {}),
      ...(changes.redirectUris ? { redirect_uris: changes.redirectUris } : {}),
      ...(changes.postLogoutRedirectUris ? { post_logout_redirect_uris: changes.postLogoutRedirectUris } : {}),
      ...(changes.scope !== undefined ? { scope: changes.scope } : {}),
      ...(changes.firstParty !== undefined ? { first_party: changes.firstParty } : {}),
      ...(changes.requireSecondFactor !== undefined ? { require_second_factor: changes.requireSecondFactor } : {}),
    };
    if (changes.refreshTokenGracePeriod !== undefined) {
      delete metadata[REFRESH_TOKEN_GRACE_PERIOD];
      Object.assign(metadata, gracePeriodMetadata(changes.refreshTokenGracePeriod));
    }
    if (changes.resourceServer && !isService) throw new ClientError('only a service client can be an API\'s resource server');
    // API settings given replace the old ones (null or empty removes one); those not given stay.
    for (const [setting, key] of API_SETTINGS) if (changes[setting] !== undefined) delete metadata[key];
    Object.assign(metadata, apiMetadata({ apiScopes: changes.apiScopes, defaultApi: changes.defaultApi ?? undefined, resourceServer: changes.resourceServer ?? undefined }));
    await this.#check(metadata);
    // Only if no one changed it since it was read here: two changes at once never lose one.
    const { count } = await this.#prisma.client.updateMany({ where: { id: clientId, updatedAt: stored.updatedAt }, data: { metadata: metadata as unknown as JsonObject } });
    if (!count) throw new ClientChangedMeanwhile();
    await this.#cache.changed(clientId);
    await this.#audit.record({
      action: 'client.updated', outcome: 'success', actor, clientId,
      detail: { changed: Object.keys(changes).filter((key) => changes[key as keyof ClientChanges] !== undefined) },
    });
    return metadata;
  }

  /**
   * Removes a client. Its tokens stop working at once on this instance, and on the others sharing the
   * store as soon as they hear of it: the engine refuses every token whose client it can no longer find.
   * False when there was no such client.
   */
  async delete(clientId: string, actor: AuditActor = { type: 'admin' }): Promise<boolean> {
    if (!CLIENT_ID_SYNTAX.test(clientId)) return false;
    const { count } = await this.#prisma.client.deleteMany({ where: { id: clientId } });
    if (!count) return false;
    await this.#cache.changed(clientId);
    await this.#audit.record({ action: 'client.deleted', outcome: 'success', actor, clientId });
    return true;
  }

  /** A client as stored, with its history (from the database, never from memory); undefined when there is none. */
  async record(clientId: string): Promise<ClientRecord | undefined> {
    if (!CLIENT_ID_SYNTAX.test(clientId)) return undefined;
    const row = await this.#prisma.client.findUnique({ where: { id: clientId } });
    return row ? { metadata: row.metadata as ClientMetadata, createdAt: row.createdAt, updatedAt: row.updatedAt } : undefined;
  }

  /**
   * A page of clients, oldest first, and whether more follow; each filter narrows: of one type, with a name that holds
   * `name` (case aside).
   */
  async page(filter: { type?: ClientType | undefined; name?: string | undefined }, page: { after?: { createdAt: Date; id: string } | undefined; limit: number }): Promise<{ clients: ClientRecord[]; more: boolean }> {
    // The type is read from the metadata (clientTypeOf), so the page is filled from as many rows as it takes.
    const nameHolds = filter.name?.toLocaleLowerCase();
    const records: ClientRecord[] = [];
    let after = page.after;
    for (;;) {
      const rows = await this.#prisma.client.findMany({
        where: after ? { OR: [{ createdAt: { gt: after.createdAt } }, { createdAt: after.createdAt, id: { gt: after.id } }] } : {},
        orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], take: 200,
      });
      for (const row of rows) {
        const metadata = row.metadata as ClientMetadata;
        if (filter.type && clientTypeOf(metadata) !== filter.type) continue;
        if (nameHolds && !String(metadata.client_name ?? '').toLocaleLowerCase().includes(nameHolds)) continue;
        if (records.length === page.limit) return { clients: records, more: true };
        records.push({ metadata, createdAt: row.createdAt, updatedAt: row.updatedAt });
      }
      if (rows.length < 200) return { clients: records, more: false };
      const last = rows.at(-1)!;
      after = { createdAt: last.createdAt, id: last.id };
    }
  }

  /**
   * Gives a client with a secret a new one. The old one is still accepted for `overlapSeconds` (0: not at all),
   * so the application can be given the new secret without an outage. Undefined when there is no such client;
   * a client without a secret (a browser or native app) is refused.
   */
  async rotateSecret(clientId: string, overlapSeconds: number, actor: AuditActor = { type: 'admin' }): Promise<ClientMetadata | undefined> {
    const rotated = await this.#rewrite(clientId, (metadata) => {
      if (typeof metadata.client_secret !== 'string') throw new ClientError(`a ${clientTypeOf(metadata)} client has no secret`);
      const next: ClientMetadata = { ...metadata, client_secret: newSecret() };
      delete next[PREVIOUS_CLIENT_SECRET];
      delete next[PREVIOUS_CLIENT_SECRET_EXPIRES_AT];
      if (overlapSeconds > 0) {
        next[PREVIOUS_CLIENT_SECRET] = metadata.client_secret;
        next[PREVIOUS_CLIENT_SECRET_EXPIRES_AT] = Math.floor(Date.now() / 1000) + overlapSeconds;
      }
      return next;
    });
    if (!rotated) return undefined;
    await this.#cache.changed(clientId);
    await this.#audit.record({ action: 'client.secret_rotated', outcome: 'success', actor, clientId, detail: { overlapSeconds } });
    return rotated;
  }

  /**
   * Drops from clients the API settings an API change left naming what is gone (every stored client stays one its
   * doors would accept): a deleted API as default or resource server, scopes no registered API defines any more, and
   * a default API of which the client may no longer ask any scope. Each client changed is audited, as the
   * administrator's change that caused it.
   */
  async dropWithdrawnApiSettings(withdrawal: ApiWithdrawal, actor: AuditActor = { type: 'admin' }): Promise<void> {
    const { api, undefinedScopes } = withdrawal;
    const candidates = await this.#prisma.client.findMany({
      where: {
        OR: [
          { metadata: { path: ['default_resource'], equals: api } },
          { metadata: { path: ['resource_server'], equals: api } },
          // A prefilter (a scope may be part of another's name): what is dropped is decided on the whole list below.
          ...undefinedScopes.map((scope) => ({ metadata: { path: ['api_scopes'], string_contains: scope } })),
        ],
      },
      select: { id: true },
    });
    for (const { id } of candidates) {
      // The settings changed in the version written (a retry starts again from the version read then).
      let changed: string[] = [];
      const rewritten = await this.#rewrite(id, (metadata) => {
        const next = withoutWithdrawnApiSettings(metadata, withdrawal);
        changed = API_SETTINGS.filter(([, key]) => !isDeepStrictEqual(next[key], metadata[key])).map(([setting]) => setting);
        return changed.length ? next : undefined;
      });
      if (!rewritten) continue;
      await this.#cache.changed(id);
      await this.#audit.record({
        action: 'client.updated', outcome: 'success', actor, clientId: id,
        detail: { changed, because: withdrawal.deleted ? 'api.deleted' : 'api.updated', api },
      });
    }
  }

  /**
   * Writes what `change` makes of a client's stored metadata (undefined: nothing to write), over the version it was
   * made from: a change saved meanwhile (another administrator's) is read again and kept. The metadata written, or
   * undefined when there is no such client or nothing changed.
   */
  async #rewrite(clientId: string, change: (metadata: ClientMetadata) => ClientMetadata | undefined): Promise<ClientMetadata | undefined> {
    for (;;) {
      const stored = await this.record(clientId);
      const next = stored && change(stored.metadata);
      if (!next) return undefined;
      const { count } = await this.#prisma.client.updateMany({ where: { id: clientId, updatedAt: stored.updatedAt }, data: { metadata: next as unknown as JsonObject } });
      if (count) return next;
    }
  }

  /**
   * Stores a client an application registered itself (RFC 7591, through the engine, which made its id and secret
   * and checked its metadata as it reads it), or changed with its registration access token (RFC 7592): Gatehouse's
   * own rules for self-registered clients come first (registrationProblem), and a change keeps what an administrator
   * set, which the application may leave out or send back unchanged. `created`: whether it is new. An update of a
   * client deleted since is a ClientGone.
   */
  async saveRegistered(metadata: ClientMetadata, how: RegisteredSave): Promise<{ created: boolean }> {
    // From the database itself, like update(): an administrator's change is kept, never that of a copy in memory.
    const existing = await this.record(metadata.client_id);
    // Deleted meanwhile (the engine may still hold it in memory): an update must not make it again, with its tokens.
    if (how === 'update' && !existing) throw new ClientGone();
    const problem = registrationProblem(metadata, existing?.metadata);
    if (problem) throw new ClientError(problem);
    const saved: ClientMetadata = existing ? { ...metadata, ...administeredIn(existing.metadata) } : metadata;
    await this.#check(saved);
    if (existing) {
      // Only if no one changed it since it was read here: an administrator's change at the same time is not lost.
      const { count } = await this.#prisma.client.updateMany({ where: { id: metadata.client_id, updatedAt: existing.updatedAt }, data: { metadata: saved as unknown as JsonObject } });
      if (!count) throw new ClientChangedMeanwhile();
    } else {
      await this.#prisma.client.create({ data: { id: metadata.client_id, metadata: saved as unknown as JsonObject } });
      // Spent once the client is stored, so that a registration the database fails spends nothing. One whose token's
      // last use another registration took meanwhile is taken away again (should that fail too, a client stays whose
      // id and secret nobody was given).
      if (how !== 'update') {
        await how.created().catch(async (error: unknown) => {
          await this.#prisma.client.delete({ where: { id: metadata.client_id } }).catch(() => undefined);
          throw error;
        });
      }
    }
    await this.#cache.changed(metadata.client_id);
    const actor = { type: 'client' as const, id: metadata.client_id };
    await this.#audit.record({
      action: existing ? 'client.updated' : 'client.created', outcome: 'success', actor, clientId: metadata.client_id,
      detail: { registration: true, name: String(metadata.client_name ?? ''), type: clientTypeOf(metadata) },
    });
    return { created: !existing };
  }

  /** Every registered client, oldest first, as stored (the secret included: print them without it). */
  async list(): Promise<ClientMetadata[]> {
    const rows = await this.#prisma.client.findMany({ orderBy: [{ createdAt: 'asc' }, { id: 'asc' }] });
    return rows.map((row) => row.metadata as ClientMetadata);
  }

  /** Whether find() answers from memory now: the cache is on and listening for changes announced by other instances. */
  get cacheActive(): boolean {
    return this.#cache.active;
  }

  /** The client as the engine reads it: from memory when read recently (client-cache.ts), else from the database. */
  async find(clientId: string): Promise<ClientMetadata | undefined> {
    if (!CLIENT_ID_SYNTAX.test(clientId)) return undefined;
    return this.#cache.read(clientId, () => this.#load(clientId));
  }

  /**
   * Whether a browser app at this origin may call the endpoints single-page apps use (token, userinfo,
   * revocation): it is the origin of a redirect URI of a registered single-page app. From memory like
   * find() (client-cache.ts), so that answering a CORS preflight costs no query.
   */
  async isSinglePageAppOrigin(origin: string): Promise<boolean> {
    const origins = await this.#cache.readSinglePageAppOrigins(() => this.#loadSinglePageAppOrigins());
    return origins.has(origin);
  }

  async #loadSinglePageAppOrigins(): Promise<ReadonlySet<string>> {
    const rows = await this.#prisma.client.findMany({
      where: { metadata: { path: ['token_endpoint_auth_method'], equals: 'none' } },
      select: { metadata: true },
    });
    const origins = new Set<string>();
    for (const { metadata } of rows) {
      const client = metadata as ClientMetadata;
      // The engine reads a missing application_type as web.
      if ((client.application_type ?? 'web') !== 'web' || !Array.isArray(client.redirect_uris)) continue;
      for (const uri of client.redirect_uris) {
        const origin = typeof uri === 'string' ? originOf(uri) : undefined;
        if (origin) origins.add(origin);
      }
    }
    return origins;
  }

  async #load(clientId: string): Promise<ClientMetadata | undefined> {
    const row = await this.#prisma.client.findUnique({ where: { id: clientId } });
    return row ? (row.metadata as ClientMetadata) : undefined;
  }
}

/** A client's metadata with when it was registered and last changed (its version). */
export interface ClientRecord {
  metadata: ClientMetadata;
  createdAt: Date;
  updatedAt: Date;
}

/** After a secret rotation, the secret before it, accepted until the epoch second in its sibling (metadata). */
export const PREVIOUS_CLIENT_SECRET = 'previous_client_secret';
export const PREVIOUS_CLIENT_SECRET_EXPIRES_AT = 'previous_client_secret_expires_at';

/**
 * What only an administrator may give a client: none of it comes through registration (RFC 7591), and an update
 * with the registration access token (RFC 7592) keeps it as it is.
 */
const ADMINISTERED_METADATA = ['first_party', 'require_second_factor', REFRESH_TOKEN_GRACE_PERIOD, 'api_scopes', 'default_resource', 'resource_server', PREVIOUS_CLIENT_SECRET, PREVIOUS_CLIENT_SECRET_EXPIRES_AT];
/** Of those, what an application is never shown (forRegistrant), so never has to send back. */
const HIDDEN_FROM_REGISTRANTS = [PREVIOUS_CLIENT_SECRET, PREVIOUS_CLIENT_SECRET_EXPIRES_AT];

/**
 * Gatehouse's rules for clients that register themselves, beyond the engine's: every client's text (textProblem),
 * settings only an administrator gives (an update, given the client as `stored`, may send back those it was shown,
 * unchanged), redirect and logout URIs as for every client of its kind (the rules of Gatehouse's other doors), and
 * a back-channel logout URI that Gatehouse's server may call: https on a public host (public-hosts.ts), or the
 * registration would make Gatehouse call into its own network.
 */
export function registrationProblem(metadata: ClientMetadata, stored?: ClientMetadata): string | undefined {
  const textual = textProblem(metadata);
  if (textual) return textual;
  const administered = ADMINISTERED_METADATA.filter((key) => metadata[key] !== undefined
    && (!stored || HIDDEN_FROM_REGISTRANTS.includes(key) || !isDeepStrictEqual(metadata[key], stored[key])));
  if (administered.length) return `${administered.join(', ')}: only an administrator sets ${administered.length === 1 ? 'this' : 'these'}`;
  const kind = serviceShapeProblem(metadata);
  if (kind) return kind;
  const backChannel = metadata.backchannel_logout_uri;
  try {
    const type = clientTypeOf(metadata);
    checkRedirects(type, { redirect_uris: stringsIn(metadata.redirect_uris), post_logout_redirect_uris: stringsIn(metadata.post_logout_redirect_uris) });
    checkLogoutUris(type, { back: stringOrUndefined(backChannel), front: stringOrUndefined(metadata.frontchannel_logout_uri) });
  } catch (error) {
    return (error as Error).message;
  }
  if (backChannel !== undefined) {
    const url = typeof backChannel === 'string' ? URL.parse(backChannel) : null;
    const problem = url?.protocol === 'https:' ? publicHostProblem(url.hostname) : 'not https';
    if (problem) return `backchannel_logout_uri must be https on a public host: ${problem}`;
  }
  return undefined;
}

/**
 * A client that acts for itself (client_credentials) as Gatehouse's other doors make one: it proves who it is
 * (RFC 6749 §4.4: the grant is for confidential clients; without, anyone knowing its id would get its tokens), and
 * signs nobody in (a sign-in is another client's: its kind, consent and second factor are a person's matters).
 */
function serviceShapeProblem(metadata: ClientMetadata): string | undefined {
  const grantTypes = stringsIn(metadata.grant_types);
  if (!grantTypes.includes('client_credentials')) return undefined;
  if (metadata.token_endpoint_auth_method === 'none') return 'grant_types: client_credentials is for a client that authenticates, not token_endpoint_auth_method none';
  const signsIn = grantTypes.filter((grantType) => grantType !== 'client_credentials');
  if (signsIn.length || stringsIn(metadata.redirect_uris).length || stringsIn(metadata.response_types).length) {
    return 'grant_types: a client with client_credentials signs nobody in: no other grant type, redirect_uris or response_types (register another client for sign-ins)';
  }
  return undefined;
}

/** A name people can read (src/text.ts) and, anywhere in the metadata, nothing the database cannot keep. */
function textProblem(metadata: ClientMetadata): string | undefined {
  const name = metadata.client_name;
  const problem = typeof name === 'string' ? nameProblem(name) : undefined;
  if (problem) return `client_name ${describeNameProblem(problem)}`;
  const holding = [...new Set(pathsToUnstorableText(metadata).map(([field]) => String(field)))];
  return holding.length ? `${holding.join(', ')}: ${UNSTORABLE_TEXT}` : undefined;
}

/** The administrator's settings of a stored client, for an update with the registration access token to keep. */
function administeredIn(stored: ClientMetadata): Record<string, unknown> {
  return Object.fromEntries(ADMINISTERED_METADATA.filter((key) => stored[key] !== undefined).map((key) => [key, stored[key]]));
}

/**
 * Whether a client registered itself (RFC 7591): the engine's registration endpoint alone stamps client_id_issued_at,
 * which an update (RFC 7592) keeps and may not send; Gatehouse's own doors (CLI, admin API) never set it.
 */
export function registeredItself(metadata: Readonly<Record<string, unknown>>): boolean {
  return metadata.client_id_issued_at !== undefined;
}

/**
 * A client's metadata as the application that registered it reads it (RFC 7592): with its current secret, which is
 * its own, but without the one before a rotation, which an administrator keeps working for a while.
 */
export function forRegistrant(metadata: ClientMetadata): ClientMetadata {
  const shown = { ...metadata };
  for (const key of HIDDEN_FROM_REGISTRANTS) delete shown[key];
  return shown;
}

function stringsIn(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : [];
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** Which of the kinds a registered client is, read from its metadata. */
export function clientTypeOf(metadata: ClientMetadata): ClientType {
  if (Array.isArray(metadata.grant_types) && metadata.grant_types.includes('client_credentials')) return 'service';
  if (metadata.application_type === 'native') return 'native';
  return metadata.token_endpoint_auth_method === 'none' ? 'spa' : 'web';
}

/** A client's metadata as an administrator may see it again: without its secret, shown once at creation. */
export function withoutSecret({ client_secret: _secret, [PREVIOUS_CLIENT_SECRET]: _previous, ...shown }: ClientMetadata): ClientMetadata {
  return shown;
}

/**
 * The metadata of an application's logout URIs, once its type allows them: Gatehouse's server calls the
 * back-channel URI, so only a web app (with a server) takes one; the browser loads the front-channel URI, so a
 * web app or a single-page app. Each asks for the session id (sid), which every logout names. The URIs
 * themselves are checked with the rest (src/oidc/provider.ts: https, or http on loopback).
 */
function logoutMetadata(type: ClientType, uris: { back?: string | undefined; front?: string | undefined }): Record<string, unknown> {
  checkLogoutUris(type, uris);
  return {
    ...(uris.back ? { backchannel_logout_uri: uris.back, backchannel_logout_session_required: true } : {}),
    ...(uris.front ? { frontchannel_logout_uri: uris.front, frontchannel_logout_session_required: true } : {}),
  };
}

/** The logout URIs a client of its type may take (see logoutMetadata): every door to clients applies the same rule. */
function checkLogoutUris(type: ClientType, uris: { back?: string | undefined; front?: string | undefined }): void {
  if (uris.back && type !== 'web') throw new ClientError(`a ${type} client has no server for Gatehouse to call: only a web client takes a back-channel logout URI`);
  if (uris.front && type !== 'web' && type !== 'spa') throw new ClientError(`a ${type} client is not signed out in a browser frame: only web and spa clients take a front-channel logout URI`);
}

/** Each API setting of a client and the metadata that holds it. */
const API_SETTINGS = [['apiScopes', 'api_scopes'], ['defaultApi', 'default_resource'], ['resourceServer', 'resource_server']] as const;

/** What a client may ask of APIs, as metadata (checked against the registered APIs when validated: runtime.ts). */
function apiMetadata(input: { apiScopes?: string[] | undefined; defaultApi?: string | undefined; resourceServer?: string | undefined }): Record<string, unknown> {
  const scopes = [...new Set(input.apiScopes ?? [])];
  return {
    ...(scopes.length ? { api_scopes: scopes.join(' ') } : {}),
    ...(input.defaultApi ? { default_resource: input.defaultApi } : {}),
    ...(input.resourceServer ? { resource_server: input.resourceServer } : {}),
  };
}

/** The metadata without the API settings that name what `withdrawal` took away (see dropWithdrawnApiSettings). */
function withoutWithdrawnApiSettings(metadata: ClientMetadata, withdrawal: ApiWithdrawal): ClientMetadata {
  const kept = { ...metadata };
  const undefinedScopes = new Set(withdrawal.undefinedScopes);
  const scopes = typeof metadata.api_scopes === 'string' ? metadata.api_scopes.split(' ').filter(Boolean) : [];
  const scopesKept = scopes.filter((scope) => !undefinedScopes.has(scope));
  if (scopesKept.length < scopes.length) {
    delete kept.api_scopes;
    Object.assign(kept, apiMetadata({ apiScopes: scopesKept }));
  }
  if (withdrawal.deleted && kept.resource_server === withdrawal.api) delete kept.resource_server;
  const stillUsable = !withdrawal.deleted && withdrawal.scopes.some((scope) => scopesKept.includes(scope));
  if (kept.default_resource === withdrawal.api && !stillUsable) delete kept.default_resource;
  return kept;
}

/** The metadata without the logout URIs about to be replaced (or removed). */
function withoutLogoutUris(metadata: ClientMetadata, replaced: { back: boolean; front: boolean }): ClientMetadata {
  const kept = { ...metadata };
  if (replaced.back) {
    delete kept.backchannel_logout_uri;
    delete kept.backchannel_logout_session_required;
  }
  if (replaced.front) {
    delete kept.frontchannel_logout_uri;
    delete kept.frontchannel_logout_session_required;
  }
  return kept;
}

const NO_REFRESH_TOKENS = 'a service client gets no refresh tokens: it has no refresh-token grace period';

function gracePeriodMetadata(seconds: number | undefined): ClientMetadata | Record<string, never> {
  if (!seconds) return {};
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > LONGEST_REFRESH_TOKEN_GRACE_PERIOD) {
    throw new ClientError(`a refresh-token grace period is whole seconds, at most ${LONGEST_REFRESH_TOKEN_GRACE_PERIOD}`);
  }
  return { [REFRESH_TOKEN_GRACE_PERIOD]: seconds } as unknown as ClientMetadata;
}

function metadataFor(input: NewClient): ClientMetadata {
  const name = input.name.trim();
  if (!name) throw new ClientError('a client needs a name');
  const redirectUris = input.redirectUris ?? [];
  const postLogoutRedirectUris = input.postLogoutRedirectUris ?? [];
  const common = {
    client_id: newClientId(),
    client_name: name,
    ...(input.scope ? { scope: input.scope } : {}),
    ...(input.requireSecondFactor ? { require_second_factor: true } : {}),
    ...(input.firstParty ? { first_party: true } : {}),
    ...gracePeriodMetadata(input.refreshTokenGracePeriod),
    ...logoutMetadata(input.type, { back: input.backchannelLogoutUri, front: input.frontchannelLogoutUri }),
    ...apiMetadata(input),
  };
  if (input.resourceServer && input.type !== 'service') throw new ClientError('only a service client can be an API\'s resource server');
  if (input.type === 'service') {
    if (redirectUris.length || postLogoutRedirectUris.length) {
      throw new ClientError('a service client signs nobody in: it takes no redirect URIs');
    }
    if (input.requireSecondFactor) throw new ClientError('a service client signs nobody in: it cannot require a second factor');
    if (input.firstParty) throw new ClientError('a service client signs nobody in: there is no consent to skip');
    if (input.refreshTokenGracePeriod) throw new ClientError(NO_REFRESH_TOKENS);
    return {
      ...common,
      client_secret: newSecret(),
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    };
  }
  if (!redirectUris.length) throw new ClientError(`a ${input.type} client needs at least one redirect URI`);
  checkRedirects(input.type, { redirect_uris: redirectUris, post_logout_redirect_uris: postLogoutRedirectUris });
  if (input.tokenEndpointAuthMethod && input.type !== 'web') throw new ClientError(`a ${input.type} client has no secret to present: only a web client takes a token endpoint auth method`);
  const browserFlow = {
    ...common,
    application_type: input.type === 'native' ? 'native' : 'web',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
  };
  // A browser or a device holds no secret: PKCE (required of every client) protects its code instead.
  return input.type === 'spa' || input.type === 'native'
    ? { ...browserFlow, token_endpoint_auth_method: 'none' }
    : { ...browserFlow, token_endpoint_auth_method: input.tokenEndpointAuthMethod ?? 'client_secret_basic', client_secret: newSecret() };
}

/**
 * What RFC 8252 allows a native app to receive redirects at, checked before the engine's own rules: a
 * private-use scheme named after a domain the app's publisher owns, reversed (com.example.app:/callback,
 * §7.1); a claimed https URI (§7.2); or the loopback interface by IP literal, any port (§7.3) — never
 * `localhost`, which a machine may resolve elsewhere (§8.3).
 */
export function nativeRedirectProblem(uri: string): string | undefined {
  const parsed = URL.parse(uri);
  if (!parsed) return 'not a URI';
  if (parsed.hash) return 'a redirect URI cannot have a fragment';
  if (parsed.protocol === 'https:') return parsed.hostname === 'localhost' ? 'use the loopback IP, http://127.0.0.1 or http://[::1], not localhost' : undefined;
  if (parsed.protocol === 'http:') {
    return parsed.hostname === '127.0.0.1' || parsed.hostname === '[::1]'
      ? undefined
      : 'a native app receives http redirects on the loopback IP only: http://127.0.0.1/… or http://[::1]/… (any port), never localhost';
  }
  const scheme = parsed.protocol.slice(0, -1);
  return scheme.includes('.') ? undefined : 'a private-use scheme is a reversed domain name the app\'s publisher owns, like com.example.app:/callback';
}

/**
 * A browser or web app's redirect URIs are https (a code sent over plain http can be read on the way), or http on
 * the loopback interface while it is developed; a native app's follow RFC 8252.
 */
function checkRedirects(type: ClientType, uris: Record<'redirect_uris' | 'post_logout_redirect_uris', readonly string[]>): void {
  for (const [field, list] of Object.entries(uris)) {
    for (const uri of list) {
      // Each refusal names its field first: the engine answers one about redirect_uris as invalid_redirect_uri (RFC 7591 §3.2.2).
      if (type === 'native') {
        const problem = nativeRedirectProblem(uri);
        if (problem) throw new ClientError(`${field}: ${uri}: ${problem}`);
      } else {
        const problem = secureUriProblem(uri);
        if (problem) throw new ClientError(`${field}: ${uri} ${problem}`);
      }
    }
  }
}

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A client id: hex, 128 bits (base64url could begin with '-', which a command line takes for an option). */
export function newClientId(): string {
  return randomBytes(16).toString('hex');
}

/** A client secret: 256 random bits. */
export const newClientSecret = newSecret;
