// People who sign in: creation, authentication with a generic failure, and the OIDC claims they release.
import { domainToASCII } from 'node:url';
import { z } from 'zod';
import type { PasswordHasher } from './passwords.ts';
import { MAXIMUM_PASSWORD_LENGTH, checkPassword, type PasswordPolicyOptions, type PasswordProblem } from './password-policy.ts';
import { isUniqueViolation, literally, type Prisma } from '../db/index.ts';
import { describeNameProblem, nameProblem } from '../text.ts';
import type { AnnouncedCache } from '../store/announced-cache.ts';

export type CredentialCheck =
  | { ok: true; user: User }
  | { ok: false; reason: 'unknown_email' | 'wrong_password' | 'account_disabled'; accountId?: string };

export interface User {
  id: string;
  email: string;
  emailVerified: boolean;
  name: string | null;
  disabled: boolean;
  /** Changes whenever the account's credentials do (see schema.prisma): what a paused sign-in is bound to. */
  securityVersion: number;
  /** Role names (src/apis/roles.ts): what the person may be granted at APIs; admin asks for a second factor. */
  roles: string[];
}

/**
 * What issuing and checking a person's tokens reads of them, on nearly every token request (findForTokens): whether
 * they may use tokens, their claims and their roles. Never what a sign-in is checked against (securityVersion).
 */
export type TokenHolder = Pick<User, 'id' | 'email' | 'emailVerified' | 'name' | 'disabled' | 'roles'>;

/** The store channel on which "account <id> changed" is announced (the message is the account id, or * for all). */
export const ACCOUNT_CHANGES_CHANNEL = 'accounts:changed';

/** An account as an administrator sees it: what the person sees, and its history. */
export interface AccountRecord extends User {
  secondFactorEnabled: boolean;
  createdAt: Date;
  updatedAt: Date;
}

/** Which accounts to list: each given filter narrows (email and name: contained, case aside). */
export interface AccountFilter {
  email?: string | undefined;
  name?: string | undefined;
  role?: string | undefined;
  disabled?: boolean | undefined;
}

/** The accounts a filter keeps, as a query: each filter narrows. */
function accountsMatching(filter: AccountFilter) {
  return {
    ...(filter.email ? { email: { contains: literally(normalizeEmail(filter.email)) } } : {}),
    ...(filter.name ? { name: { contains: literally(filter.name), mode: 'insensitive' as const } } : {}),
    ...(filter.role ? { roles: { has: filter.role } } : {}),
    ...(filter.disabled !== undefined ? { disabled: filter.disabled } : {}),
  };
}

/** Where a page of accounts starts: after this one (accounts are listed oldest first). */
export interface AccountCursor {
  createdAt: Date;
  id: string;
}

export class AccountError extends Error {
  override name = 'AccountError';
  readonly code: 'invalid_email' | 'invalid_name' | 'weak_password' | 'email_taken';

