// The page for a second factor that cannot be checked (its sealed secret opens with no configured key): a 503
// for the person, an error line for the operator. Used by the sign-in's step and the account console alike.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { SecondFactorUnreadable } from '../../accounts/second-factor.ts';

/** A second factor that cannot be checked: not the person's doing, and someone knows. */
const UNREADABLE_SECRET_PAGE = {
  title: 'Two-factor authentication is unavailable',
  message: 'Two-factor authentication cannot be checked right now; the administrator has been told. Please try again later.',
} as const;

/**
 * Middleware for routes that check a second factor whose sealed secret no configured key opens: the person
 * gets a 503 page from `showPage`, the operator an error line naming the account and the cause (never the
 * secret), to restore the key to ENCRYPTION_KEYS or reset the person's second factor
 * (`gatehouse users reset-second-factor`).
 */
export function unreadableSecretPage(
  logger: Pick<Logger, 'error'>, showPage: (ctx: Context, page: typeof UNREADABLE_SECRET_PAGE) => void,
): (ctx: Context, next: Next) => Promise<void> {
  return async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (!(error instanceof SecondFactorUnreadable)) throw error;
      logger.error({ accountId: error.accountId, cause: (error.cause as Error).message, path: ctx.path },
        'two-factor authentication cannot be checked: the account\'s sealed TOTP secret does not open with ENCRYPTION_KEYS');
      showPage(ctx, UNREADABLE_SECRET_PAGE);
    }
  };
}
