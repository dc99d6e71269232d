// The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step of clock drift either way) with a
// sealed secret, single-use codes (a code is accepted only for a time step after the last accepted one),
// and ten single-use recovery codes stored as SHA-256 hashes. Enrollment, login checks, disabling.
import { createHash, randomBytes } from 'node:crypto';
import { generateSecret, generateURI, verify } from 'otplib';
import { z } from 'zod';
import type { Prisma } from '../db/index.ts';
import { SealedValueError, type Sealer } from '../keys/sealed.ts';
// A change of the second factor is a change of credentials: sign-ins paused between their steps go stale.
import { NEW_SECURITY_VERSION } from './users.ts';

export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
export const RECOVERY_CODE_COUNT = 10;
/** One step either way: a phone's clock a little off, or a code typed just as it changed. */
const DRIFT_SECONDS = TOTP_PERIOD_SECONDS;

export interface SecondFactorStatus {
  enabled: boolean;
  enabledAt: Date | null;
  /** Unused recovery codes (0 when the second factor is off). */
  recoveryCodesLeft: number;
}

/** What an authenticator app needs: the otpauth:// URI (for the QR code) and the base32 secret (to type in). */
export interface Enrollment {
  secret: string;
  uri: string;
}

/** What login needs to know about an account before asking for a second factor. */
export interface LoginRequirement {
  enabled: boolean;
  /** The account has a role listed in SECOND_FACTOR_REQUIRED_ROLES. */
  requiredByRole: boolean;
}

export type SecondFactorMethod = 'totp' | 'recovery_code';

/**
 * Why a code was refused: `wrong` (no match, or not a code at all), `used` (the code, or a later one, was
 * already accepted), `not_enabled` (the account has no second factor to check, or no enrollment to confirm).
 */
export type CodeFailure = 'wrong' | 'used' | 'not_enabled';

/** Which code an accepted check took (for the audit trail), and the recovery codes still unused after it. */
export interface CodeProof {
  method: SecondFactorMethod;
  recoveryCodesLeft: number;
}

export type CodeCheck =
  | ({ ok: true } & CodeProof)
  | { ok: false; reason: CodeFailure };

/** `securityVersion`: the account's, after the change (a sign-in that enrolled goes on with it). */
export type NewRecoveryCodes =
  | { ok: true; recoveryCodes: string[]; securityVersion: number }
  | { ok: false; reason: CodeFailure };

/** New recovery codes, and the code that was given for them. */
export type RegeneratedRecoveryCodes =
  | { ok: true; recoveryCodes: string[]; proof: CodeProof }
  | { ok: false; reason: CodeFailure };

export type Disabling = { ok: true; proof: CodeProof } | { ok: false; reason: CodeFailure };

/**
 * The account's sealed secret does not open with any configured key (its key was removed from
 * ENCRYPTION_KEYS, or the value was damaged): its codes cannot be checked until an operator acts. The
 * message names the account and the cause, never the secret.
 */
export class SecondFactorUnreadable extends Error {
  override name = 'SecondFactorUnreadable';
  readonly accountId: string;

  constructor(accountId: string, cause: SealedValueError) {
    super(`the two-factor secret of account ${accountId} cannot be opened: ${cause.message}`, { cause });
    this.accountId = accountId;
  }
}

export interface SecondFactorOptions {
  /** Shown by authenticator apps next to the account (the issuer's host name). */
  issuerName: string;
  /** Roles that must use a second factor. */
  requiredRoles: readonly string[];
}

/** What the account holds once its second factor is forgotten. */
const NO_SECOND_FACTOR = { totpSecret: null, totpEnabledAt: null, totpLastStep: null } as const;

function versionCondition(securityVersion: number | undefined): { securityVersion?: number } {
  return securityVersion === undefined ? {} : { securityVersion };
}

export class SecondFactorService {
  readonly #prisma: Prisma;
  readonly #sealer: Sealer;
  readonly #options: SecondFactorOptions;

