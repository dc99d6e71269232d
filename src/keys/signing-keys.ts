// Signing keys kept in PostgreSQL, their private halves sealed with ENCRYPTION_KEYS, shared by every instance.
// A rotation is staged so that nothing a relying party or an API has cached stops working: the new key is
// published at once and signs only after a delay longer than any JWKS cache; the key it replaces stops signing
// then, and stays published until every token it signed has expired. Each algorithm has its own key, rotated
// together. Which key does what is a matter of the time, so every instance reaches the same answer on its own.
import { randomUUID } from 'node:crypto';
import type { JWK } from 'jose';
import type { Prisma } from '../db/index.ts';
import { SealedValueError, type Sealer } from './sealed.ts';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';
import { KeyError, SIGNING_ALGORITHMS, algorithmOf, generateSigningKey, publicPartOf, type PrivateJwks, type SigningAlgorithm } from './secrets.ts';

/**
 * `next`: published, signing from `signsFrom`; `signing`: signs its algorithm's tokens; `retired`: signs no more,
 * published until `expiresAt` for the tokens it signed; `expired`: gone from the JWKS.
 */
export type SigningKeyState = 'next' | 'signing' | 'retired' | 'expired';

export interface SigningKey {
  kid: string;
  alg: string;
  createdAt: Date;
  signsFrom: Date;
  retiresAt: Date | undefined;
  expiresAt: Date | undefined;
}

/** A key with its private half, as the engine needs it. */
export interface UnsealedSigningKey extends SigningKey {
  privateJwk: JWK;
}

export class KeyRotationError extends Error {
  override name = 'KeyRotationError';
}

export interface SigningKeyOptions {
  /** Seconds from publishing a new key to its signing. */
  rotationDelaySeconds: number;
  /** The longest a token signed now can live (ID tokens, JWT access tokens): how long a retired key stays published. */
  longestTokenLifetimeSeconds(): Promise<number>;
  /**
   * How long an expired key is kept after it left the JWKS (SESSION_TTL): an application may send the ID token of
   * its sign-in back as id_token_hint for as long as the session lasts (formerPublicKey).
   */
  expiredKeysKeptSeconds: number;
}

/** Serializes rotations and first keys across instances (pg_advisory_xact_lock, one key per purpose). */
const SIGNING_KEYS_LOCK = 0x6761_7465;

export class SigningKeyService {
  readonly #prisma: Prisma;
  readonly #sealer: Sealer;
  readonly #audit: AuditTrail;
  readonly #options: SigningKeyOptions;

  constructor(prisma: Prisma, sealer: Sealer, audit: AuditTrail, options: SigningKeyOptions) {
    this.#prisma = prisma;
    this.#sealer = sealer;
    this.#audit = audit;
    this.#options = options;
  }

