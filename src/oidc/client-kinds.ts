// What kind of application a registered client is, as the engine sees it, and what follows from it: a
// browser app (single-page app) holds no secret and never gets access that outlives the person's session.

/**
 * Client metadata (extraClientMetadata): true marks one of the organisation's own applications, which is
 * allowed what it asks without a consent page. An administrator's setting, never a registrant's.
 */
export const FIRST_PARTY = 'first_party';

/** A public browser client: no secret, signs people in with redirects. */
export function isSinglePageApp(client: { clientAuthMethod?: string; applicationType?: string }): boolean {
  return client.clientAuthMethod === 'none' && client.applicationType === 'web';
}

/**
 * Scopes a browser app may ask for but is never granted: its refresh tokens end with the session (a token
 * kept in a browser must not outlive signing out), so offline access is refused at consent rather than
 * promised and not kept.
 */
export const WITHHELD_FROM_SINGLE_PAGE_APPS: ReadonlySet<string> = new Set(['offline_access']);
