// The scopes Gatehouse offers, the claims each releases, and how the consent page words them.

/** Scope → claims. amr, acr and auth_time ride on openid so the ID token says how the person signed in. */
export const CLAIMS_BY_SCOPE = {
  openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
  profile: ['name'],
  email: ['email', 'email_verified'],
  // The person's role names (src/apis/roles.ts); JWT access tokens carry them too when this scope is granted.
  roles: ['roles'],
} as const;

export const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'roles'] as const;

/**
 * OpenID Connect's other standard scopes (Core §5.4), for claims Gatehouse keeps no data for: a postal address, a
 * phone number. Many apps ask for them by default; a scope not understood SHOULD be ignored, says Core §3.1.2.1, and
 * these are: they release nothing, and are never taken for an API's.
 */
export const SCOPES_WITHOUT_DATA = ['address', 'phone'] as const;

/** Every scope above is about the person signing in: a service client (client_credentials) gets none of them. */
const SCOPES_ABOUT_PEOPLE: ReadonlySet<string> = new Set(SCOPES);

/** The scopes about a person among these (space-separated), in the order given. */
export function scopesAboutPeople(scope: string | undefined): string[] {
  return (scope ?? '').split(' ').filter((name) => SCOPES_ABOUT_PEOPLE.has(name));
}

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  openid: 'Know who you are',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  offline_access: 'Keep access while you are away',
  roles: 'See your roles',
};

export function describeScope(scope: string): string {
  return SCOPE_DESCRIPTIONS[scope] ?? `Use “${scope}”`;
}