  /**
   * Makes sure every algorithm has a key, signing at once: on a first start, `firstKeys` (development: those
   * generated into keys/, so tokens from before keep verifying), and a new key for any algorithm they lack.
   */
  async ensure(firstKeys: () => Promise<PrivateJwks>): Promise<void> {
    const algorithmsIn = async (reader: Pick<Prisma, 'signingKey'>) => new Set((await reader.signingKey.findMany({ select: { alg: true }, distinct: ['alg'] })).map((key) => key.alg));
    // Every start but the first finds them all without taking the lock.
    const found = await algorithmsIn(this.#prisma);
    if (SIGNING_ALGORITHMS.every((alg) => found.has(alg))) return;
    // Made before the lock is taken: the transaction holds the (embedded database's only) connection.
    const seed = await firstKeys();
    const now = new Date();
    const rows = await Promise.all(SIGNING_ALGORITHMS.filter((alg) => !found.has(alg)).map(async (alg) => {
      const key = seed.keys.find((candidate) => algorithmOf(candidate) === alg) ?? await generateSigningKey(alg);
      return this.#row(key, alg, now, now);
    }));
    await this.#locked(async (transaction) => {
      // Another instance starting at the same moment may have made them meanwhile.
      const present = await algorithmsIn(transaction);
      for (const row of rows) if (!present.has(row.alg)) await transaction.signingKey.create({ data: row });
    });
  }

  /** Every key still published, with its private half; throws KeyError when ENCRYPTION_KEYS cannot open one. */
  async published(): Promise<UnsealedSigningKey[]> {
    const now = new Date();
    const lifetimeSeconds = await this.#options.longestTokenLifetimeSeconds();
    const found = inKeyOrder(await this.#prisma.signingKey.findMany({ where: { OR: [{ expiresAt: null }, { expiresAt: { gt: now } }] } }));
    const rows = await this.#publishedLongEnough(await this.#lifetimeNoted(found, lifetimeSeconds, now), lifetimeSeconds);
    return Promise.all(rows.map(async (row) => {
      try {
        const { plaintext, resealed } = await this.#sealer.openAndReseal(row.sealedPrivateJwk, sealingContext(row.kid));
        // Sealed under an older ENCRYPTION_KEYS key: sealed anew under the first, so the older key can go.
        if (resealed) await this.#prisma.signingKey.updateMany({ where: { kid: row.kid, sealedPrivateJwk: row.sealedPrivateJwk }, data: { sealedPrivateJwk: resealed } });
        return { ...toSigningKey(row), privateJwk: JSON.parse(plaintext) as JWK };
      } catch (error) {
        if (!(error instanceof SealedValueError)) throw error;
        throw new KeyError(`signing key ${row.kid} in the database does not open with ENCRYPTION_KEYS: every instance must share them`);
      }
    }));
  }

  /**
   * The rows, each key that signs (or is about to) noting the longest lifetime now as the longest its tokens may have,
   * once it is longer than any noted before: a lifetime lowered later (an API's, ID_TOKEN_TTL after a restart) must
   * not shorten the publication the tokens it signed before need. Seen at each read of the keys.
   */
  async #lifetimeNoted<Row extends { kid: string; retiresAt: Date | null; longestLifetimeSeconds: number | null }>(rows: Row[], lifetimeSeconds: number, now: Date): Promise<Row[]> {
    const signing = (row: Row) => !row.retiresAt || row.retiresAt > now;
    const shorter = rows.filter((row) => signing(row) && (row.longestLifetimeSeconds ?? 0) < lifetimeSeconds).map((row) => row.kid);
    if (!shorter.length) return rows;
    await this.#prisma.signingKey.updateMany({
      where: { kid: { in: shorter }, OR: [{ longestLifetimeSeconds: null }, { longestLifetimeSeconds: { lt: lifetimeSeconds } }] },
      data: { longestLifetimeSeconds: lifetimeSeconds },
    });
    return rows.map((row) => (shorter.includes(row.kid) ? { ...row, longestLifetimeSeconds: lifetimeSeconds } : row));
  }

  /**
   * The rows, each retired key published until the tokens it signed have expired by the longest lifetime noted while
   * it signed, or now if longer: when that grew since the rotation (an API's tokens made to last longer, a longer
   * ID_TOKEN_TTL after a restart), the tokens it signed since live longer than the rotation planned for. Kept in the
   * database, for every instance.
   */
  async #publishedLongEnough<Row extends { kid: string; retiresAt: Date | null; expiresAt: Date | null; longestLifetimeSeconds: number | null }>(
    rows: Row[], lifetimeSeconds: number,
  ): Promise<Row[]> {
    return Promise.all(rows.map(async (row) => {
      if (!row.retiresAt || !row.expiresAt) return row;
      const expiresAt = new Date(row.retiresAt.getTime() + Math.max(lifetimeSeconds, row.longestLifetimeSeconds ?? 0) * 1000);
      if (expiresAt <= row.expiresAt) return row;
      await this.#prisma.signingKey.updateMany({ where: { kid: row.kid, expiresAt: { lt: expiresAt } }, data: { expiresAt } });
      return { ...row, expiresAt };
    }));
  }

  /** Every key the database holds, oldest first (with its state now: `stateAt`). */
  async list(): Promise<SigningKey[]> {
    return inKeyOrder(await this.#prisma.signingKey.findMany()).map(toSigningKey);
  }

  /**
   * The public half of a key gone from the JWKS less than expiredKeysKeptSeconds ago, to recognise what it signed;
   * else undefined (a key expired longer ago may still be in the database until the next rotation deletes it).
   */
  async formerPublicKey(kid: string): Promise<JWK | undefined> {
    const row = await this.#prisma.signingKey.findUnique({ where: { kid } });
    const keptSince = new Date(Date.now() - this.#options.expiredKeysKeptSeconds * 1000);
    return row?.expiresAt && row.expiresAt <= new Date() && row.expiresAt > keptSince ? { ...row.publicJwk as JWK, alg: row.alg } : undefined;
  }

  /**
   * Starts a rotation: a new key for each algorithm, published now and signing after the delay, when the keys
   * they replace retire. Refused while one is under way (its new keys do not sign yet). Keys gone from the JWKS
   * longer than expiredKeysKeptSeconds are deleted. Returns the new keys.
   */
  async rotate(actor: AuditActor): Promise<SigningKey[]> {
    const rotated = await this.#rotate(() => Promise.resolve(true));
    if (!rotated) throw new KeyRotationError('a rotation is under way: its new keys do not sign yet (see `npx gatehouse keys list`)');
    await this.#audited(rotated, actor);
    return rotated;
  }

  /** Rotates when the newest keys have signed for `intervalSeconds` and no rotation is under way; whether it did. */
  async rotateIfDue(intervalSeconds: number): Promise<boolean> {
    const due = async (reader: Pick<Prisma, 'signingKey'>) => {
      const newest = await reader.signingKey.findFirst({ orderBy: { signsFrom: 'desc' }, select: { signsFrom: true } });
      return !newest || newest.signsFrom.getTime() + intervalSeconds * 1000 <= Date.now();
    };
    // Asked at every read of the keys: mostly answered without making keys or taking the lock.
    if (!await due(this.#prisma)) return false;
    const rotated = await this.#rotate(due);
    if (rotated) await this.#audited(rotated, { type: 'system' }, { scheduled: true });
    return rotated !== undefined;
  }

  /**
   * The rotation itself, when `wanted` still says so under the lock; undefined when one is under way. The keys
   * and the lifetime are worked out first: the transaction holds the (embedded database's only) connection.
   */
  async #rotate(wanted: (transaction: Transaction) => Promise<boolean>): Promise<SigningKey[] | undefined> {
    const now = new Date();
    const signsFrom = new Date(now.getTime() + this.#options.rotationDelaySeconds * 1000);
    const lifetimeSeconds = await this.#options.longestTokenLifetimeSeconds();
    const rows = await Promise.all(SIGNING_ALGORITHMS.map(async (alg) => this.#row(await generateSigningKey(alg), alg, now, signsFrom)));
    return this.#locked(async (transaction) => {
      if (!await wanted(transaction) || await transaction.signingKey.count({ where: { signsFrom: { gt: now } } })) return undefined;
      await transaction.signingKey.deleteMany({ where: { expiresAt: { lte: new Date(now.getTime() - this.#options.expiredKeysKeptSeconds * 1000) } } });
      // Tokens a retiring key signs until it retires live at most the longest lifetime now, or noted while it signed.
      for (const retiring of await transaction.signingKey.findMany({ where: { retiresAt: null } })) {
        const longest = Math.max(lifetimeSeconds, retiring.longestLifetimeSeconds ?? 0);
        await transaction.signingKey.update({
          where: { kid: retiring.kid },
          data: { retiresAt: signsFrom, expiresAt: new Date(signsFrom.getTime() + longest * 1000), longestLifetimeSeconds: longest },
        });
      }
      return Promise.all(rows.map(async (data) => toSigningKey(await transaction.signingKey.create({ data }))));
    });
  }

  async #audited(rotated: SigningKey[], actor: AuditActor, extra: { scheduled?: boolean } = {}): Promise<void> {
    await this.#audit.record({
      action: 'keys.rotated', outcome: 'success', actor,
      detail: { kids: rotated.map((key) => key.kid), signsFrom: rotated[0]!.signsFrom.toISOString(), ...extra },
    });
  }

  async #row(key: JWK, alg: SigningAlgorithm, createdAt: Date, signsFrom: Date) {
    // A key from keys/ written by hand may lack a kid: the engine and the JWKS need one.
    const privateJwk = { ...key, alg, use: 'sig', kid: key.kid ?? randomUUID() };
    const { kid } = privateJwk;
    return {
      kid, alg, createdAt, signsFrom,
      publicJwk: publicPartOf(privateJwk) as object,
      sealedPrivateJwk: await this.#sealer.seal(JSON.stringify(privateJwk), sealingContext(kid)),
    };
  }

  /** Work on the keys that no other instance does at the same time. */
  async #locked<T>(work: (transaction: Transaction) => Promise<T>): Promise<T> {
    return this.#prisma.$transaction(async (transaction) => {
      await transaction.$executeRawUnsafe(`SELECT pg_advisory_xact_lock(${SIGNING_KEYS_LOCK})`);
      return work(transaction);
    });
  }
}

type Transaction = Parameters<Parameters<Prisma['$transaction']>[0]>[0];

/** What a key does at a moment. */
export function stateAt(key: SigningKey, now: Date): SigningKeyState {
  if (key.expiresAt && key.expiresAt <= now) return 'expired';
  if (key.retiresAt && key.retiresAt <= now) return 'retired';
  return key.signsFrom <= now ? 'signing' : 'next';
}

/** The engine's keys at a moment: each algorithm's signing key first (the engine signs with the first it finds), then every other one published. */
export function engineKeysAt(keys: readonly UnsealedSigningKey[], now: Date): PrivateJwks {
  const published = keys.filter((key) => stateAt(key, now) !== 'expired');
  const signing = published.filter((key) => stateAt(key, now) === 'signing');
  return { keys: [...signing, ...published.filter((key) => !signing.includes(key))].map((key) => key.privateJwk) };
}

/** The next moment at which some key changes state by itself, if any. */
export function nextChangeAfter(keys: readonly SigningKey[], now: Date): Date | undefined {
  const moments = keys.flatMap((key) => [key.signsFrom, key.retiresAt, key.expiresAt]).filter((moment): moment is Date => moment !== undefined && moment > now);
  return moments.length ? new Date(Math.min(...moments.map((moment) => moment.getTime()))) : undefined;
}

/**
 * One order on every instance: sign-from time, then SIGNING_ALGORITHMS' order (the engine offers ID token
 * algorithms in keystore order, and RS256 must come first, the default every client library assumes), then kid.
 */
function inKeyOrder<Row extends { kid: string; alg: string; signsFrom: Date }>(rows: Row[]): Row[] {
  const rank = (alg: string) => SIGNING_ALGORITHMS.indexOf(alg as SigningAlgorithm);
  return rows.sort((a, b) => a.signsFrom.getTime() - b.signsFrom.getTime() || rank(a.alg) - rank(b.alg) || a.kid.localeCompare(b.kid));
}

function sealingContext(kid: string): string {
  return `signing-key:${kid}`;
}

function toSigningKey(row: { kid: string; alg: string; createdAt: Date; signsFrom: Date; retiresAt: Date | null; expiresAt: Date | null }): SigningKey {
  return { kid: row.kid, alg: row.alg, createdAt: row.createdAt, signsFrom: row.signsFrom, retiresAt: row.retiresAt ?? undefined, expiresAt: row.expiresAt ?? undefined };
}
