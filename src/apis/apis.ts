// APIs (resource servers) that accept Gatehouse's access tokens: each is named by its resource indicator
// (RFC 8707), which becomes the tokens' audience, and says which scopes it defines, in which format its tokens
// come (a JWT it checks with the JWKS, or an opaque token it introspects), how long they last and how they
// are signed. Kept in PostgreSQL; read by the engine at every token request that names one.
import { isUniqueViolation, type Prisma } from '../db/index.ts';
import type { Prisma as PrismaTypes } from '../db/generated/client.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';
import { secureUriProblem } from '../urls.ts';
import { describeNameProblem, nameProblem } from '../text.ts';
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from '../keys/secrets.ts';
import type { AnnouncedCache } from '../store/announced-cache.ts';

export type AccessTokenFormat = 'jwt' | 'opaque';
export const ACCESS_TOKEN_FORMATS: readonly AccessTokenFormat[] = ['jwt', 'opaque'];


/** A scope the API defines, and how the consent page words it ("Read your orders"). */
export interface ApiScope {
  name: string;
  description?: string | undefined;
}

export interface Api {
  identifier: string;
  name: string;
  scopes: ApiScope[];
  accessTokenFormat: AccessTokenFormat;
  /** Seconds an access token for it lasts. */
  accessTokenTtl: number;
  signingAlg: SigningAlgorithm;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewApi {
  identifier: string;
  name: string;
  scopes: ApiScope[];
  /** Default 'jwt'. */
  accessTokenFormat?: AccessTokenFormat | undefined;
  /** Default: the access-token lifetime of the configuration. */
  accessTokenTtl?: number | undefined;
  /** Default 'ES256'. */
  signingAlg?: SigningAlgorithm | undefined;
}

/** What may change: what is given replaces what was (scopes as a whole); the identifier never changes. */
export type ApiChanges = Partial<Omit<NewApi, 'identifier'>>;

export class ApiError extends Error {
  override name = 'ApiError';
}

/** The API changed since the version a change was made to. */
export class ApiChangedMeanwhile extends ApiError {
  override name = 'ApiChangedMeanwhile';

  constructor() {
    super('the API changed meanwhile: read it again');
  }
}

/**
 * Scope names that already mean something here: the OpenID scopes about the person, and `roles`. An API's own
 * scopes are named apart from them (Auth0 and Logto suggest `read:orders` or `orders:read`).
 */
const RESERVED_SCOPES: ReadonlySet<string> = new Set(['openid', 'profile', 'email', 'offline_access', 'roles', 'address', 'phone']);
/**
 * Scopes named so are Gatehouse's admin API's alone: a client allowed a scope may ask for it at every API that
 * defines it, so another API defining admin:write would let its clients call the admin API.
 */
const ADMIN_SCOPE_PREFIX = 'admin:';
/** The longest scope name an API may define. */
export const SCOPE_MAX_LENGTH = 128;
/** RFC 6749 §3.3: a scope token is printable ASCII without space, `"` or `\`. */
export const SCOPE_TOKEN = new RegExp(`^[\\x21\\x23-\\x5b\\x5d-\\x7e]{1,${SCOPE_MAX_LENGTH}}$`);
const MIN_TTL_SECONDS = 60;
/** An API's tokens last at most a day (revocation lists keep a revoked grant that long: src/oidc/jwt-access-tokens.ts). */
export const MAX_ACCESS_TOKEN_TTL_SECONDS = 24 * 3600;

export interface ApiServiceOptions {
  /** Lifetime of an API's tokens unless it says otherwise (ACCESS_TOKEN_TTL). */
  defaultTtlSeconds: number;
  /** The algorithms Gatehouse's signing keys can sign with: an API may use only these. */
  signingAlgorithms: ReadonlySet<string>;
  /** An API Gatehouse itself serves (its admin API): never deleted, its scopes never changed. */
  builtIn?: string | undefined;
  /** Production: identifiers are https, never http on the loopback interface. */
  httpsOnly?: boolean | undefined;
  /** Recently read APIs (every token request naming one reads it), told of every change here. */
  cache: AnnouncedCache<Api>;
  /** The registered clients, whose settings may name an API or its scopes (src/clients/clients.ts). */
  clients: ApiSettingsHolders;
}

/** What an API change took away, that clients' settings may name. */
export interface ApiWithdrawal {
  /** The API changed or deleted (its identifier). */
  api: string;
  deleted: boolean;
  /** Its scopes now (none once deleted). */
  scopes: readonly string[];
  /** The scopes it no longer defines that no other registered API defines either. */
  undefinedScopes: readonly string[];
}

/** Those who must let go of what an API change took away: every client keeps settings its doors would accept. */
export interface ApiSettingsHolders {
  dropWithdrawnApiSettings(withdrawal: ApiWithdrawal, actor: AuditActor): Promise<void>;
}

/** The store channel on which "API <identifier> changed" is announced. */
export const API_CHANGES_CHANNEL = 'apis:changed';

export class ApiService {
  readonly #prisma: Prisma;
  readonly #audit: AuditTrail;
  readonly #options: ApiServiceOptions;