  constructor(prisma: Prisma, sealer: Sealer, options: SecondFactorOptions) {
    this.#prisma = prisma;
    this.#sealer = sealer;
    this.#options = options;
  }

  async status(userId: string): Promise<SecondFactorStatus> {
    if (!isUuid(userId)) return { enabled: false, enabledAt: null, recoveryCodesLeft: 0 };
    const user = await this.#prisma.user.findUnique({
      where: { id: userId },
      select: { totpEnabledAt: true, _count: { select: { recoveryCodes: { where: { usedAt: null } } } } },
    });
    const enabledAt = user?.totpEnabledAt ?? null;
    return { enabled: enabledAt !== null, enabledAt, recoveryCodesLeft: enabledAt ? user!._count.recoveryCodes : 0 };
  }

  async loginRequirement(userId: string): Promise<LoginRequirement> {
    if (!isUuid(userId)) return { enabled: false, requiredByRole: false };
    const user = await this.#prisma.user.findUnique({ where: { id: userId }, select: { totpEnabledAt: true, roles: true } });
    return {
      enabled: Boolean(user?.totpEnabledAt),
      requiredByRole: (user?.roles ?? []).some((role) => this.#options.requiredRoles.includes(role)),
    };
  }

  /**
   * Starts (or restarts) enrollment: a new secret, sealed and stored, not yet asked at login. Undefined
   * when the account has no such user or already has a second factor (turn it off first).
   */
  async startEnrollment(userId: string): Promise<Enrollment | undefined> {
    if (!isUuid(userId)) return undefined;
    const secret = generateSecret();
    const sealed = await this.#sealer.seal(secret, sealContext(userId));
    const [user] = await this.#prisma.user.updateManyAndReturn({
      where: { id: userId, totpEnabledAt: null },
      data: { totpSecret: sealed, totpLastStep: null },
      select: { email: true },
    });
    return user ? { secret, uri: this.#uri(user.email, secret) } : undefined;
  }

  /** The enrollment started and not yet confirmed (to show the same QR code again), or undefined. */
  async pendingEnrollment(userId: string): Promise<Enrollment | undefined> {
    if (!isUuid(userId)) return undefined;
    const user = await this.#prisma.user.findUnique({ where: { id: userId }, select: { email: true, totpSecret: true, totpEnabledAt: true } });
    if (!user?.totpSecret || user.totpEnabledAt) return undefined;
    const { plaintext: secret } = await this.#openSecret(user.totpSecret, userId);
    return { secret, uri: this.#uri(user.email, secret) };
  }

  /**
   * Confirms enrollment with a code from the app: from now on login asks for one. Returns the ten
   * recovery codes, in clear this once (only their hashes are kept). `whileSecurityVersion`: only if the
   * account's credentials have not changed since (a sign-in enrolling, bound to the version it began with);
   * otherwise `not_enabled`, and nothing changes.
   */
  async confirmEnrollment(userId: string, code: string, options: { whileSecurityVersion?: number } = {}): Promise<NewRecoveryCodes> {
    if (!isUuid(userId)) return { ok: false, reason: 'not_enabled' };
    const user = await this.#prisma.user.findUnique({ where: { id: userId }, select: { totpSecret: true, totpEnabledAt: true, totpLastStep: true } });
    if (!user?.totpSecret || user.totpEnabledAt) return { ok: false, reason: 'not_enabled' };
    const matched = await this.#matchStep(user.totpSecret, userId, code, user.totpLastStep);
    if (!matched.ok) return matched;
    const recoveryCodes = newRecoveryCodes();
    let securityVersion: number | undefined;
    const confirmed = await this.#inTransaction(async (transaction) => {
      // Only the secret that was checked, only if nobody confirmed it meanwhile, and only while the
      // credentials are those the caller's sign-in began with.
      const [updated] = await transaction.user.updateManyAndReturn({
        where: { id: userId, totpSecret: user.totpSecret, totpEnabledAt: null, ...versionCondition(options.whileSecurityVersion) },
        data: { totpEnabledAt: new Date(), totpLastStep: matched.step, ...resealedSecret(matched), ...NEW_SECURITY_VERSION },
        select: { securityVersion: true },
      });
      if (!updated) return false;
      securityVersion = updated.securityVersion;
      await transaction.recoveryCode.deleteMany({ where: { userId } });
      await transaction.recoveryCode.createMany({ data: recoveryCodeRows(userId, recoveryCodes) });
      return true;
    });
    if (confirmed) return { ok: true, recoveryCodes, securityVersion: securityVersion! };
    // Refused for a change of credentials, not for the code: nothing to confirm any more.
    if (options.whileSecurityVersion !== undefined && !await this.#prisma.user.count({ where: { id: userId, securityVersion: options.whileSecurityVersion } })) {
      return { ok: false, reason: 'not_enabled' };
    }
    return { ok: false, reason: 'used' };
  }

  /** Checks an authenticator code for an account with the second factor on; each code is accepted once. */
  async verifyCode(userId: string, code: string): Promise<CodeCheck> {
    if (!isUuid(userId)) return { ok: false, reason: 'not_enabled' };
    const user = await this.#prisma.user.findUnique({ where: { id: userId }, select: { totpSecret: true, totpEnabledAt: true, totpLastStep: true } });
    if (!user?.totpSecret || !user.totpEnabledAt) return { ok: false, reason: 'not_enabled' };
    const matched = await this.#matchStep(user.totpSecret, userId, code, user.totpLastStep);
    if (!matched.ok) return matched;
    // Conditional on the step: of two requests with one code (or two codes of one window), one wins.
    // Conditional on the secret too, so a re-sealed copy never replaces a secret changed meanwhile.
    const { count } = await this.#prisma.user.updateMany({
      where: {
        id: userId, totpSecret: user.totpSecret, totpEnabledAt: { not: null },
        OR: [{ totpLastStep: null }, { totpLastStep: { lt: matched.step } }],
      },
      data: { totpLastStep: matched.step, ...resealedSecret(matched) },
    });
    if (count !== 1) return { ok: false, reason: 'used' };
    return { ok: true, method: 'totp', recoveryCodesLeft: await this.#recoveryCodesLeft(userId) };
  }

  /** Uses a recovery code (case, dashes and spaces do not matter): accepted once, atomically. */
  async useRecoveryCode(userId: string, input: string): Promise<CodeCheck> {
    if (!isUuid(userId)) return { ok: false, reason: 'not_enabled' };
    const code = normalizeRecoveryCode(input);
    if (!code) return { ok: false, reason: 'wrong' };
    const { count } = await this.#prisma.recoveryCode.updateMany({
      where: { userId, codeHash: hashRecoveryCode(code), usedAt: null, user: { totpEnabledAt: { not: null } } },
      data: { usedAt: new Date() },
    });
    if (count === 1) return { ok: true, method: 'recovery_code', recoveryCodesLeft: await this.#recoveryCodesLeft(userId) };
    const known = await this.#prisma.recoveryCode.findFirst({ where: { userId, codeHash: hashRecoveryCode(code) }, select: { usedAt: true } });
    return { ok: false, reason: known?.usedAt ? 'used' : 'wrong' };
  }

  /** A 6-digit authenticator code or a recovery code, told apart by their shapes. */
  verifyAny(userId: string, input: string): Promise<CodeCheck> {
    return looksLikeTotpCode(input) ? this.verifyCode(userId, input) : this.useRecoveryCode(userId, input);
  }

  /** Replaces every recovery code with ten new ones; asks a code (authenticator or recovery) first. */
  async regenerateRecoveryCodes(userId: string, code: string): Promise<RegeneratedRecoveryCodes> {
    const checked = await this.verifyAny(userId, code);
    if (!checked.ok) return checked;
    const proof = { method: checked.method, recoveryCodesLeft: checked.recoveryCodesLeft };
    const recoveryCodes = newRecoveryCodes();
    const replaced = await this.#inTransaction(async (transaction) => {
      const { count } = await transaction.user.updateMany({ where: { id: userId, totpEnabledAt: { not: null } }, data: NEW_SECURITY_VERSION });
      if (count !== 1) return false;
      await transaction.recoveryCode.deleteMany({ where: { userId } });
      await transaction.recoveryCode.createMany({ data: recoveryCodeRows(userId, recoveryCodes) });
      return true;
    });
    return replaced ? { ok: true, recoveryCodes, proof } : { ok: false, reason: 'not_enabled' };
  }

  /**
   * Turns the second factor off: asks a code (authenticator or recovery), then forgets the secret and every
   * recovery code. The caller asks the current password first (src/accounts/flows/reauthentication.ts).
   */
  async disable(userId: string, code: string): Promise<Disabling> {
    if (!(await this.status(userId)).enabled) return { ok: false, reason: 'not_enabled' };
    const checked = await this.verifyAny(userId, code);
    if (!checked.ok) return checked;
    await this.#prisma.$transaction([
      this.#prisma.recoveryCode.deleteMany({ where: { userId } }),
      this.#prisma.user.update({ where: { id: userId }, data: { ...NO_SECOND_FACTOR, ...NEW_SECURITY_VERSION }, select: { id: true } }),
    ]);
    return { ok: true, proof: { method: checked.method, recoveryCodesLeft: checked.recoveryCodesLeft } };
  }

  /**
   * Forgets the secret (enrolled or pending) and every recovery code, asking nothing: for a recovery that
   * proved the person owns the address, when someone else may have enrolled before it was verified.
   * Whether there was anything to forget.
   */
  async removeForAccountRecovery(userId: string): Promise<boolean> {
    if (!isUuid(userId)) return false;
    const [codes, user] = await this.#prisma.$transaction([
      this.#prisma.recoveryCode.deleteMany({ where: { userId } }),
      this.#prisma.user.updateMany({ where: { id: userId, totpSecret: { not: null } }, data: { ...NO_SECOND_FACTOR, ...NEW_SECURITY_VERSION } }),
    ]);
    return codes.count > 0 || user.count > 0;
  }

  /**
   * Forgets the second factor (as removeForAccountRecovery) when it was set up, or is being set up, at or
   * after `since`: for an account taken over then, whose taker may have enrolled one to keep the owner out.
   * One enabled before stays. Whether there was anything to forget.
   */
  async removeIfEnrolledSince(userId: string, since: Date): Promise<boolean> {
    if (!isUuid(userId)) return false;
    const user = await this.#prisma.user.findUnique({ where: { id: userId }, select: { totpSecret: true, totpEnabledAt: true } });
    if (!user?.totpSecret || (user.totpEnabledAt && user.totpEnabledAt < since)) return false;
    return this.removeForAccountRecovery(userId);
  }

  /**
   * The time step a code matches (±1 step, after the last accepted one), or why it does not. A match
   * carries the secret re-sealed with the newest key when an older one sealed it, for the caller to store.
   */
  async #matchStep(sealedSecret: string, userId: string, input: string, lastStep: number | null): Promise<StepMatch | { ok: false; reason: CodeFailure }> {
    const token = input.replace(/[\s-]/g, '');
    if (!new RegExp(`^\\d{${TOTP_DIGITS}}$`).test(token)) return { ok: false, reason: 'wrong' };
    const { plaintext: secret, resealed } = await this.#openSecret(sealedSecret, userId);
    const epoch = Math.floor(Date.now() / 1000);
    const options = { secret, token, epoch, epochTolerance: DRIFT_SECONDS, period: TOTP_PERIOD_SECONDS, digits: TOTP_DIGITS, algorithm: 'sha1' } as const;
    const newestStep = Math.floor((epoch + DRIFT_SECONDS) / TOTP_PERIOD_SECONDS);
    // otplib refuses an afterTimeStep beyond its window; nothing after such a step is in the window anyway.
    if (lastStep === null || lastStep < newestStep) {
      const fresh = await verify({ ...options, ...(lastStep === null ? {} : { afterTimeStep: lastStep }) });
      // The TOTP strategy's answer carries the matched step (the HOTP one, in the same union, does not).
      if (fresh.valid && 'timeStep' in fresh) return { ok: true, step: fresh.timeStep, resealed };
    }
    if (lastStep === null) return { ok: false, reason: 'wrong' };
    // Told apart only to say "already used, wait for the next code"; guessing gains nothing from it.
    const any = await verify(options);
    return { ok: false, reason: any.valid ? 'used' : 'wrong' };
  }

  async #openSecret(sealedSecret: string, userId: string): Promise<{ plaintext: string; resealed: string | undefined }> {
    try {
      return await this.#sealer.openAndReseal(sealedSecret, sealContext(userId));
    } catch (error) {
      if (error instanceof SealedValueError) throw new SecondFactorUnreadable(userId, error);
      throw error;
    }
  }

  #recoveryCodesLeft(userId: string): Promise<number> {
    return this.#prisma.recoveryCode.count({ where: { userId, usedAt: null } });
  }

  #uri(email: string, secret: string): string {
    return generateURI({
      issuer: this.#options.issuerName, label: email, secret,
      algorithm: 'sha1', digits: TOTP_DIGITS, period: TOTP_PERIOD_SECONDS,
    });
  }

  /** Runs work in one transaction; `false` from it rolls everything back. */
  async #inTransaction(work: (transaction: TransactionClient) => Promise<boolean>): Promise<boolean> {
    try {
      return await this.#prisma.$transaction(async (transaction) => {
        if (!await work(transaction)) throw ROLLBACK;
        return true;
      });
    } catch (error) {
      if (error === ROLLBACK) return false;
      throw error;
    }
  }
}

