// Roles, and what each permits at APIs: a person is granted an API's scope only if one of their roles permits it
// (their role names are on their account, src/accounts/users.ts). The `admin` role exists from the start.
import { isUniqueViolation, type Prisma } from '../db/index.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';
import { storedScopes } from './apis.ts';
import { describeNameProblem, nameProblem } from '../text.ts';

export interface Role {
  name: string;
  description: string | undefined;
  /** What the role permits: scopes, by API identifier. */
  permissions: Array<{ api: string; scopes: string[] }>;
  createdAt: Date;
  /** Its version: when its description or what it permits last changed. */
  updatedAt: Date;
}

export class RoleError extends Error {
  override name = 'RoleError';
}

/** The role changed since the version a change was made to. */
export class RoleChangedMeanwhile extends RoleError {
  override name = 'RoleChangedMeanwhile';

  constructor() {
    super('the role changed meanwhile: read it again');
  }
}

/** Role names as stored in users.roles and listed in SECOND_FACTOR_REQUIRED_ROLES. */
export const ROLE_NAME = /^[\w.:-]{1,64}$/;
/** The administrators' role: it cannot be deleted (the second-factor rule and the admin API rely on it). */
export const ADMIN_ROLE = 'admin';

export class RoleService {
  readonly #prisma: Prisma;
  readonly #audit: AuditTrail;

  constructor(prisma: Prisma, audit: AuditTrail) {
    this.#prisma = prisma;
    this.#audit = audit;
  }

