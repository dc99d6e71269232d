// The scopes Gatehouse offers, the claims each releases, and how the consent page words them.

/** Scope → claims. amr, acr and auth_time ride on openid so the ID token says how the person signed in. */
export const CLAIMS_BY_SCOPE = {
  openid: ['sub', 'acr', 'amr', 'auth_time', 'sid'],
  profile: ['name'],
  email: ['email', 'email_verified'],
} as const;

export const SCOPES = ['openid', 'offline_access', 'profile', 'email'] as const;

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  openid: 'Know who you are',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  offline_access: 'Keep access while you are away',
};

export function describeScope(scope: string): string {
  return SCOPE_DESCRIPTIONS[scope] ?? `Use “${scope}”`;
}