  constructor(prisma: Prisma, audit: AuditTrail, options: ApiServiceOptions) {
    this.#prisma = prisma;
    this.#audit = audit;
    this.#options = options;
  }

  /** Registers an API; `actor` says who asked (an administrator by default), for the audit trail. */
  async create(input: NewApi, actor: AuditActor = { type: 'admin' }): Promise<Api> {
    // Gatehouse's own is its issuer's URL, which development may serve on any http host.
    const builtIn = input.identifier === this.#options.builtIn;
    const identifier = builtIn ? input.identifier : checkIdentifier(input.identifier, this.#options.httpsOnly ?? false);
    const fields = this.#checked({ ...input, accessTokenFormat: input.accessTokenFormat ?? 'jwt', signingAlg: input.signingAlg ?? 'ES256' }, builtIn);
    if (!fields.name) throw new ApiError('an API needs a name');
    const taken = () => new ApiError(`an API is registered as ${identifier} already`);
    if (await this.stored(identifier)) throw taken();
    const scopes = fields.scopes ?? [];
    // Another administrator may register it between the check and the insert: the unique key decides.
    const row = await this.#prisma.api.create({
      data: {
        ...fields, identifier, name: fields.name, scopes: scopes as unknown as object[],
        accessTokenTtl: fields.accessTokenTtl ?? Math.min(this.#options.defaultTtlSeconds, MAX_ACCESS_TOKEN_TTL_SECONDS),
      },
    }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? taken() : error;
    });
    // A request may have found it missing a moment ago, here or on another instance.
    await this.#options.cache.changed(identifier);
    await this.#audit.record({ action: 'api.created', outcome: 'success', actor, detail: { identifier, scopes: scopes.map((scope) => scope.name).join(' ') } });
    return toApi(row);
  }