type TransactionClient = Parameters<Parameters<Prisma['$transaction']>[0]>[0];

interface StepMatch {
  ok: true;
  step: number;
  /** The secret sealed with the newest key, when an older key sealed the stored one. */
  resealed: string | undefined;
}

/** The column update that stores a re-sealed secret (nothing when it was sealed with the newest key already). */
function resealedSecret(matched: StepMatch): { totpSecret?: string } {
  return matched.resealed ? { totpSecret: matched.resealed } : {};
}

const ROLLBACK = new Error('rolled back on purpose');

/** The sealed secret names its account: copied into another row, it does not open. */
function sealContext(userId: string): string {
  return `totp:${userId}`;
}

/** Six digits (spaces allowed, as apps show "123 456"). */
export function looksLikeTotpCode(input: string): boolean {
  return new RegExp(`^\\d{${TOTP_DIGITS}}$`).test(input.replace(/\s/g, ''));
}

const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const RECOVERY_CODE_LENGTH = 16;

/** 16 base32 characters = 80 random bits, shown as xxxx-xxxx-xxxx-xxxx. */
function newRecoveryCodes(): string[] {
  return Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const bytes = randomBytes(RECOVERY_CODE_LENGTH);
    // 256 is a multiple of 32: every character is equally likely.
    const characters = Array.from(bytes, (byte) => BASE32_ALPHABET[byte % 32]).join('');
    return characters.match(/.{4}/g)!.join('-');
  });
}

function recoveryCodeRows(userId: string, recoveryCodes: readonly string[]): Array<{ userId: string; codeHash: string }> {
  return recoveryCodes.map((recoveryCode) => ({ userId, codeHash: hashRecoveryCode(normalizeRecoveryCode(recoveryCode)!) }));
}

/** The canonical form of a typed recovery code (lower case, no dashes or spaces), or undefined when it cannot be one. */
export function normalizeRecoveryCode(input: string): string | undefined {
  const code = input.replace(/[\s-]/g, '').toLowerCase();
  return new RegExp(`^[${BASE32_ALPHABET}]{${RECOVERY_CODE_LENGTH}}$`).test(code) ? code : undefined;
}

/** Unsalted SHA-256 is enough: a recovery code is 80 random bits, not a guessable secret. */
export function hashRecoveryCode(normalizedCode: string): string {
  return createHash('sha256').update(normalizedCode).digest('hex');
}

function isUuid(value: string): boolean {
  return z.uuid().safeParse(value).success;
}
