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
  /** API scopes consented to, by API (resource indicator). */
  resources: Record<string, string[]>;
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
    return row ? toConsent(row) : undefined;
  }

  /** Every application the person allowed, the most recently allowed first. */
  async list(userId: string): Promise<Consent[]> {
    const rows = await this.#prisma.consent.findMany({ where: { userId }, orderBy: { grantedAt: 'desc' } });
    return rows.map(toConsent);
  }

  /**
   * Adds to what the person allowed the application (a consent page answered). Offline access is never
   * remembered: OpenID Connect asks it be consented to each time it is asked for (prompt=consent).
   */
  async remember(userId: string, clientId: string, granted: { scopes: readonly string[]; claims: readonly string[]; resources?: Readonly<Record<string, readonly string[]>> }): Promise<void> {
    const scopes = granted.scopes.filter((scope) => scope !== OFFLINE_ACCESS);
    const resourceScopes = Object.entries(granted.resources ?? {}).flatMap(([resource, names]) => names.map((name) => `${resource} ${name}`));
    // One statement, so two consent pages answered at once both add their part.
    await this.#prisma.$executeRaw`
      INSERT INTO consents (user_id, client_id, scopes, claims, resource_scopes, updated_at)
      VALUES (${userId}::uuid, ${clientId}, ${[...new Set(scopes)]}::text[], ${[...new Set(granted.claims)]}::text[], ${[...new Set(resourceScopes)]}::text[], now())
      ON CONFLICT (user_id, client_id) DO UPDATE SET
        scopes = ARRAY(SELECT DISTINCT unnest(consents.scopes || EXCLUDED.scopes) ORDER BY 1),
        claims = ARRAY(SELECT DISTINCT unnest(consents.claims || EXCLUDED.claims) ORDER BY 1),
        resource_scopes = ARRAY(SELECT DISTINCT unnest(coalesce(consents.resource_scopes, '{}') || EXCLUDED.resource_scopes) ORDER BY 1),
        updated_at = now()`;
  }

  /** Forgets it: the application asks again at the next sign-in. False when there was nothing to forget. */
  async forget(userId: string, clientId: string): Promise<boolean> {
    const { count } = await this.#prisma.consent.deleteMany({ where: { userId, clientId } });
    return count > 0;
  }
}

function toConsent(row: { clientId: string; scopes: string[]; claims: string[]; resourceScopes: string[] | null; grantedAt: Date }): Consent {
  const resources: Record<string, string[]> = {};
  for (const entry of row.resourceScopes ?? []) {
    const [resource, scope] = entry.split(' ');
    if (resource && scope) resources[resource] = [...resources[resource] ?? [], scope];
  }
  return { clientId: row.clientId, scopes: row.scopes, claims: row.claims, resources, grantedAt: row.grantedAt };
}
