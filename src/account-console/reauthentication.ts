// The current password asked again before a sensitive change (password, email, second factor). A
// borrowed, signed-in browser must not become a way to guess it: each check is counted per account
// (never forgiven), a wrong one counts toward the sign-in lockout like a failed login, and is audited.
import type { Context } from 'koa';
import type { User } from '../accounts/users.ts';
import type { Refusal } from '../http/pages.ts';
import type { Runtime } from '../runtime.ts';

export type PasswordCheck =
  | { ok: true }
  /** `refusal`: over a limit or locked out (show the 429 page); otherwise the password was wrong or missing. */
  | { ok: false; refusal?: Refusal };

/** Checks `password` against the signed-in person's; `purpose` names the change in the audit trail. */
export async function checkCurrentPassword(
  runtime: Runtime,
  ctx: Context,
  user: Pick<User, 'id' | 'email'>,
  password: string,
  purpose: 'change_password' | 'change_email' | 'enable_second_factor' | 'disable_second_factor',
): Promise<PasswordCheck> {
  const { limits, users, auditTrail } = runtime;
  const perAccount = await limits.rates.consume('password-check-account', user.id);
  if (!perAccount.allowed) return { ok: false, refusal: perAccount };
  // The same counters as the login form: a locked account refuses the right password here too.
  const attempt = { email: user.email, ip: ctx.ip };
  const seen = { subjectUserId: user.id, subjectEmail: user.email, ip: ctx.ip, userAgent: ctx.get('user-agent') };
  const before = await limits.login.beforeAttempt(attempt);
  if (!before.allowed) {
    if (before.lockedNow) await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seen, detail: { seconds: before.retryAfterSeconds, during: purpose } });
    return { ok: false, refusal: before };
  }
  if (password && await users.verifyPassword(user.id, password)) {
    await limits.login.afterSuccess(attempt);
    return { ok: true };
  }
  const after = await limits.login.afterFailure(attempt);
  await auditTrail.record({ action: 'reauthentication.failed', outcome: 'failure', ...seen, detail: { purpose } });
  if (!after.allowed && after.lockedNow) {
    await auditTrail.record({ action: 'login.locked_out', outcome: 'failure', ...seen, detail: { seconds: after.retryAfterSeconds, during: purpose } });
  }
  return after.allowed ? { ok: false } : { ok: false, refusal: after };
}
