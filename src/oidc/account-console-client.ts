// The account console (src/web/account/) signs people in through the engine like any application,
// as a built-in public client: one login page, one session, the same second factor. It is first-party: no consent.
import type { ClientMetadata } from 'oidc-provider';
import { FIRST_PARTY } from './client-kinds.ts';

export const ACCOUNT_CONSOLE_CLIENT_ID = 'gatehouse-account-console';
export const ACCOUNT_CONSOLE_CALLBACK_PATH = '/account/callback' as const;

export function accountConsoleClient(issuer: string): ClientMetadata {
  return {
    client_id: ACCOUNT_CONSOLE_CLIENT_ID,
    client_name: 'Your Gatehouse account',
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [`${issuer}${ACCOUNT_CONSOLE_CALLBACK_PATH}`],
    post_logout_redirect_uris: [`${issuer}/account`],
    [FIRST_PARTY]: true,
  };
}
