// The trusted-device cookie (OWASP's "device cookies"): a browser that proved it is the account holder's keeps
// its own lockout, so someone else's wrong passwords cannot lock the owner out. This file only reads and writes
// the cookie; what a trusted device may do is the LoginGuard's decision (src/limits/login-guard.ts).
import { randomBytes } from 'node:crypto';
import type { Context } from 'koa';
import { PATHS } from '../paths.ts';
import { TRUSTED_DEVICE_SECONDS, accountKey } from '../../limits/login-guard.ts';

const COOKIE = 'gatehouse.device';
// Only the login form reads it, so no other request carries it.
const COOKIE_PATH = PATHS.interaction.slice(0, PATHS.interaction.indexOf('/:uid'));
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
  // Secure whenever the request is (Koa's cookies decide), signed with the app's keys like every cookie of ours.
  ctx.cookies.set(COOKIE, `${device}.${account}.${issuedAt}`, {
    signed: true, httpOnly: true, sameSite: 'lax', path: COOKIE_PATH, maxAge: TRUSTED_DEVICE_SECONDS * 1000, overwrite: true,
  });
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
  ctx.cookies.set(COOKIE, null, { signed: true, path: COOKIE_PATH, overwrite: true });
}
