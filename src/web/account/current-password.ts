// The current password asked again on the console's pages (the reauthentication flow), from this browser: its
// trusted-device cookie, when it has one, gives it the lockout of its own the login form gives it.
import type { Context } from 'koa';
import type { ReauthenticationFlow, ReauthenticationPurpose } from '../../accounts/flows/reauthentication.ts';
import type { User } from '../../accounts/users.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { forgetThisDevice, trustedDeviceFor } from '../kit/trusted-device.ts';

/**
 * Whether `password` is the person's (an empty one is not, uncounted); a refusal (over a limit, locked out) is thrown
 * as the 429 page saying that `action` ("changing your password") is paused.
 */
export async function checkCurrentPassword(
  ctx: Context, reauthentication: ReauthenticationFlow, user: Pick<User, 'id' | 'email'>, password: string, purpose: ReauthenticationPurpose, action: string,
): Promise<boolean> {
  // An empty field is a slip, not a guess: it is not counted (nor audited) on any of the console's forms.
  if (!password) return false;
  const request = { ip: ctx.ip, userAgent: ctx.get('user-agent'), device: trustedDeviceFor(ctx, user.email) };
  const check = await reauthentication.checkPassword(user, password, purpose, request);
  if (check.ok) return true;
  if (!check.refusal) return false;
  // A trusted device's lock ends its trust, as at the login form.
  if (check.untrustDevice) forgetThisDevice(ctx);
  throw new TooManyAttempts(check.refusal, { action });
}
