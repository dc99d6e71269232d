// Proving that a person reads their email address: sends the single-use verification link and, when it
// comes back and is confirmed, marks the account's address verified (the email_verified claim). Rate limits
// stay with the HTTP layer; this module only issues, sends, checks and redeems.
import type { MailQueue } from '../mail/queue.ts';
import type { AccountTokenFailure, AccountTokens } from './account-tokens.ts';
import { normalizeEmail, type User, type UserService } from './users.ts';

export const VERIFY_EMAIL_PATH = '/verify-email';

export interface EmailVerificationOptions {
  users: UserService;
  tokens: AccountTokens;
  /** Links are sent after the page's answer: a mail server outage queues them. */
  mail: Pick<MailQueue, 'deliver'>;
  /** The server's public URL: links point at `${issuer}/verify-email`. */
  issuer: string;
  /** How long a link stays valid. */
  ttlSeconds: number;
}

export type VerificationResult =
  | { ok: true; user: User }
  /** email_changed: the link was valid, but the account's address is no longer the one it was sent to. */
  | { ok: false; reason: AccountTokenFailure | 'email_changed' };

export class EmailVerification {
  readonly #options: EmailVerificationOptions;

  constructor(options: EmailVerificationOptions) {
    this.#options = options;
  }

  /**
   * Issues a new link for the account's current address (earlier links stop working) and sends it, now or
   * once the mail server is back. Throws DependencyUnavailable when the database is down (or the mail server
   * and the store both are), MailRejected when the mail server refuses the address for good.
   */
  async sendLink(user: User): Promise<void> {
    const { tokens, mail, issuer, ttlSeconds } = this.#options;
    const token = await tokens.issue(user.id, 'verify_email', user.email, ttlSeconds);
    // The token is base64url: it needs no escaping in a query.
    const link = `${issuer}${VERIFY_EMAIL_PATH}?token=${token}`;
    await mail.deliver({
      to: user.email,
      template: 'verify-email',
      data: { link, expiresInMinutes: Math.max(1, Math.ceil(ttlSeconds / 60)) },
    });
  }

  /**
   * Whether the link would verify an address, without using it: opening a link only shows a button (mail
   * scanners and link previews open links too); pressing the button calls verify().
   */
  async check(rawToken: string): Promise<VerificationResult> {
    const link = await this.#options.tokens.peek(rawToken, 'verify_email');
    if (!link.ok) return link;
    const user = await this.#options.users.findById(link.userId);
    return user && user.email === normalizeEmail(link.email) ? { ok: true, user } : { ok: false, reason: 'email_changed' };
  }

  /** Uses the link's token (once) and verifies the address it was sent to, if that is still the account's. */
  async verify(rawToken: string): Promise<VerificationResult> {
    const redeemed = await this.#options.tokens.redeem(rawToken, 'verify_email');
    if (!redeemed.ok) return redeemed;
    const user = await this.#options.users.markEmailVerified(redeemed.userId, redeemed.email);
    return user ? { ok: true, user } : { ok: false, reason: 'email_changed' };
  }
}
