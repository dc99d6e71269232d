// The signing keys this instance uses now, kept current as they rotate: re-read when another instance (or the
// CLI) announces a rotation through the store, every refresh interval in case an announcement was lost, and at
// the moment a key starts signing, retires or expires, which each instance works out from the times alone.
// Fixed keys (JWKS, JWKS_FILE) never change.
import { createLocalJWKSet, type JWK, type JWTVerifyGetKey } from 'jose';
import type { Logger } from 'pino';
import type { Store, Subscription } from '../store/store.ts';
import type { AuditActor } from '../audit/audit.ts';
import { publicPartOf, type PrivateJwks } from './secrets.ts';
import { KeyRotationError, engineKeysAt, nextChangeAfter, stateAt, type SigningKey, type SigningKeyService, type SigningKeyState, type UnsealedSigningKey } from './signing-keys.ts';

/** A key as `keys list` shows it: `configured` when JWKS or JWKS_FILE sets it (its times are then unknown). */
export type KeyDescription = Partial<SigningKey> & Pick<SigningKey, 'kid' | 'alg'> & { state: SigningKeyState | 'configured' };

/** The store channel on which a rotation is announced, so every instance publishes the new keys at once. */
export const SIGNING_KEY_CHANGES_CHANNEL = 'signing-keys:changed';

export interface KeyRingOptions {
  service: SigningKeyService;
  store: Pick<Store, 'publish' | 'subscribe'>;
  /** The keys a database without any starts with. */
  firstKeys(): Promise<PrivateJwks>;
  /** Seconds between reads of the keys; and between automatic rotations (0: never). */
  refreshIntervalSeconds: number;
  rotationIntervalSeconds: number;
  logger: Logger;
  /** A command that does one thing and exits: no timers, no subscription. */
  oneShot?: boolean | undefined;
}