  /** Changes an API; undefined when no API has that identifier. */
  /** `unchangedSince`: the version (updatedAt) it was read at; ApiChangedMeanwhile when it moved on since. */
  async update(identifier: string, changes: ApiChanges, actor: AuditActor = { type: 'admin' }, unchangedSince?: Date): Promise<Api | undefined> {
    // Its callers are checked by its scopes, in JWTs (src/web/admin/authentication.ts).
    if (identifier === this.#options.builtIn && (changes.scopes || changes.accessTokenFormat)) {
      throw new ApiError(`${identifier} is Gatehouse's own admin API: its scopes and token format cannot be changed`);
    }
    const before = await this.stored(identifier);
    if (!before) return undefined;
    const fields = this.#checked(changes, false, before);
    const [row] = await this.#prisma.api.updateManyAndReturn({
      where: { identifier, ...(unchangedSince ? { updatedAt: unchangedSince } : {}) },
      data: { ...fields, ...(fields.scopes ? { scopes: fields.scopes as unknown as object[] } : {}) },
    });
    if (!row) throw new ApiChangedMeanwhile();
    // A scope the API no longer defines is permitted by no role: defined again later, it is granted to nobody unasked.
    // (Not in a transaction with the update: the embedded database's one connection is not held for it.)
    if (fields.scopes) {
      const dropped = { apiId: row.id, scope: { notIn: fields.scopes.map((scope) => scope.name) } };
      await this.#withdrawingPermissions(dropped, () => this.#prisma.rolePermission.deleteMany({ where: dropped }));
    }
    await this.#options.cache.changed(identifier);
    if (fields.scopes) await this.#withdrawn(before, fields.scopes, actor);
    await this.#audit.record({
      action: 'api.updated', outcome: 'success', actor,
      detail: { identifier, changed: Object.keys(changes).filter((key) => changes[key as keyof ApiChanges] !== undefined).join(' ') },
    });
    return toApi(row);
  }

  /** Removes an API: tokens for it are no longer issued (those issued stay valid until they expire). */
  async delete(identifier: string, actor: AuditActor = { type: 'admin' }): Promise<boolean> {
    if (identifier === this.#options.builtIn) throw new ApiError(`${identifier} is Gatehouse's own admin API: it cannot be deleted`);
    const before = await this.stored(identifier);
    if (!before) return false;
    // What roles permit at it goes with it (the database cascades).
    const { count } = await this.#withdrawingPermissions({ api: { identifier } }, () => this.#prisma.api.deleteMany({ where: { identifier } }));
    if (!count) return false;
    await this.#options.cache.changed(identifier);
    await this.#withdrawn(before, undefined, actor);
    await this.#audit.record({ action: 'api.deleted', outcome: 'success', actor, detail: { identifier } });
    return true;
  }

  /** Runs `withdraw`, which takes from roles the permissions `where` names: each role that held one is a new version. */
  async #withdrawingPermissions<Result>(where: PrismaTypes.RolePermissionWhereInput, withdraw: () => Promise<Result>): Promise<Result> {
    const holders = await this.#prisma.rolePermission.findMany({ where, select: { roleName: true }, distinct: ['roleName'] });
    const result = await withdraw();
    if (holders.length) await this.#prisma.role.updateMany({ where: { name: { in: holders.map((holder) => holder.roleName) } }, data: { updatedAt: new Date() } });
    return result;
  }

  /**
   * Tells the clients what a change to `before` took away: the API itself when deleted (`scopesNow` undefined), or the
   * scopes it no longer defines. After the change: a client changed from then on is checked against what is left.
   */
  async #withdrawn(before: Api, scopesNow: readonly ApiScope[] | undefined, actor: AuditActor): Promise<void> {
    const kept = new Set((scopesNow ?? []).map((scope) => scope.name));
    const dropped = before.scopes.map((scope) => scope.name).filter((name) => !kept.has(name));
    if (scopesNow && !dropped.length) return;
    const stillDefined = new Set((await this.list()).flatMap((api) => api.scopes.map((scope) => scope.name)));
    await this.#options.clients.dropWithdrawnApiSettings({
      api: before.identifier, deleted: !scopesNow, scopes: [...kept], undefinedScopes: dropped.filter((name) => !stillDefined.has(name)),
    }, actor);
  }

  /** An API as the protocol reads it (from memory when fresh; see AnnouncedCache). */
  find(identifier: string): Promise<Api | undefined> {
    if (identifier.includes(NUL)) return Promise.resolve(undefined);
    return this.#options.cache.read(identifier, () => this.stored(identifier));
  }

  /**
   * An API as the database holds it now, never from memory: what a change is checked against, and what a decision
   * that cannot wait for another instance's announcement reads.
   */
  async stored(identifier: string): Promise<Api | undefined> {
    // A resource parameter can hold anything; PostgreSQL's text cannot hold U+0000 (it refuses the query), so no API has it.
    if (identifier.includes(NUL)) return undefined;
    const row = await this.#prisma.api.findUnique({ where: { identifier } });
    return row ? toApi(row) : undefined;
  }

  /**
   * Why these client settings cannot be, or undefined: each API scope must be defined by a registered API, a
   * default API must be registered and have a scope the client may ask for, and a resource server's API must exist.
   */
  async clientSettingsProblem(settings: { apiScopes: readonly string[]; defaultApi: string | undefined; resourceServer: string | undefined }): Promise<string | undefined> {
    const all = await this.list();
    if (settings.resourceServer !== undefined && !all.some((api) => api.identifier === settings.resourceServer)) return `no API is registered as ${settings.resourceServer}`;
    const defined = new Set(all.flatMap((api) => api.scopes.map((scope) => scope.name)));
    const unknown = settings.apiScopes.filter((scope) => !defined.has(scope));
    if (unknown.length) return `no registered API defines the scope ${unknown.map((scope) => `"${scope}"`).join(', ')}`;
    if (settings.defaultApi === undefined) return undefined;
    const api = all.find((candidate) => candidate.identifier === settings.defaultApi);
    if (!api) return `no API is registered as ${settings.defaultApi}`;
    if (!api.scopes.some((scope) => settings.apiScopes.includes(scope.name))) return `the default API ${api.identifier} has none of the client's API scopes`;
    return undefined;
  }

  /** Every API, by identifier. */
  async list(): Promise<Api[]> {
    return (await this.#prisma.api.findMany({ orderBy: { identifier: 'asc' } })).map(toApi);
  }

  /** A page of APIs by identifier, after the one given, and whether more follow. */
  async page(page: { after?: string | undefined; limit: number }): Promise<{ apis: Api[]; more: boolean }> {
    const rows = await this.#prisma.api.findMany({ where: page.after ? { identifier: { gt: page.after } } : {}, orderBy: { identifier: 'asc' }, take: page.limit + 1 });
    return { apis: rows.slice(0, page.limit).map(toApi), more: rows.length > page.limit };
  }

  /** The longest any API's access tokens live, in seconds (0 without APIs). */
  async longestAccessTokenTtl(): Promise<number> {
    return (await this.#prisma.api.aggregate({ _max: { accessTokenTtl: true } }))._max.accessTokenTtl ?? 0;
  }

  /** The fields given, checked; what is not given stays undefined. */
  #checked(fields: ApiChanges, builtIn: boolean, stored?: Api): ApiChanges {
    const name = fields.name?.trim();
    if (fields.name !== undefined && !name) throw new ApiError('an API needs a name');
    // Shown on consent pages, as a client's name is.
    const nameRefused = name ? nameProblem(name) : undefined;
    if (nameRefused) throw new ApiError(`an API's name ${describeNameProblem(nameRefused)}`);
    if (fields.accessTokenFormat !== undefined && !ACCESS_TOKEN_FORMATS.includes(fields.accessTokenFormat)) {
      throw new ApiError(`the access-token format is one of ${ACCESS_TOKEN_FORMATS.join(', ')}`);
    }
    if (fields.signingAlg !== undefined) {
      if (!SIGNING_ALGORITHMS.includes(fields.signingAlg)) throw new ApiError(`the signing algorithm is one of ${SIGNING_ALGORITHMS.join(', ')}`);
      if (!this.#options.signingAlgorithms.has(fields.signingAlg)) throw new ApiError(`no signing key can sign ${fields.signingAlg}: add one to JWKS first`);
    }
    const ttl = fields.accessTokenTtl;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < MIN_TTL_SECONDS || ttl > MAX_ACCESS_TOKEN_TTL_SECONDS)) {
      throw new ApiError(`an access token lasts from ${MIN_TTL_SECONDS} to ${MAX_ACCESS_TOKEN_TTL_SECONDS} seconds`);
    }
    return {
      ...(name ? { name } : {}),
      ...(fields.scopes ? { scopes: checkScopes(fields.scopes, builtIn, stored?.scopes ?? []) } : {}),
      ...(fields.accessTokenFormat ? { accessTokenFormat: fields.accessTokenFormat } : {}),
      ...(ttl !== undefined ? { accessTokenTtl: ttl } : {}),
      ...(fields.signingAlg ? { signingAlg: fields.signingAlg } : {}),
    };
  }
}

