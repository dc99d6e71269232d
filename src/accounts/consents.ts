// What a person allowed each application: remembered across sign-outs (signing out ends sessions and tokens,
// not consent), so the consent page is asked again only for what an app newly asks, or after the person
// withdrew the app's access.
import type { Prisma } from '../db/index.ts';

/** The scope for refresh tokens that outlive the session: consented to each time it is asked for. */
const OFFLINE_ACCESS = 'offline_access';

export interface Consent {
  clientId: string;
  /** OpenID scopes consented to. */
  scopes: string[];
  /** Claims asked for one by one (the claims parameter) and consented to. */
  claims: string[];
  grantedAt: Date;
}

export class ConsentService {
  readonly #prisma: Prisma;

  constructor(prisma: Prisma) {
    this.#prisma = prisma;
  }

  /** What the person allowed this application, if anything. */
  async of(userId: string, clientId: string): Promise<Consent | undefined> {
    const row = await this.#prisma.consent.findUnique({ where: { userId_clientId: { userId, clientId } } });
    return row ? { clientId: row.clientId, scopes: row.scopes, claims: row.claims, grantedAt: row.grantedAt } : undefined;
  }

  /** Every application the person allowed, the most recently allowed first. */
  async list(userId: string): Promise<Consent[]> {
    const rows = await this.#prisma.consent.findMany({ where: { userId }, orderBy: { grantedAt: 'desc' } });
    return rows.map((row) => ({ clientId: row.clientId, scopes: row.scopes, claims: row.claims, grantedAt: row.grantedAt }));
  }

  /**
   * Adds to what the person allowed the application (a consent page answered). Offline access is never
   * remembered: OpenID Connect asks it be consented to each time it is asked for (prompt=consent).
   */
  async remember(userId: string, clientId: string, granted: { scopes: readonly string[]; claims: readonly string[] }): Promise<void> {
    const scopes = granted.scopes.filter((scope) => scope !== OFFLINE_ACCESS);
    // One statement, so two consent pages answered at once both add their part.
    await this.#prisma.$executeRaw`
      INSERT INTO consents (user_id, client_id, scopes, claims, updated_at)
      VALUES (${userId}::uuid, ${clientId}, ${[...new Set(scopes)]}::text[], ${[...new Set(granted.claims)]}::text[], now())
      ON CONFLICT (user_id, client_id) DO UPDATE SET
        scopes = ARRAY(SELECT DISTINCT unnest(consents.scopes || EXCLUDED.scopes) ORDER BY 1),
        claims = ARRAY(SELECT DISTINCT unnest(consents.claims || EXCLUDED.claims) ORDER BY 1),
        updated_at = now()`;
  }

  /** Forgets it: the application asks again at the next sign-in. False when there was nothing to forget. */
  async forget(userId: string, clientId: string): Promise<boolean> {
    const { count } = await this.#prisma.consent.deleteMany({ where: { userId, clientId } });
    return count > 0;
  }
}
