// Password hashing with argon2id. Verification of an unknown account still spends one hash's time,
// so response timing does not tell whether an email is registered.
import argon2 from 'argon2';
import { normalizePassword } from './password-policy.ts';

export interface PasswordHashingOptions {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

export class PasswordHasher {
  readonly #options: PasswordHashingOptions;
  // Made at once, so even the first unknown-email login after a start costs one hash, not two.
  readonly #decoyHash: Promise<string>;

  constructor(options: PasswordHashingOptions) {
    this.#options = options;
    this.#decoyHash = this.hash('decoy password that matches nothing');
  }

  hash(password: string): Promise<string> {
    return argon2.hash(normalizePassword(password), { type: argon2.argon2id, ...this.#options });
  }

  /** Compares against a stored hash; with no hash, does the same work against a decoy and returns false. */
  async verify(storedHash: string | undefined, password: string): Promise<boolean> {
    const decoy = await this.#decoyHash;
    const matches = await argon2.verify(storedHash ?? decoy, normalizePassword(password)).catch(() => false);
    return storedHash !== undefined && matches;
  }

  /** Made with other settings, or another argon2 variant (argon2.needsRehash compares only the settings). */
  needsRehash(storedHash: string): boolean {
    return !storedHash.startsWith('$argon2id$') || argon2.needsRehash(storedHash, this.#options);
  }
}
