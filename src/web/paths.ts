// The route table: every path Gatehouse serves itself, defined once. Routers register these patterns, pages
// and templates link with pathTo(), and the links in mail are built from them here.
import type { AccountLinks } from '../accounts/flows/dependencies.ts';
import { ACCOUNT_CONSOLE_CALLBACK_PATH } from '../oidc/account-console-client.ts';

export const PATHS = {
  /** What this is, for a person who types the issuer's address in. */
  home: '/',
  // Health, for load balancers and orchestrators.
  live: '/healthz',
  ready: '/readyz',
  /** Prometheus metrics: with METRICS_TOKEN on this port, or on METRICS_PORT. */
  metrics: '/metrics',
  asset: '/assets/:name',
  /** Asked by browsers of every page without an icon (the engine's own): nothing, rather than a 404. */
  favicon: '/favicon.ico',

  // The sign-in's pages, under the engine's interaction path (its interaction cookie is scoped to it).
  interaction: '/interaction/:uid',
  login: '/interaction/:uid/login',
  consent: '/interaction/:uid/confirm',
  abort: '/interaction/:uid/abort',
  secondFactor: '/interaction/:uid/second-factor',
  secondFactorEnroll: '/interaction/:uid/second-factor/enroll',
  secondFactorContinue: '/interaction/:uid/second-factor/continue',
  signUp: '/interaction/:uid/sign-up',
  /** "Forgot your password?" from a sign-in: remembers it, then on to forgotPassword. */
  forgotPasswordFromSignIn: '/interaction/:uid/password/forgot',
  /** A new verification link asked from the sign-in that the unconfirmed address stopped. */
  resendVerificationFromSignIn: '/interaction/:uid/verify-email/resend',

  // The pages emailed links lead to (and the forms that ask for them).
  forgotPassword: '/password/forgot',
  resetPassword: '/password/reset',
  verifyEmail: '/verify-email',
  resendVerification: '/verify-email/resend',
  confirmEmailChange: '/email/confirm-change',
  restoreEmail: '/email/restore',

  // The account console.
  account: '/account',
  /** The console's own sign-in comes back here (its client's redirect URI, registered by the engine's side). */
  accountCallback: ACCOUNT_CONSOLE_CALLBACK_PATH,
  accountEmail: '/account/email',
  accountPassword: '/account/password',
  accountTwoFactor: '/account/two-factor',
  accountTwoFactorStart: '/account/two-factor/start',
  accountTwoFactorConfirm: '/account/two-factor/confirm',
  accountRecoveryCodes: '/account/two-factor/recovery-codes',
  accountTwoFactorDisable: '/account/two-factor/disable',
  accountApplications: '/account/applications',
  accountApplicationRemove: '/account/applications/:clientId/remove',
  accountSessions: '/account/sessions',
  accountSessionsEndAll: '/account/sessions/end-all',
  accountSessionEnd: '/account/sessions/:uid/end',
  accountSignOut: '/account/sign-out',
} as const;

export type PathName = keyof typeof PATHS;

/** A path with its parameters filled in (escaped): pathTo('secondFactor', { uid }). */
export function pathTo(name: PathName, parameters: Record<string, string> = {}): string {
  return PATHS[name].replace(/:(\w+)/g, (_match, key: string) => {
    const value = parameters[key];
    if (value === undefined) throw new Error(`pathTo('${name}'): no value for :${key}`);
    return encodeURIComponent(value);
  });
}

/** A path of an area's router, relative to the prefix the router is mounted under ('/account/email' → '/email'). */
export function within(prefix: PathName, name: PathName): string {
  const path: string = PATHS[name];
  if (!path.startsWith(PATHS[prefix])) throw new Error(`${name} is not under ${prefix}`);
  return path.slice(PATHS[prefix].length) || '/';
}

/** The absolute links the account flows put in mail. Tokens are base64url: they need no escaping in a query. */
export function accountLinks(issuer: string): AccountLinks {
  const withToken = (name: PathName) => (token: string) => `${issuer}${PATHS[name]}?token=${token}`;
  return {
    forgotPassword: `${issuer}${PATHS.forgotPassword}`,
    account: `${issuer}${PATHS.account}`,
    resetPassword: withToken('resetPassword'),
    restoreEmail: withToken('restoreEmail'),
    confirmEmailChange: withToken('confirmEmailChange'),
    verifyEmail: withToken('verifyEmail'),
  };
}