/** How the consent page words one of an API's scopes: the API's description, else the scope and the API by name. */
export function describeApiScope(api: Pick<Api, 'name' | 'scopes'>, scope: string): string {
  return api.scopes.find((candidate) => candidate.name === scope)?.description ?? `Use “${scope}” at ${api.name}`;
}

const NUL = '\u0000';
/** Characters the URL parser would quietly drop or encode: an identifier is compared as written with each resource parameter. */
// eslint-disable-next-line no-control-regex
const SPACE_OR_CONTROL = /[\u0000-\u0020\u007f-\u009f]/;

/** A resource indicator must be an absolute https URI without a fragment (RFC 8707 §2), or http on loopback in development. */
function checkIdentifier(identifier: string, httpsOnly: boolean): string {
  if (SPACE_OR_CONTROL.test(identifier)) throw new ApiError('an API identifier is a URI as clients send it: no spaces or control characters');
  if (httpsOnly && !identifier.startsWith('https://')) throw new ApiError('an API identifier must use https in production');
  const problem = secureUriProblem(identifier);
  if (problem) throw new ApiError(`an API identifier ${problem}`);
  return identifier;
}

/** `stored`: the scopes the API has now, whose descriptions stay as they are even if stored before today's limits. */
function checkScopes(scopes: readonly ApiScope[], builtIn: boolean, stored: readonly ApiScope[]): ApiScope[] {
  const seen = new Set<string>();
  return scopes.map(({ name, description }) => {
    if (name.length > SCOPE_MAX_LENGTH) throw new ApiError(`a scope's name can have at most ${SCOPE_MAX_LENGTH} characters`);
    if (!SCOPE_TOKEN.test(name)) throw new ApiError(`"${name}" cannot be a scope: letters, digits and punctuation, no spaces or quotes`);
    if (RESERVED_SCOPES.has(name)) throw new ApiError(`"${name}" is a scope about the person already: name the API's scopes apart (orders:read)`);
    if (!builtIn && name.startsWith(ADMIN_SCOPE_PREFIX)) throw new ApiError(`"${name}": scopes named ${ADMIN_SCOPE_PREFIX}… are Gatehouse's admin API's`);
    if (seen.has(name)) throw new ApiError(`the scope "${name}" is given twice`);
    seen.add(name);
    const text = description?.trim();
    const unchanged = text !== undefined && stored.some((scope) => scope.name === name && scope.description === text);
    const descriptionRefused = text && !unchanged ? nameProblem(text) : undefined;
    if (descriptionRefused) throw new ApiError(`the description of "${name}" ${describeNameProblem(descriptionRefused)}`);
    return text ? { name, description: text } : { name };
  });
}

function toApi(row: { identifier: string; name: string; scopes: unknown; accessTokenFormat: string; accessTokenTtl: number; signingAlg: string; createdAt: Date; updatedAt: Date }): Api {
  return {
    identifier: row.identifier,
    name: row.name,
    scopes: storedScopes(row.scopes),
    accessTokenFormat: row.accessTokenFormat as AccessTokenFormat,
    accessTokenTtl: row.accessTokenTtl,
    signingAlg: row.signingAlg as SigningAlgorithm,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

/** An API's scopes as stored (the apis.scopes JSON column). */
export function storedScopes(column: unknown): ApiScope[] {
  return Array.isArray(column) ? column as ApiScope[] : [];
}