  constructor(code: AccountError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

/** Roles an account was to be given that do not exist (any more): nothing was written. */
export class UnknownRoles extends Error {
  override name = 'UnknownRoles';
  readonly roles: string[];

  constructor(roles: string[]) {
    super(`no such role: ${roles.join(', ')}`);
    this.roles = roles;
  }
}

// The length bounds also from here, for callers that already hold the account service (forms show them).
export { MINIMUM_PASSWORD_LENGTH, MAXIMUM_PASSWORD_LENGTH } from './password-policy.ts';

const emailSchema = z.email().max(320);

/** Refuses a name that is not one (AccountError 'invalid_name'). */
function checkName(name: string | null | undefined): void {
  const problem = name ? nameProblem(name) : undefined;
  if (problem) throw new AccountError('invalid_name', `a name ${describeNameProblem(problem)}`);
}

/** Whether a (normalized) string is an email address Gatehouse accepts. */
export function isEmailAddress(email: string): boolean {
  return emailSchema.safeParse(email).success;
}

/** Octets a mailbox's local part may have (RFC 5321 §4.5.3.1.1): mail servers refuse a longer one, so its links would never come. */
const LOCAL_PART_MAX_OCTETS = 64;
/** Characters a whole address may have in a mail's envelope (RFC 5321's 256-octet path, less its angle brackets). */
const ADDRESS_MAX_LENGTH = 254;

/**
 * Whether a (normalized) address may be given to an account: one Gatehouse accepts, that mail can reach. Accounts
 * already holding a longer local part are still found by isEmailAddress (sign-in, reset requests).
 */
export function isNewEmailAddress(email: string): boolean {
  return isEmailAddress(email) && localPartFits(email) && email.length <= ADDRESS_MAX_LENGTH;
}

function localPartFits(email: string): boolean {
  return Buffer.byteLength(email.slice(0, email.lastIndexOf('@'))) <= LOCAL_PART_MAX_OCTETS;
}

/** Refuses an address an account may not be given (AccountError 'invalid_email'), saying why. */
function checkNewEmail(email: string): void {
  if (!isEmailAddress(email)) throw new AccountError('invalid_email', 'that is not an email address');
  if (!localPartFits(email)) throw new AccountError('invalid_email', `the part of an email address before the @ can have at most ${LOCAL_PART_MAX_OCTETS} characters`);
  if (email.length > ADDRESS_MAX_LENGTH) throw new AccountError('invalid_email', `an email address can have at most ${ADDRESS_MAX_LENGTH} characters`);
}

/**
 * Emails compare without regard to case or surrounding space, and a domain in Unicode as its ASCII (IDNA) form, the
 * one mail uses: some browsers send jürgen@bücher.example as typed, others as punycode, and both are one mailbox.
 */
export function normalizeEmail(email: string): string {
  const normalized = email.trim().toLowerCase();
  const at = normalized.lastIndexOf('@');
  const domain = normalized.slice(at + 1);
  if (at < 0 || /^[\x20-\x7e]*$/.test(domain)) return normalized;
  const ascii = domainToASCII(domain);
  return ascii ? `${normalized.slice(0, at)}@${ascii}` : normalized;
}

const publicFields = { id: true, email: true, emailVerified: true, name: true, disabled: true, securityVersion: true, roles: true } as const;
const tokenHolderFields = { id: true, email: true, emailVerified: true, name: true, disabled: true, roles: true } as const;

const uuidSchema = z.uuid();
const isUuid = (text: string) => uuidSchema.safeParse(text).success;

/** The update that makes every sign-in paused between its steps stale (see schema.prisma). */
export const NEW_SECURITY_VERSION = { securityVersion: { increment: 1 } } as const;

export class UserService {
  readonly #prisma: Prisma;
  readonly #passwords: PasswordHasher;
  readonly #passwordPolicy: Partial<PasswordPolicyOptions>;
  readonly #tokenHolders: AnnouncedCache<TokenHolder> | undefined;

  /**
   * `tokenHolders`: where findForTokens keeps what it read; every change of what it holds is announced through it,
   * here at once and to every instance sharing the store. Without it, findForTokens reads the database each time.
   */
  constructor(prisma: Prisma, passwords: PasswordHasher, options: { passwordPolicy?: Partial<PasswordPolicyOptions>; tokenHolders?: AnnouncedCache<TokenHolder> } = {}) {
    this.#prisma = prisma;
    this.#passwords = passwords;
    this.#passwordPolicy = options.passwordPolicy ?? {};
    this.#tokenHolders = options.tokenHolders;
  }

  /**
   * `roles`: role names (a role in SECOND_FACTOR_REQUIRED_ROLES makes the second factor mandatory), each of which
   * must exist (UnknownRoles otherwise, nothing written).
   */
  async create(input: { email: string; password: string; name?: string; emailVerified?: boolean; roles?: readonly string[] }): Promise<User> {
    const email = normalizeEmail(input.email);
    checkNewEmail(email);
    checkName(input.name);
    const problem = checkPassword(input.password, { email, name: input.name }, this.#passwordPolicy);
    if (problem) throw new AccountError('weak_password', problem.message);
    const passwordHash = await this.#passwords.hash(input.password);
    const roles = [...new Set(input.roles ?? [])];
    // A new id: nothing is kept of it anywhere (not even as unknown: nobody could name it before), nothing to announce.
    const write = (database: TransactionClient) => database.user.create({
      data: { email, passwordHash, name: input.name?.trim() || null, emailVerified: input.emailVerified ?? false, roles },
      select: publicFields,
    });
    try {
      return roles.length
        ? await this.#prisma.$transaction(async (transaction) => {
          await holdRoles(transaction, roles);
          return write(transaction);
        })
        : await write(this.#prisma);
    } catch (error) {
      if (isUniqueViolation(error)) throw new AccountError('email_taken', 'an account with that email exists');
      throw error;
    }
  }

  findById(id: string): Promise<User | null> {
    if (!isUuid(id)) return Promise.resolve(null);
    return this.#prisma.user.findUnique({ where: { id }, select: publicFields });
  }

  /**
   * The person as token requests read them (the engine's account, claims and permissions, introspection): from
   * memory when read in the last moments, for as long as every change is heard of (AnnouncedCache), else from
   * the database. Nothing a sign-in checks is read this way.
   */
  async findForTokens(id: string): Promise<TokenHolder | null> {
    if (!isUuid(id)) return null;
    const load = async () => (await this.#prisma.user.findUnique({ where: { id }, select: tokenHolderFields })) ?? undefined;
    return (await (this.#tokenHolders ? this.#tokenHolders.read(id, load) : load())) ?? null;
  }

  /** Whether findForTokens answers from memory now: its cache is on and listening for changes announced by other instances. */
  get cacheActive(): boolean {
    return this.#tokenHolders?.active ?? false;
  }

  /**
   * After a change to many accounts made in the caller's transaction (withoutRole), once it is committed: what
   * findForTokens holds of anyone is forgotten, here and on every instance.
   */
  async manyChanged(): Promise<void> {
    await this.#tokenHolders?.changedAll();
  }

  /**
   * Whether the email and password match an account that may sign in. Unknown email, wrong password and
   * disabled account take comparable time; the reason (and the account, when there is one) are for the
   * audit trail, never for the person at the form, who is told the same thing in each case.
   */
  async checkCredentials(emailInput: string, password: string): Promise<CredentialCheck> {
    const email = normalizeEmail(emailInput);
    // What cannot be an address is looked up nowhere (a NUL byte would even make PostgreSQL fail).
    const found = isEmailAddress(email)
      ? await this.#prisma.user.findUnique({ where: { email }, select: { ...publicFields, passwordHash: true } })
      : null;
    const passwordMatches = await this.#passwords.verify(found?.passwordHash, password.slice(0, MAXIMUM_PASSWORD_LENGTH * 4));
    if (!found) return { ok: false, reason: 'unknown_email' };
    if (!passwordMatches) return { ok: false, reason: 'wrong_password', accountId: found.id };
    if (found.disabled) return { ok: false, reason: 'account_disabled', accountId: found.id };
    const { passwordHash, ...user } = found;
    if (this.#passwords.needsRehash(passwordHash)) {
      await this.#prisma.user.update({ where: { id: user.id }, data: { passwordHash: await this.#passwords.hash(password) } });
    }
    return { ok: true, user };
  }

  /** The account registered with this address, whatever its state, or null. What cannot be an address is looked up nowhere. */
  findByEmail(emailInput: string): Promise<User | null> {
    const email = normalizeEmail(emailInput);
    if (!isEmailAddress(email)) return Promise.resolve(null);
    return this.#prisma.user.findUnique({ where: { email }, select: publicFields });
  }

  /**
   * Marks the address verified, only if it is still the account's address (a link sent to an old address
   * proves nothing about a new one) and the account is enabled. The account, or null when there is no such
   * account, the address changed or the account is disabled.
   */
  async markEmailVerified(userId: string, emailInput: string): Promise<User | null> {
    if (!isUuid(userId)) return null;
    const [user] = await this.#prisma.user.updateManyAndReturn({
      where: { id: userId, email: normalizeEmail(emailInput), disabled: false },
      data: { emailVerified: true },
      select: publicFields,
    });
    return user ? this.#changed(user) : null;
  }

  /** What the policy says about a new password for this person (their email and name included), or undefined. */
  passwordProblem(person: { email: string; name?: string | null }, password: string): PasswordProblem | undefined {
    return checkPassword(password, { email: person.email, name: person.name }, this.#passwordPolicy);
  }

  /** Whether the password is the account's current one. An unknown account costs the same hash's time and is false. */
  async verifyPassword(userId: string, password: string): Promise<boolean> {
    const found = isUuid(userId)
      ? await this.#prisma.user.findUnique({ where: { id: userId }, select: { passwordHash: true } })
      : null;
    return this.#passwords.verify(found?.passwordHash, password.slice(0, MAXIMUM_PASSWORD_LENGTH * 4));
  }

  /**
   * Replaces the password (policy applied, argon2id), or null when there is no such account. `confirmedEmail`:
   * an address an emailed link just proved the person reads; if it is still the account's, it becomes verified.
   */
  async setPassword(userId: string, newPassword: string, options: { confirmedEmail?: string } = {}): Promise<User | null> {
    const user = await this.findById(userId);
    if (!user) return null;
    const problem = this.passwordProblem(user, newPassword);
    if (problem) throw new AccountError('weak_password', problem.message);
    const passwordHash = await this.#passwords.hash(newPassword);
    const confirmed = options.confirmedEmail !== undefined && normalizeEmail(options.confirmedEmail) === user.email;
    return this.#changed(await this.#prisma.user.update({
      where: { id: userId },
      data: { passwordHash, ...NEW_SECURITY_VERSION, ...(confirmed ? { emailVerified: true } : {}) },
      select: publicFields,
    }));
  }

  /** Gives the account a new address, verified (the caller has proved the person reads it); null when there is no such account. */
  async changeEmail(userId: string, newEmailInput: string): Promise<User | null> {
    const email = normalizeEmail(newEmailInput);
    checkNewEmail(email);
    if (!await this.findById(userId)) return null;
    try {
      return await this.#changed(await this.#prisma.user.update({ where: { id: userId }, data: { email, emailVerified: true, ...NEW_SECURITY_VERSION }, select: publicFields }));
    } catch (error) {
      if (isUniqueViolation(error)) throw new AccountError('email_taken', 'an account with that email exists');
      throw error;
    }
  }

  /**
   * Makes every sign-in of the account that is paused between its steps stale (signing out everywhere does
   * this; a change of credentials does it by itself). False when there is no such account.
   */
  async endPausedSignIns(userId: string): Promise<boolean> {
    if (!isUuid(userId)) return false;
    const { count } = await this.#prisma.user.updateMany({ where: { id: userId }, data: NEW_SECURITY_VERSION });
    return count === 1;
  }

  /**
   * Gives the account a role, or takes it away; changed: false when it had it already (or did not). `keepHolderOf`:
   * taking that role away is refused ('last_holder', nothing changes) from its last enabled holder.
   */
  setRole(userId: string, role: string, held: boolean): Promise<{ user: User; changed: boolean } | null>;
  setRole(userId: string, role: string, held: boolean, guard: HolderGuard): Promise<{ user: User; changed: boolean } | 'last_holder' | null>;
  async setRole(userId: string, role: string, held: boolean, guard: HolderGuard = {}): Promise<{ user: User; changed: boolean } | 'last_holder' | null> {
    const user = await this.findById(userId);
    if (!user) return null;
    if (user.roles.includes(role) === held) return { user, changed: false };
    // One statement, so that two changes at once cannot lose each other's role. A role given is held (FOR KEY SHARE)
    // until the statement commits: one being deleted meanwhile waits, then takes its name from this account too, or
    // is gone already and the account is left without it (the caller sees it was not given).
    const change = (database: TransactionClient) => held
      ? database.$queryRaw<Array<{ id: string }>>`UPDATE users SET roles = array_append(roles, ${role}), updated_at = now() WHERE id = ${userId}::uuid AND NOT (${role} = ANY(roles)) AND EXISTS (SELECT 1 FROM roles WHERE name = ${role} FOR KEY SHARE) RETURNING id`
      : database.$queryRaw<Array<{ id: string }>>`UPDATE users SET roles = array_remove(roles, ${role}), updated_at = now() WHERE id = ${userId}::uuid RETURNING id`;
    const updated = !held && guard.keepHolderOf === role ? await this.#unlessLastHolder(userId, role, change) : await change(this.#prisma);
    if (updated === 'last_holder') return updated;
    if (updated[0] !== undefined) await this.#changed(user);
    return { user: (await this.findById(userId))!, changed: updated[0] !== undefined };
  }

  /**
   * Takes the role from everyone who holds it, in the caller's transaction (the role is being deleted); how many
   * did. Once the transaction is committed, the caller calls manyChanged().
   */
  withoutRole(role: string, transaction: TransactionClient): Promise<number> {
    return transaction.$executeRaw`UPDATE users SET roles = array_remove(roles, ${role}), updated_at = now() WHERE ${role} = ANY(roles)`;
  }

  /** An account as an administrator sees it; null when there is none. */
  async record(userId: string): Promise<AccountRecord | null> {
    if (!isUuid(userId)) return null;
    const row = await this.#prisma.user.findUnique({ where: { id: userId }, select: recordFields });
    return row ? toRecord(row) : null;
  }

  /** A page of accounts, oldest first, and whether more follow. */
  async search(filter: AccountFilter, page: { after?: AccountCursor | undefined; limit: number }): Promise<{ accounts: AccountRecord[]; more: boolean }> {
    const where = {
      ...accountsMatching(filter),
      ...(page.after ? { OR: [{ createdAt: { gt: page.after.createdAt } }, { createdAt: page.after.createdAt, id: { gt: page.after.id } }] } : {}),
    };
    const rows = await this.#prisma.user.findMany({ where, select: recordFields, orderBy: [{ createdAt: 'asc' }, { id: 'asc' }], take: page.limit + 1 });
    return { accounts: rows.slice(0, page.limit).map(toRecord), more: rows.length > page.limit };
  }

  /** How many accounts the filter keeps (as search() lists them). */
  async count(filter: AccountFilter): Promise<number> {
    return this.#prisma.user.count({ where: accountsMatching(filter) });
  }

  /**
   * Changes the name or whether the address counts as verified, unless the account changed since `unchangedSince`
   * (its updatedAt as the caller read it): 'stale' then; null when there is no such account.
   */
  async updateProfile(userId: string, changes: { name?: string | null | undefined; emailVerified?: boolean | undefined }, unchangedSince?: Date): Promise<AccountRecord | 'stale' | null> {
    if (!isUuid(userId)) return null;
    checkName(changes.name);
    const [row] = await this.#prisma.user.updateManyAndReturn({
      where: { id: userId, ...(unchangedSince ? { updatedAt: unchangedSince } : {}) },
      data: { ...(changes.name !== undefined ? { name: changes.name?.trim() || null } : {}), ...(changes.emailVerified !== undefined ? { emailVerified: changes.emailVerified } : {}) },
      select: recordFields,
    });
    if (row) return toRecord(await this.#changed(row));
    return await this.record(userId) ? 'stale' : null;
  }

