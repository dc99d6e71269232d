// Single-use secrets sent by email (verify an address, reset a password, confirm a new address, put back the
// previous one): the raw token travels only in the link; the account_tokens table keeps its SHA-256 hash,
// the address it was sent to, when it was issued, its expiry and when it was used.
//
// API (the same calls for every purpose):
//   issue(userId, purpose, email, ttlSeconds) → the raw token to put in the link. Earlier links of the same
//       user and purpose stop working (only the newest link sent is ever valid).
//   issueUnlessPending(...) → the same, or undefined while a link of that user and purpose still works (it
//       stays the one that works).
//   redeem(rawToken, purpose) → { ok: true, userId, email, issuedAt, expiresAt } exactly once, atomically (two
//       concurrent redeems cannot both succeed), or { ok: false, reason: 'unknown' | 'used' | 'expired' }.
//   peek(rawToken, purpose) → the same answer without using the token (to show a form before redeeming).
//   revoke(userId, purpose) → no link of that user and purpose works any more (a pending change cancelled).
//   The reason is for logs and tests; a page may say "this link is invalid or has expired" for all of them.
//   The email in the answer is the address the link was sent to: check that it is still the account's own
//   (or, for a change of email, still free) before acting on it.
import { createHash, randomBytes } from 'node:crypto';
import { isUniqueViolation, type Prisma } from '../db/index.ts';

export type AccountTokenPurpose = 'verify_email' | 'reset_password' | 'change_email' | 'restore_email';

export type AccountTokenFailure = 'unknown' | 'used' | 'expired';

export type AccountTokenCheck =
  | { ok: true; userId: string; email: string; issuedAt: Date; expiresAt: Date }
  /** A used link still says whose it was, and the address it was sent to. */
  | { ok: false; reason: 'used'; userId: string; email: string }
  | { ok: false; reason: Exclude<AccountTokenFailure, 'used'> };

const TOKEN_BYTES = 32;
// 32 bytes in base64url without padding: anything else was never issued and is not looked up.
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** The stored form of a token. Unsalted is enough: the token is 256 random bits, not a guessable secret. */
export function hashAccountToken(rawToken: string): string {
  return createHash('sha256').update(rawToken).digest('hex');
}

export class AccountTokens {
  readonly #prisma: Prisma;

  constructor(prisma: Prisma) {
    this.#prisma = prisma;
  }

  async issue(userId: string, purpose: AccountTokenPurpose, email: string, ttlSeconds: number): Promise<string> {
    const rawToken = randomBytes(TOKEN_BYTES).toString('base64url');
    const expiresAt = new Date(Date.now() + ttlSeconds * 1000);
    // The row of this user and purpose is replaced (used or not): the newest link is the only one that
    // works. One statement on a unique (user, purpose): two links issued at once cannot both stay.
    const link = { email, tokenHash: hashAccountToken(rawToken), expiresAt };
    await this.#prisma.accountToken.upsert({
      where: { userId_purpose: { userId, purpose } },
      create: { userId, purpose, ...link },
      update: { ...link, usedAt: null, createdAt: new Date() },
      select: { id: true },
    });
    return rawToken;
  }

  async issueUnlessPending(userId: string, purpose: AccountTokenPurpose, email: string, ttlSeconds: number): Promise<string | undefined> {
    const rawToken = randomBytes(TOKEN_BYTES).toString('base64url');
    const now = new Date();
    const link = { email, tokenHash: hashAccountToken(rawToken), expiresAt: new Date(now.getTime() + ttlSeconds * 1000), usedAt: null, createdAt: now };
    // A row that no longer works is replaced; a live one stays (the update matches nothing and the insert
    // meets the unique (user, purpose)).
    const replaced = await this.#prisma.accountToken.updateMany({
      where: { userId, purpose, OR: [{ usedAt: { not: null } }, { expiresAt: { lte: now } }] },
      data: link,
    });
    if (replaced.count === 1) return rawToken;
    try {
      await this.#prisma.accountToken.create({ data: { userId, purpose, ...link }, select: { id: true } });
      return rawToken;
    } catch (error) {
      if (isUniqueViolation(error)) return undefined;
      throw error;
    }
  }

  async redeem(rawToken: string, purpose: AccountTokenPurpose): Promise<AccountTokenCheck> {
    if (!TOKEN_SHAPE.test(rawToken)) return { ok: false, reason: 'unknown' };
    const tokenHash = hashAccountToken(rawToken);
    const now = new Date();
    // One conditional UPDATE ... RETURNING: of two concurrent redeems, exactly one gets the row.
    const [used] = await this.#prisma.accountToken.updateManyAndReturn({
      where: { tokenHash, purpose, usedAt: null, expiresAt: { gt: now } },
      data: { usedAt: now },
      select: { userId: true, email: true, createdAt: true, expiresAt: true },
    });
    if (used) return { ok: true, userId: used.userId, email: used.email, issuedAt: used.createdAt, expiresAt: used.expiresAt };
    return this.#failure(tokenHash, purpose);
  }

  async peek(rawToken: string, purpose: AccountTokenPurpose): Promise<AccountTokenCheck> {
    if (!TOKEN_SHAPE.test(rawToken)) return { ok: false, reason: 'unknown' };
    const row = await this.#prisma.accountToken.findUnique({
      where: { tokenHash: hashAccountToken(rawToken) },
      select: { userId: true, email: true, createdAt: true, expiresAt: true, usedAt: true, purpose: true },
    });
    if (!row || row.purpose !== purpose) return { ok: false, reason: 'unknown' };
    if (row.usedAt) return { ok: false, reason: 'used', userId: row.userId, email: row.email };
    if (row.expiresAt.getTime() <= Date.now()) return { ok: false, reason: 'expired' };
    return { ok: true, userId: row.userId, email: row.email, issuedAt: row.createdAt, expiresAt: row.expiresAt };
  }

  async revoke(userId: string, purpose: AccountTokenPurpose): Promise<void> {
    await this.#prisma.accountToken.deleteMany({ where: { userId, purpose } });
  }

  async #failure(tokenHash: string, purpose: AccountTokenPurpose): Promise<AccountTokenCheck> {
    const row = await this.#prisma.accountToken.findUnique({ where: { tokenHash }, select: { usedAt: true, purpose: true, userId: true, email: true } });
    if (!row || row.purpose !== purpose) return { ok: false, reason: 'unknown' };
    return row.usedAt ? { ok: false, reason: 'used', userId: row.userId, email: row.email } : { ok: false, reason: 'expired' };
  }
}