export class SigningKeyRing {
  readonly #options: KeyRingOptions | undefined;
  #keys: readonly UnsealedSigningKey[];
  #jwks: PrivateJwks;
  #fingerprint = '';
  #verificationKeys: JWTVerifyGetKey;
  readonly #listeners: Array<(jwks: PrivateJwks) => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #nextReadAt = 0;
  #subscription: Subscription | undefined;
  /** Reads are applied one after another, so an older read never replaces a newer one. */
  #reading: Promise<void> = Promise.resolve();
  /** A scheduled wake under way (a scheduled rotation, a read): awaited on close. */
  #waking: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(jwks: PrivateJwks, keys: readonly UnsealedSigningKey[], options: KeyRingOptions | undefined) {
    this.#options = options;
    this.#keys = keys;
    this.#jwks = jwks;
    this.#verificationKeys = createLocalJWKSet({ keys: jwks.keys.map(publicPartOf) });
  }

  /** Keys set by configuration: the first of each algorithm signs, all are published. */
  static fixed(jwks: PrivateJwks): SigningKeyRing {
    return new SigningKeyRing(jwks, [], undefined);
  }

  /** The database's keys (a first start makes them), kept current until closed. */
  static async open(options: KeyRingOptions): Promise<SigningKeyRing> {
    await options.service.ensure(options.firstKeys);
    const keys = await options.service.published();
    const ring = new SigningKeyRing(engineKeysAt(keys, new Date()), keys, options);
    ring.#apply();
    if (!options.oneShot) {
      ring.#nextReadAt = Date.now() + options.refreshIntervalSeconds * 1000;
      ring.#subscription = options.store.subscribe(SIGNING_KEY_CHANGES_CHANNEL, {
        message: () => void ring.refresh(),
        // Announcements may have been missed while not listening.
        listeningChanged: (listening) => { if (listening) void ring.refresh(); },
      });
      ring.#schedule();
    }
    return ring;
  }

  /** The engine's keys now: each algorithm's signing key first, then every other published key. */
  get jwks(): PrivateJwks {
    return this.#jwks;
  }

  /** Every published key's public half, for checking what Gatehouse signed. */
  get verificationKeys(): JWTVerifyGetKey {
    return this.#verificationKeys;
  }

  /** Called with the engine's keys whenever they change. */
  onChange(listener: (jwks: PrivateJwks) => void): void {
    this.#listeners.push(listener);
  }

  /** Starts a rotation, and tells every instance sharing the store. Returns the new keys. */
  async rotate(actor: AuditActor): Promise<SigningKey[]> {
    if (!this.#options) throw new KeyRotationError('the signing keys are set by JWKS or JWKS_FILE: rotate them by changing that setting');
    const created = await this.#options.service.rotate(actor);
    await this.#announce();
    await this.refresh();
    return created;
  }

  /** The public half of one of the database's keys that has left the JWKS (SigningKeyService.formerPublicKey). */
  async formerPublicKey(kid: string): Promise<JWK | undefined> {
    return this.#options?.service.formerPublicKey(kid);
  }

  /** Every key with what it does now, oldest first. */
  async list(): Promise<KeyDescription[]> {
    if (!this.#options) return this.#jwks.keys.map((key) => ({ kid: key.kid!, alg: key.alg!, state: 'configured' }));
    const now = new Date();
    return (await this.#options.service.list()).map((key) => ({ ...key, state: stateAt(key, now) }));
  }

  /** Reads the keys again now (a failed read is logged; the keys in use stay). */
  refresh(): Promise<void> {
    const options = this.#options;
    if (!options) return Promise.resolve();
    this.#reading = this.#reading.then(async () => {
      try {
        this.#keys = await options.service.published();
        this.#apply();
      } catch (error) {
        options.logger.warn({ err: error }, 'signing keys could not be read: the keys in use stay until the next read');
      }
    });
    return this.#reading;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    await this.#subscription?.close();
    await this.#waking;
    await this.#reading;
  }

  /** Makes the keys of this moment the engine's, telling the listeners when they changed. */
  #apply(): void {
    const jwks = engineKeysAt(this.#keys, new Date());
    const fingerprint = jwks.keys.map((key) => key.kid).join(' ');
    if (fingerprint === this.#fingerprint) return;
    const first = this.#fingerprint === '';
    this.#fingerprint = fingerprint;
    this.#jwks = jwks;
    this.#verificationKeys = createLocalJWKSet({ keys: jwks.keys.map(publicPartOf) });
    if (!first) for (const listener of this.#listeners) listener(jwks);
  }

  /** Wakes at the next change of state, or to read the keys again, whichever comes first. */
  #schedule(): void {
    if (this.#closed) return;
    const now = Date.now();
    const change = nextChangeAfter(this.#keys, new Date(now))?.getTime() ?? Infinity;
    this.#timer = setTimeout(() => { this.#waking = this.#wake(); }, Math.max(0, Math.min(change, this.#nextReadAt) - now));
    this.#timer.unref();
  }

  async #wake(): Promise<void> {
    const options = this.#options!;
    if (this.#closed) return;
    if (Date.now() >= this.#nextReadAt) {
      this.#nextReadAt = Date.now() + options.refreshIntervalSeconds * 1000;
      if (options.rotationIntervalSeconds > 0) await this.#rotateIfDue(options);
      await this.refresh();
    } else {
      this.#apply();
    }
    this.#schedule();
  }

  /** The configured schedule: one instance rotates (the service takes a lock), and tells the others. */
  async #rotateIfDue(options: KeyRingOptions): Promise<void> {
    try {
      if (await options.service.rotateIfDue(options.rotationIntervalSeconds)) await this.#announce();
    } catch (error) {
      options.logger.warn({ err: error }, 'scheduled key rotation failed: it is tried again at the next read');
    }
  }

  /** Best effort: an instance that misses it reads the keys within its refresh interval, well before they sign. */
  async #announce(): Promise<void> {
    try {
      await this.#options!.store.publish(SIGNING_KEY_CHANGES_CHANNEL, 'rotated');
    } catch (error) {
      this.#options!.logger.warn({ err: error }, 'key rotation could not be announced: other instances read the new keys within their refresh interval');
    }
  }
}