  /** Removes the account and what hangs on it in the database (links, codes, consents); false when there was none. */
  async delete(userId: string): Promise<boolean> {
    if (!isUuid(userId)) return false;
    const { count } = await this.#prisma.user.deleteMany({ where: { id: userId } });
    if (count > 0) await this.#changed({ id: userId });
    return count > 0;
  }

  /**
   * Disables or enables the account; the account as it is now, or null when there is none. `changed` is false
   * when it already was that way. Disabling also makes its paused sign-ins stale; its sessions and grants are
   * the caller's to end (src/accounts/flows/account-administration.ts). `keepHolderOf`: disabling that role's
   * last enabled holder is refused ('last_holder', nothing changes).
   */
  setDisabled(userId: string, disabled: boolean): Promise<{ user: User; changed: boolean } | null>;
  setDisabled(userId: string, disabled: boolean, guard: HolderGuard): Promise<{ user: User; changed: boolean } | 'last_holder' | null>;
  async setDisabled(userId: string, disabled: boolean, guard: HolderGuard = {}): Promise<{ user: User; changed: boolean } | 'last_holder' | null> {
    if (!isUuid(userId)) return null;
    const change = (database: TransactionClient) => database.user.updateManyAndReturn({
      where: { id: userId, disabled: !disabled },
      data: { disabled, ...NEW_SECURITY_VERSION },
      select: publicFields,
    });
    const updated = disabled && guard.keepHolderOf ? await this.#unlessLastHolder(userId, guard.keepHolderOf, change) : await change(this.#prisma);
    if (updated === 'last_holder') return updated;
    const [user] = updated;
    if (user) return { user: await this.#changed(user), changed: true };
    const unchanged = await this.findById(userId);
    return unchanged ? { user: unchanged, changed: false } : null;
  }

  /** A change of the account was committed: what findForTokens holds of it is forgotten (see the constructor). */
  async #changed<Changed extends { id: string }>(account: Changed): Promise<Changed> {
    await this.#tokenHolders?.changed(account.id);
    return account;
  }

