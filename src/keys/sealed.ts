// Encryption at rest for secrets Gatehouse must read back (TOTP seeds): a compact JWE ('dir', A256GCM) under
// the newest ENCRYPTION_KEYS key. Each value names its key by a kid derived from the key, so after a rotation
// older values still open, and are re-sealed with the newest key when used, until the old key can go.
import { createHash } from 'node:crypto';
import { CompactEncrypt, compactDecrypt, errors } from 'jose';

/** A sealed value that no configured key opens, that was tampered with, or that belongs elsewhere. */
export class SealedValueError extends Error {
  override name = 'SealedValueError';
}

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder();

/** A kid that names a key without revealing it: a truncated hash of the key under a label of its own. */
export function keyIdOf(key: Uint8Array): string {
  return createHash('sha256').update('gatehouse sealed-value key id\0').update(key).digest('base64url').slice(0, 16);
}

export class Sealer {
  readonly #sealingKey: Uint8Array;
  readonly #sealingKeyId: string;
  readonly #keysById: Map<string, Uint8Array>;

  /** keys: 32-byte keys, newest first — the first seals, every one opens. */
  constructor(keys: readonly Uint8Array[]) {
    if (!keys.length) throw new Error('sealing needs at least one encryption key');
    for (const key of keys) if (key.length !== 32) throw new Error('encryption keys must be 32 bytes (A256GCM)');
    this.#sealingKey = keys[0]!;
    this.#sealingKeyId = keyIdOf(this.#sealingKey);
    this.#keysById = new Map(keys.map((key) => [keyIdOf(key), key]));
  }

  /**
   * Encrypts text. `context` (e.g. "totp:<user id>") is authenticated in the protected header, so a
   * value copied into another row or field does not open there.
   */
  async seal(plaintext: string, context: string): Promise<string> {
    return new CompactEncrypt(ENCODER.encode(plaintext))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: this.#sealingKeyId, ctx: context })
      .encrypt(this.#sealingKey);
  }

  /** Decrypts what seal() produced for the same context; throws SealedValueError otherwise. */
  async open(sealed: string, context: string): Promise<string> {
    return (await this.#open(sealed, context)).plaintext;
  }

  /**
   * Like open(), and when the value was sealed with an older key, the same plaintext sealed anew with
   * the newest one (to store in its place): values re-sealed as they are used let the old key retire.
   */
  async openAndReseal(sealed: string, context: string): Promise<{ plaintext: string; resealed: string | undefined }> {
    const { plaintext, keyId } = await this.#open(sealed, context);
    return { plaintext, resealed: keyId === this.#sealingKeyId ? undefined : await this.seal(plaintext, context) };
  }

  async #open(sealed: string, context: string): Promise<{ plaintext: string; keyId: string }> {
    try {
      const { plaintext, protectedHeader } = await compactDecrypt(sealed, (header) => {
        const key = typeof header.kid === 'string' ? this.#keysById.get(header.kid) : undefined;
        if (!key) throw new SealedValueError('no configured encryption key opens this value (was its key removed from ENCRYPTION_KEYS?)');
        return key;
      }, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
      if (protectedHeader.ctx !== context) throw new SealedValueError('this sealed value belongs to something else');
      return { plaintext: DECODER.decode(plaintext), keyId: String(protectedHeader.kid) };
    } catch (error) {
      if (error instanceof SealedValueError) throw error;
      if (error instanceof errors.JOSEError) throw new SealedValueError(`the sealed value does not open (${error.code})`);
      throw error;
    }
  }
}