  async create(name: string, description: string | undefined, actor: AuditActor = { type: 'admin' }): Promise<Role> {
    if (!ROLE_NAME.test(name)) throw new RoleError('a role name has letters, digits and . _ : - (at most 64)');
    const taken = () => new RoleError(`the role ${name} exists already`);
    if (await this.exists(name)) throw taken();
    // Another administrator may make it between the check and the insert: the unique key decides.
    await this.#prisma.role.create({ data: { name, description: descriptionOf(description) } }).catch((error: unknown) => {
      throw isUniqueViolation(error) ? taken() : error;
    });
    await this.#audit.record({ action: 'role.created', outcome: 'success', actor, detail: { role: name } });
    return (await this.find(name))!;
  }

  /**
   * Changes a role's description (null removes it); its name, which people's accounts hold, never changes. Undefined
   * when there is no such role. `unchangedSince`: the version (updatedAt) it was read at; RoleChangedMeanwhile when it
   * moved on since.
   */
  async update(name: string, changes: { description: string | null }, actor: AuditActor = { type: 'admin' }, unchangedSince?: Date): Promise<Role | undefined> {
    if (!await this.exists(name)) return undefined;
    const { count } = await this.#prisma.role.updateMany({
      where: { name, ...(unchangedSince ? { updatedAt: unchangedSince } : {}) }, data: { description: descriptionOf(changes.description) },
    });
    if (!count) throw new RoleChangedMeanwhile();
    await this.#audit.record({ action: 'role.updated', outcome: 'success', actor, detail: { role: name, changed: 'description' } });
    return this.find(name);
  }

  /**
   * Removes a role and what it permits and, in the same transaction, takes it from the people who have it
   * (`takeFromPeople`, which says how many did: their accounts are src/accounts/'s), so that no name of a deleted
   * role is left to list, claim or give back to a role made again with it. The `admin` role stays. How many
   * people lost it, or undefined when there was no such role.
   */
  async delete(name: string, takeFromPeople: (transaction: Transaction) => Promise<number>, actor: AuditActor = { type: 'admin' }): Promise<{ people: number } | undefined> {
    if (name === ADMIN_ROLE) throw new RoleError('the admin role cannot be deleted');
    const people = await this.#prisma.$transaction(async (transaction) => {
      const { count } = await transaction.role.deleteMany({ where: { name } });
      return count ? takeFromPeople(transaction) : undefined;
    });
    if (people === undefined) return undefined;
    await this.#audit.record({ action: 'role.deleted', outcome: 'success', actor, detail: { role: name, people } });
    return { people };
  }

  async exists(name: string): Promise<boolean> {
    return ROLE_NAME.test(name) && await this.#prisma.role.count({ where: { name } }) > 0;
  }

  async find(name: string): Promise<Role | undefined> {
    if (!ROLE_NAME.test(name)) return undefined;
    const row = await this.#prisma.role.findUnique({ where: { name }, include: { permissions: { include: { api: true } } } });
    return row ? toRole(row) : undefined;
  }

  async list(): Promise<Role[]> {
    const rows = await this.#prisma.role.findMany({ orderBy: { name: 'asc' }, include: { permissions: { include: { api: true } } } });
    return rows.map(toRole);
  }

  /** Lets the role's people be granted these scopes of the API (each must be one the API defines). */
  async grant(name: string, apiIdentifier: string, scopes: readonly string[], actor: AuditActor = { type: 'admin' }): Promise<Role> {
    const { apiId } = await this.#checked(name, apiIdentifier, scopes);
    await this.#prisma.rolePermission.createMany({ data: scopes.map((scope) => ({ roleName: name, apiId, scope })), skipDuplicates: true });
    await this.#changed(name);
    await this.#audit.record({ action: 'role.granted', outcome: 'success', actor, detail: { role: name, api: apiIdentifier, scopes: scopes.join(' ') } });
    return (await this.find(name))!;
  }

  /** Takes these scopes of the API back from the role. */
  async revoke(name: string, apiIdentifier: string, scopes: readonly string[], actor: AuditActor = { type: 'admin' }): Promise<Role> {
    const { apiId } = await this.#checked(name, apiIdentifier, scopes);
    await this.#prisma.rolePermission.deleteMany({ where: { roleName: name, apiId, scope: { in: [...scopes] } } });
    await this.#changed(name);
    await this.#audit.record({ action: 'role.revoked', outcome: 'success', actor, detail: { role: name, api: apiIdentifier, scopes: scopes.join(' ') } });
    return (await this.find(name))!;
  }

  /** The API's scopes that any of these roles permits. */
  async permittedScopes(roleNames: readonly string[], apiIdentifier: string): Promise<Set<string>> {
    if (!roleNames.length) return new Set();
    const rows = await this.#prisma.rolePermission.findMany({ where: { roleName: { in: [...roleNames] }, api: { identifier: apiIdentifier } }, select: { scope: true } });
    return new Set(rows.map((row) => row.scope));
  }

  /** A new version of the role: what it permits changed. */
  async #changed(name: string): Promise<void> {
    await this.#prisma.role.updateMany({ where: { name }, data: { updatedAt: new Date() } });
  }

  async #checked(name: string, apiIdentifier: string, scopes: readonly string[]): Promise<{ apiId: string }> {
    if (!await this.exists(name)) throw new RoleError(`no role ${name}`);
    const api = await this.#prisma.api.findUnique({ where: { identifier: apiIdentifier } });
    if (!api) throw new RoleError(`no API ${apiIdentifier}`);
    const defined = new Set(storedScopes(api.scopes).map((scope) => scope.name));
    const unknown = scopes.filter((scope) => !defined.has(scope));
    if (!scopes.length) throw new RoleError('name at least one scope');
    if (unknown.length) throw new RoleError(`${apiIdentifier} defines no scope ${unknown.map((scope) => `"${scope}"`).join(', ')}`);
    return { apiId: api.id };
  }
}

type Transaction = Parameters<Parameters<Prisma['$transaction']>[0]>[0];

function descriptionOf(description: string | null | undefined): string | null {
  const text = description?.trim();
  const problem = text ? nameProblem(text) : undefined;
  if (problem) throw new RoleError(`a role's description ${describeNameProblem(problem)}`);
  return text || null;
}

function toRole(row: { name: string; description: string | null; createdAt: Date; updatedAt: Date; permissions: Array<{ scope: string; api: { identifier: string } }> }): Role {
  const byApi = new Map<string, string[]>();
  for (const permission of row.permissions) byApi.set(permission.api.identifier, [...byApi.get(permission.api.identifier) ?? [], permission.scope]);
  return {
    name: row.name,
    description: row.description ?? undefined,
    permissions: [...byApi].sort(([a], [b]) => a.localeCompare(b)).map(([api, scopes]) => ({ api, scopes: scopes.sort() })),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}
