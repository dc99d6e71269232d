// Proving that a person reads their email address: issues and mails the single-use verification link and,
// when it comes back and is confirmed, marks the account's address verified (the email_verified claim) and
// audits it. Rate limits stay with the doors; this flow only issues, sends, checks and redeems.
import type { AuditTrail } from '../../audit/audit.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { AccountTokenFailure, AccountTokens } from '../account-tokens.ts';
import { normalizeEmail, type User, type UserService } from '../users.ts';
import type { AccountLinks, RequestOrigin } from './dependencies.ts';

export interface EmailVerificationDependencies {
  users: Pick<UserService, 'findById' | 'findByEmail' | 'markEmailVerified'>;
  accountTokens: Pick<AccountTokens, 'issue' | 'peek' | 'redeem'>;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** Links are sent after the page's answer: a mail server outage queues them. */
  mail: Pick<MailQueue, 'deliver'>;
  links: Pick<AccountLinks, 'verifyEmail'>;
  /** How long a link stays valid (EMAIL_VERIFICATION_TTL). */
  linkTtlSeconds: number;
}

export type VerificationResult =
  | { ok: true; user: User }
  /**
   * email_changed: the link was valid, but the account's address is no longer the one it was sent to;
   * account_disabled: the account may not be used (as every emailed link of a disabled account is refused).
   */
  | { ok: false; reason: AccountTokenFailure | 'email_changed' | 'account_disabled' };

export type NewLinkOutcome =
  | { sent: true; user: User }
  /** Nothing was sent: no such account, or one that is disabled or already verified. */
  | { sent: false; reason: 'unknown_account' | 'account_disabled' | 'already_verified' };

export interface EmailVerificationFlow {
  /**
   * Issues a new link for the account's current address (earlier links stop working) and sends it, now or
   * once the mail server is back. Throws DependencyUnavailable when the database is down (or the mail server
   * and the store both are), MailRejected when the mail server refuses the address for good.
   */
  sendLink(user: User): Promise<void>;
  /**
   * Someone asked for a new link for an address: only an existing, enabled, unverified account gets one. The
   * door calls this after its answer, which is the same whoever owns the address.
   */
  sendNewLink(email: string): Promise<NewLinkOutcome>;
  /**
   * Whether the link would verify an address, without using it: opening a link only shows a button (mail
   * scanners and link previews open links too); pressing the button calls verify().
   */
  check(token: string): Promise<VerificationResult>;
  /** Uses the link's token (once), verifies the address it was sent to if that is still the account's, and audits it. */
  verify(token: string, request: RequestOrigin): Promise<VerificationResult>;
}

export function createEmailVerificationFlow(dependencies: EmailVerificationDependencies): EmailVerificationFlow {
  const { users, accountTokens, auditTrail, mail, links, linkTtlSeconds } = dependencies;

  async function sendLink(user: User): Promise<void> {
    const token = await accountTokens.issue(user.id, 'verify_email', user.email, linkTtlSeconds);
    await mail.deliver({
      to: user.email,
      template: 'verify-email',
      data: { link: links.verifyEmail(token), expiresInMinutes: Math.max(1, Math.ceil(linkTtlSeconds / 60)) },
    });
  }

  return {
    sendLink,

    async sendNewLink(email) {
      const user = await users.findByEmail(email);
      if (!user) return { sent: false, reason: 'unknown_account' };
      if (user.disabled) return { sent: false, reason: 'account_disabled' };
      if (user.emailVerified) return { sent: false, reason: 'already_verified' };
      await sendLink(user);
      return { sent: true, user };
    },

    async check(token) {
      const link = await accountTokens.peek(token, 'verify_email');
      if (!link.ok) return { ok: false, reason: link.reason };
      const user = await users.findById(link.userId);
      if (!user || user.email !== normalizeEmail(link.email)) return { ok: false, reason: 'email_changed' };
      return user.disabled ? { ok: false, reason: 'account_disabled' } : { ok: true, user };
    },

    async verify(token, request) {
      const redeemed = await accountTokens.redeem(token, 'verify_email');
      if (!redeemed.ok) return { ok: false, reason: redeemed.reason };
      const user = await users.markEmailVerified(redeemed.userId, redeemed.email);
      if (!user) return { ok: false, reason: (await users.findById(redeemed.userId))?.disabled ? 'account_disabled' : 'email_changed' };
      await auditTrail.record({ action: 'email.verified', outcome: 'success', subjectUserId: user.id, subjectEmail: user.email, ...request });
      return { ok: true, user };
    },
  };
}
