// The trusted-device cookie (OWASP's "device cookies"): a browser that proved it is the account holder's keeps
// its own lockout, so someone else's wrong passwords cannot lock the owner out. This file only reads and writes
// the cookie; what a trusted device may do is the LoginGuard's decision (src/limits/login-guard.ts).
import { randomBytes } from 'node:crypto';
import type { Context } from 'koa';
import { PATHS } from '../paths.ts';
import { TRUSTED_DEVICE_SECONDS, accountKey } from '../../limits/login-guard.ts';

const COOKIE = 'gatehouse.device';
// The login form reads it, and the account console where it asks for the password again: no other request carries
// it. A cookie has one path: the same one is set at each.
const COOKIE_PATHS = [PATHS.interaction.slice(0, PATHS.interaction.indexOf('/:uid')), PATHS.account];
/** `<device id>.<account key>.<issued at, seconds>`: a random id, the hash of the email (never the address), and its age. */
const VALUE = /^([A-Za-z0-9_-]{22})\.([0-9a-f]{32})\.(\d{1,12})$/;

/**
 * Trusts this browser for the email's account, after a proof: the right password, or a password reset through
 * the emailed link. Each proof makes a new device (with no failures) for at most TRUSTED_DEVICE_SECONDS; a
 * browser is trusted for one account at a time, the last one proved.
 */
export function trustThisDevice(ctx: Context, email: string): void {
  const account = accountKey(email);
  if (!account) return;
  const device = randomBytes(16).toString('base64url');
  const issuedAt = Math.floor(Date.now() / 1000);
  setCookies(ctx, `${device}.${account}.${issuedAt}`);
}

/**
 * This browser's device id when its cookie is ours (signed), for this email's account, and younger than its
 * lifetime (checked here too: a copied cookie does not expire by itself); undefined otherwise.
 */
export function trustedDeviceFor(ctx: Context, email: string): string | undefined {
  const value = ctx.cookies.get(COOKIE, { signed: true });
  const match = value === undefined ? null : VALUE.exec(value);
  if (!match) return undefined;
  const [, device, account, issuedAt] = match;
  if (account !== accountKey(email) || Date.now() / 1000 - Number(issuedAt) > TRUSTED_DEVICE_SECONDS) return undefined;
  return device;
}

/** Removes the cookie once the guard stopped trusting the device (it reached its lock): it would only be ignored. */
export function forgetThisDevice(ctx: Context): void {
  setCookies(ctx, null);
}

/**
 * The cookie at each of its paths (null: removed). Secure whenever the request is (Koa's cookies decide), signed
 * with the app's keys like every cookie of ours. The first replaces any set earlier in this response, the others join it.
 */
function setCookies(ctx: Context, value: string | null): void {
  COOKIE_PATHS.forEach((path, index) => ctx.cookies.set(COOKIE, value, {
    signed: true, httpOnly: true, sameSite: 'lax', path, overwrite: index === 0, ...(value === null ? {} : { maxAge: TRUSTED_DEVICE_SECONDS * 1000 }),
  }));
}
