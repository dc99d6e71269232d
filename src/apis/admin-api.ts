// Gatehouse's own admin API (/admin/v1) is an API like any other: a record whose identifier is the audience of
// the tokens it accepts, with one scope for reading and one for changing. It is made at the first start, with the
// admin role permitted both, so that an administrator signing in to an admin tool can be granted them; a service
// client is given them like any API scope (`clients create --type service --scope "admin:read admin:write"`).
import type { ApiService } from './apis.ts';
import { ADMIN_ROLE, type RoleService } from './roles.ts';

export const ADMIN_READ_SCOPE = 'admin:read';
export const ADMIN_WRITE_SCOPE = 'admin:write';

/** Where the admin API is served, under the issuer. */
export const ADMIN_API_PATH = '/admin/v1';

/** The admin API's identifier (its tokens' audience): its URL. */
export function adminApiIdentifier(issuer: string): string {
  return `${issuer.replace(/\/$/, '')}${ADMIN_API_PATH}`;
}

/** Makes the admin API's record on a first start (several instances at once included). */
export async function ensureAdminApi(issuer: string, apis: Pick<ApiService, 'find' | 'stored' | 'create'>, roles: Pick<RoleService, 'grant'>): Promise<void> {
  const identifier = adminApiIdentifier(issuer);
  if (await apis.find(identifier)) return;
  const system = { type: 'system' as const };
  try {
    await apis.create({
      identifier, name: 'Gatehouse admin API', accessTokenFormat: 'jwt',
      scopes: [
        { name: ADMIN_READ_SCOPE, description: 'See Gatehouse\'s people, applications, APIs, keys and audit trail' },
        { name: ADMIN_WRITE_SCOPE, description: 'Change Gatehouse\'s people, applications, APIs and keys' },
      ],
    }, system);
  } catch (error) {
    // Another instance starting at the same moment made it: asked of the database, since this instance remembers the
    // API missing (the find above) until that instance's announcement reaches it.
    if (await apis.stored(identifier)) return;
    throw error;
  }
  await roles.grant(ADMIN_ROLE, identifier, [ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE], system);
}