  /**
   * Runs `change` unless the account is the last enabled holder of the role: 'last_holder' then. The holders stay
   * locked until `change` is committed with them, each time in the same order, so two such changes at once (two
   * administrators disabling each other) cannot both pass: the second waits for the first, then finds one holder.
   */
  async #unlessLastHolder<T>(userId: string, role: string, change: (transaction: TransactionClient) => Promise<T>): Promise<T | 'last_holder'> {
    return this.#prisma.$transaction(async (transaction) => {
      const holders = await transaction.$queryRaw<Array<{ id: string }>>`SELECT id::text FROM users WHERE ${role} = ANY(roles) AND NOT disabled ORDER BY id FOR UPDATE`;
      if (holders.length === 1 && holders[0]!.id === userId) return 'last_holder' as const;
      return change(transaction);
    });
  }
}

/** A change refused when it would leave this role with no enabled holder (the last administrator stays one). */
export interface HolderGuard {
  keepHolderOf?: string | undefined;
}

type TransactionClient = Parameters<Parameters<Prisma['$transaction']>[0]>[0];

/**
 * Holds the roles until the transaction ends, so that one being deleted meanwhile waits, then takes its name from
 * what the transaction wrote (src/apis/roles.ts deletes a role and its holders' copies in one transaction).
 * UnknownRoles for those that do not exist.
 */
async function holdRoles(transaction: TransactionClient, roles: readonly string[]): Promise<void> {
  const found = new Set((await transaction.$queryRaw<Array<{ name: string }>>`SELECT name FROM roles WHERE name = ANY(${roles}) FOR KEY SHARE`).map((row) => row.name));
  const missing = roles.filter((role) => !found.has(role));
  if (missing.length) throw new UnknownRoles(missing);
}

const recordFields = { ...publicFields, totpEnabledAt: true, createdAt: true, updatedAt: true } as const;

function toRecord({ totpEnabledAt, ...row }: User & { totpEnabledAt: Date | null; createdAt: Date; updatedAt: Date }): AccountRecord {
  return { ...row, secondFactorEnabled: totpEnabledAt !== null };
}

/** The standard claims a user releases, before oidc-provider filters them by granted scope (roles: the `roles` scope). */
export function standardClaims(user: TokenHolder): { sub: string; [claim: string]: unknown } {
  return {
    sub: user.id,
    email: user.email,
    email_verified: user.emailVerified,
    ...(user.name ? { name: user.name } : {}),
    roles: [...user.roles],
  };
}
