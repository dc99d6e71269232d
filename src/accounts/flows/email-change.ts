// The two emailed links of a change of email address: the new address's confirms the change (and the previous
// address is told, with a way back), the previous address's undoes it and shuts out whoever made it, who knew
// the password and may have left ways back in.
import type { Logger } from 'pino';
import type { AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { AccountTokens } from '../account-tokens.ts';
import type { SecondFactorService } from '../second-factor.ts';
import { AccountError, normalizeEmail, type User, type UserService } from '../users.ts';
import type { AccountLinks, Notice, RequestOrigin, SessionEnder } from './dependencies.ts';

// The links' paths are here, as VERIFY_EMAIL_PATH is beside its flow, until the web side has one route table
// (src/account-console/email.ts serves them).
/**
 * Outside /account: the link is often opened in another browser (the new mailbox's), where nobody is
 * signed in, and it must work there; the token in it is the credential.
 */
export const CONFIRM_EMAIL_CHANGE_PATH = '/email/confirm-change';
/** The link in the notice to the previous address: puts that address back. */
export const RESTORE_EMAIL_PATH = '/email/restore';

export interface EmailChangeDependencies {
  users: Pick<UserService, 'findById' | 'changeEmail'>;
  accountTokens: Pick<AccountTokens, 'peek' | 'redeem' | 'issue' | 'issueUnlessPending' | 'revoke'>;
  secondFactor: Pick<SecondFactorService, 'removeIfEnrolledSince'>;
  accountSessions: SessionEnder;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** The notice waits in the queue while the mail server is down. */
  mail: Pick<MailQueue, 'deliver'>;
  links: AccountLinks;
  clock: Clock;
  /** A notice that goes without its undo link says why in the log. */
  logger: Pick<Logger, 'error'>;
  /** How long the previous address's undo link works (EMAIL_CHANGE_UNDO_TTL). */
  undoTtlSeconds: number;
  /** How long a reset link works (PASSWORD_RESET_TTL): an undone change is followed by a new password. */
  resetTtlSeconds: number;
  /** "in 7 days": how the undo link's lifetime reads in the notice. */
  inWords(seconds: number): string;
}

export type EmailChangeLinkCheck = { ok: true; user: User; newEmail: string } | { ok: false; reason: 'link_invalid' };

export type EmailChangeConfirmation =
  /** `notice`: the mail to the previous address (with the undo link), for the door to send after its answer. */
  | { ok: true; user: User; previousEmail: string; notice: Notice }
  | { ok: false; reason: 'link_invalid' }
  /** Another account took the address since the change was asked for: `user` keeps its address. */
  | { ok: false; reason: 'email_taken'; user: User; newEmail: string };

export type EmailRestoreLinkCheck = { ok: true; user: User; previousEmail: string } | { ok: false; reason: 'link_invalid' };

export type EmailRestoration =
  /** `resetToken`: a reset link's token, as the password is still the one whoever made the change knew. */
  | { ok: true; user: User; replacedEmail: string; secondFactorRemoved: boolean; sessionsEnded: number; grantsRevoked: number; resetToken: string }
  | { ok: false; reason: 'link_invalid' }
  | { ok: false; reason: 'email_taken'; previousEmail: string };

export interface EmailChangeFlow {
  /** The account and new address of a confirmation link, without using it (mail scanners open links too). */
  checkConfirmLink(token: string): Promise<EmailChangeLinkCheck>;
  /** Uses the new address's link: the address becomes the account's, verified. */
  confirm(token: string, request: RequestOrigin): Promise<EmailChangeConfirmation>;
  /** The account and previous address of an undo link, without using it. */
  checkRestoreLink(token: string): Promise<EmailRestoreLinkCheck>;
  /** Uses the previous address's undo link: the address comes back, and everything the change let in ends. */
  restore(token: string, request: RequestOrigin): Promise<EmailRestoration>;
}

export function createEmailChangeFlow(dependencies: EmailChangeDependencies): EmailChangeFlow {
  const { users, accountTokens, secondFactor, accountSessions, auditTrail, mail, links, clock, logger, undoTtlSeconds, resetTtlSeconds, inWords } = dependencies;

  /** The account and new address of a link still good, for an account that may still use it. */
  async function changeOfLink(token: string): Promise<{ user: User; newEmail: string } | undefined> {
    const link = await accountTokens.peek(token, 'change_email');
    if (!link.ok) return undefined;
    const user = await users.findById(link.userId);
    return user && !user.disabled ? { user, newEmail: normalizeEmail(link.email) } : undefined;
  }

  /** The account and previous address of an undo link still good, for an account that may still use it. */
  async function restoreOfLink(token: string): Promise<{ user: User; previousEmail: string } | undefined> {
    const link = await accountTokens.peek(token, 'restore_email');
    if (!link.ok) return undefined;
    const user = await users.findById(link.userId);
    return user && !user.disabled ? { user, previousEmail: normalizeEmail(link.email) } : undefined;
  }

  /** The account with this new address, or 'email_taken' when another account has it now. */
  async function moveTo(userId: string, email: string): Promise<User | null | 'email_taken'> {
    try {
      return await users.changeEmail(userId, email);
    } catch (error) {
      if (error instanceof AccountError && error.code === 'email_taken') return 'email_taken';
      throw error;
    }
  }

  /** The notice to the address a change left: the way back while there is one to offer, else a password reset. */
  function changedNotice(previous: User, updated: User, changedAt: Date): Notice {
    return async () => {
      // Only the first address of a run of changes gets a way back: a link already out stays the one that
      // works (the change it undoes left the address the owner surely had), and no later address replaces it.
      // The notice matters more than its link: without a link (the database failing now) it still goes.
      const undoToken = await accountTokens.issueUnlessPending(previous.id, 'restore_email', previous.email, undoTtlSeconds).catch((error: unknown) => {
        logger.error({ err: error, accountId: previous.id }, 'email change undo link not issued; the notice goes without it');
        return undefined;
      });
      return mail.deliver({
        to: previous.email, template: 'email-changed',
        data: {
          // As in the notice of the request: an address never confirmed is not told where the account went.
          ...(previous.emailVerified ? { newEmail: updated.email } : {}), changedAt,
          ...(undoToken
            ? { link: links.restoreEmail(undoToken), undo: { expiresIn: inWords(undoTtlSeconds) } }
            : { link: links.forgotPassword }),
        },
      });
    };
  }

  return {
    async checkConfirmLink(token) {
      const change = await changeOfLink(token);
      return change ? { ok: true, ...change } : { ok: false, reason: 'link_invalid' };
    },

    async confirm(token, request) {
      const change = await changeOfLink(token);
      const redeemed = change ? await accountTokens.redeem(token, 'change_email') : undefined;
      if (!change || !redeemed?.ok) {
        await auditTrail.record({ action: 'email.changed', outcome: 'failure', subjectUserId: change?.user.id, ...request, detail: { reason: 'link_invalid' } });
        return { ok: false, reason: 'link_invalid' };
      }
      const { user, newEmail } = change;
      const updated = await moveTo(user.id, newEmail);
      if (updated === 'email_taken') {
        await auditTrail.record({ action: 'email.changed', outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, ...request, detail: { newEmail, reason: 'email_taken' } });
        return { ok: false, reason: 'email_taken', user, newEmail };
      }
      // The account is gone since the link was checked.
      if (!updated) return { ok: false, reason: 'link_invalid' };
      await auditTrail.record({ action: 'email.changed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...request, detail: { previousEmail: user.email } });
      return { ok: true, user: updated, previousEmail: user.email, notice: changedNotice(user, updated, clock.now()) };
    },

    async checkRestoreLink(token) {
      const restore = await restoreOfLink(token);
      return restore ? { ok: true, ...restore } : { ok: false, reason: 'link_invalid' };
    },

    async restore(token, request) {
      const restore = await restoreOfLink(token);
      const redeemed = restore ? await accountTokens.redeem(token, 'restore_email') : undefined;
      if (!restore || !redeemed?.ok) {
        await auditTrail.record({ action: 'email.restored', outcome: 'failure', subjectUserId: restore?.user.id, ...request, detail: { reason: 'link_invalid' } });
        return { ok: false, reason: 'link_invalid' };
      }
      const { user, previousEmail } = restore;
      const restored = await moveTo(user.id, previousEmail);
      if (restored === 'email_taken') {
        await auditTrail.record({ action: 'email.restored', outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, ...request, detail: { previousEmail, reason: 'email_taken' } });
        return { ok: false, reason: 'email_taken', previousEmail };
      }
      if (!restored) return { ok: false, reason: 'link_invalid' };
      // Whoever made the change knew the password and may have left ways back in: links they asked for, a
      // second factor of their own (one the owner enabled before the change stays), sessions and grants.
      await accountTokens.revoke(user.id, 'change_email');
      await accountTokens.revoke(user.id, 'reset_password');
      const secondFactorRemoved = await secondFactor.removeIfEnrolledSince(user.id, redeemed.issuedAt);
      if (secondFactorRemoved) {
        await auditTrail.record({ action: 'second_factor.removed', outcome: 'success', subjectUserId: user.id, subjectEmail: restored.email, ...request, detail: { reason: 'email_restored' } });
      }
      const ended = await accountSessions.endAll(user.id, { reason: 'email_restored', request });
      await auditTrail.record({
        action: 'email.restored', outcome: 'success', subjectUserId: user.id, subjectEmail: restored.email, ...request,
        detail: { replacedEmail: user.email, sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      // The password is still the one whoever made the change knew: the next step is a new one.
      const resetToken = await accountTokens.issue(user.id, 'reset_password', restored.email, resetTtlSeconds);
      return {
        ok: true, user: restored, replacedEmail: user.email, secondFactorRemoved,
        sessionsEnded: ended.sessions, grantsRevoked: ended.grants, resetToken,
      };
    },
  };
}
