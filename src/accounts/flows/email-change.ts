// The two emailed links of a change of email address: the new address's confirms the change (and the previous
// address is told, with a way back), the previous address's undoes it and shuts out whoever made it, who knew
// the password and may have left ways back in.
import type { Logger } from 'pino';
import type { AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { MailQueue } from '../../mail/queue.ts';
import type { AccountTokenCheck, AccountTokens } from '../account-tokens.ts';
import type { SecondFactorService } from '../second-factor.ts';
import { AccountError, normalizeEmail, type User, type UserService } from '../users.ts';
import type { AccountLinks, Notice, RequestOrigin, SessionEnder } from './dependencies.ts';

export interface EmailChangeDependencies {
  users: Pick<UserService, 'findById' | 'findByEmail' | 'changeEmail'>;
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
  /** How long the new address's confirmation link works (EMAIL_VERIFICATION_TTL). */
  confirmTtlSeconds: number;
  /** How long the previous address's undo link works (EMAIL_CHANGE_UNDO_TTL). */
  undoTtlSeconds: number;
  /** How long a reset link works (PASSWORD_RESET_TTL): an undone change is followed by a new password. */
  resetTtlSeconds: number;
  /** "in 7 days": how the undo link's lifetime reads in the notice. */
  inWords(seconds: number): string;
}

/**
 * A change asked for: the work to do after the door's answer, each piece on its own (a link that cannot be
 * sent must not cost the audit record, nor the notice to the current address). The answer is the same whether
 * or not another account has the address, and goes before the lookup, so its timing says nothing either.
 */
export interface EmailChangeRequest {
  /** Mails the confirmation link to the new address, unless another account has it. */
  link: Notice;
  /** The audit record: requested, or refused as email_taken. */
  audit: Notice;
  /** Tells the current address: if this was not its owner, they should act now. */
  notice: Notice;
}

export type EmailChangeLinkCheck = { ok: true; user: User; newEmail: string } | { ok: false; reason: 'link_invalid' };

export type EmailChangeConfirmation =
  /** `notice`: the mail to the previous address (with the undo link), for the door to send after its answer. */
  | { ok: true; user: User; previousEmail: string; notice: Notice }
  | { ok: false; reason: 'link_invalid' }
  /** The link did its work already (another submission of the same form, a double click, got there first). */
  | { ok: false; reason: 'link_used'; user: User }
  /** Another account took the address since the change was asked for: `user` keeps its address. */
  | { ok: false; reason: 'email_taken'; user: User; newEmail: string };

export type EmailRestoreLinkCheck = { ok: true; user: User; previousEmail: string } | { ok: false; reason: 'link_invalid' };

export type EmailRestoration =
  /** `resetToken`: a reset link's token, as the password is still the one whoever made the change knew. */
  | { ok: true; user: User; replacedEmail: string; secondFactorRemoved: boolean; sessionsEnded: number; grantsRevoked: number; resetToken: string }
  | { ok: false; reason: 'link_invalid' }
  /** The link did its work already: the address is back. */
  | { ok: false; reason: 'link_used'; user: User }
  | { ok: false; reason: 'email_taken'; previousEmail: string };

export interface EmailChangeFlow {
  /** A signed-in person asks to move the account to `newEmail` (normalized, checked; the door asked the password). */
  request(user: User, newEmail: string, request: RequestOrigin): EmailChangeRequest;
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
  const { users, accountTokens, secondFactor, accountSessions, auditTrail, mail, links, clock, logger, confirmTtlSeconds, undoTtlSeconds, resetTtlSeconds, inWords } = dependencies;

  /** The account and new address of a link still good, for an account that may still use it; or whose it was, used. */
  async function changeOfLink(token: string): Promise<{ user: User; newEmail: string } | { usedBy: User } | undefined> {
    const link = await accountTokens.peek(token, 'change_email');
    if (!link.ok) return accountOfUsedLink(link);
    const user = await users.findById(link.userId);
    return user && !user.disabled ? { user, newEmail: normalizeEmail(link.email) } : undefined;
  }

  /** The account and previous address of an undo link still good, for an account that may still use it; or whose it was, used. */
  async function restoreOfLink(token: string): Promise<{ user: User; previousEmail: string } | { usedBy: User } | undefined> {
    const link = await accountTokens.peek(token, 'restore_email');
    if (!link.ok) return accountOfUsedLink(link);
    const user = await users.findById(link.userId);
    return user && !user.disabled ? { user, previousEmail: normalizeEmail(link.email) } : undefined;
  }

  /** The account a used link did its work for: still at the address the link moved it to, and not disabled. */
  async function accountOfUsedLink(link: Extract<AccountTokenCheck, { ok: false }>): Promise<{ usedBy: User } | undefined> {
    if (link.reason !== 'used') return undefined;
    const user = await users.findById(link.userId);
    return user && !user.disabled && user.email === normalizeEmail(link.email) ? { usedBy: user } : undefined;
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

  /**
   * The notice to the address a change left, with the way back when it may have one: the link hands the account to
   * whoever reads the address, so it goes only to an address its owner confirmed (one typed at sign-up and never
   * confirmed may be a stranger's), and only to the first address of a run of changes (a link already out stays the
   * one that works: the change it undoes left the address the owner surely had, and no later address replaces it).
   * Without a link the notice still goes, and says where the way back is, if anywhere: a password reset would not
   * help, as the address no longer belongs to the account.
   */
  function changedNotice(previous: User, updated: User, changedAt: Date): Notice {
    return async () => {
      const wayBack = previous.emailVerified ? await undoLink(previous) : 'none';
      return mail.deliver({
        to: previous.email, template: 'email-changed',
        data: {
          // As in the notice of the request: an address never confirmed is not told where the account went.
          ...(previous.emailVerified ? { newEmail: updated.email } : {}), changedAt,
          ...(wayBack === 'sent_earlier' ? { undoSentEarlier: true } : {}),
          ...(typeof wayBack === 'object' ? { undo: wayBack } : {}),
        },
      });
    };
  }

  /** A new undo link for the address; 'sent_earlier' while one is out; 'none' when the database failed to make one. */
  async function undoLink(previous: User): Promise<{ link: string; expiresIn: string } | 'sent_earlier' | 'none'> {
    try {
      const token = await accountTokens.issueUnlessPending(previous.id, 'restore_email', previous.email, undoTtlSeconds);
      return token ? { link: links.restoreEmail(token), expiresIn: inWords(undoTtlSeconds) } : 'sent_earlier';
    } catch (error) {
      // The notice matters more than its link: it still goes.
      logger.error({ err: error, accountId: previous.id }, 'email change undo link not issued; the notice goes without it');
      return 'none';
    }
  }

  return {
    request(user, newEmail, request) {
      const requestedAt = clock.now();
      let lookup: Promise<boolean> | undefined;
      const addressTaken = () => (lookup ??= users.findByEmail(newEmail).then((owner) => owner !== null));
      return {
        async link() {
          // A new request ends the one before it whether or not the address is free: were an earlier link to live
          // on for a taken address only, it would tell the person whose address that is.
          if (await addressTaken()) {
            await accountTokens.revoke(user.id, 'change_email');
            return;
          }
          const token = await accountTokens.issue(user.id, 'change_email', newEmail, confirmTtlSeconds);
          await mail.deliver({
            to: newEmail, template: 'confirm-email-change',
            data: { link: links.confirmEmailChange(token), expiresInMinutes: Math.max(1, Math.ceil(confirmTtlSeconds / 60)) },
          });
        },
        async audit() {
          const taken = await addressTaken();
          await auditTrail.record({
            action: 'email_change.requested', outcome: taken ? 'failure' : 'success',
            subjectUserId: user.id, subjectEmail: user.email, ip: request.ip, userAgent: request.userAgent,
            detail: { newEmail, ...(taken ? { reason: 'email_taken' } : {}) },
          });
        },
        // An address never confirmed may be a stranger's (a typo at sign-up, or one someone signed up with to
        // reach its owner): it is not told the new address, which is also text someone typed for it to read.
        notice: () => mail.deliver({
          to: user.email, template: 'email-change-requested',
          data: { ...(user.emailVerified ? { newEmail } : {}), requestedAt, link: links.forgotPassword },
        }),
      };
    },

    async checkConfirmLink(token) {
      const change = await changeOfLink(token);
      return change && 'user' in change ? { ok: true, ...change } : { ok: false, reason: 'link_invalid' };
    },

    async confirm(token, request) {
      const found = await changeOfLink(token);
      if (found && 'usedBy' in found) {
        await auditTrail.record({ action: 'email.changed', outcome: 'failure', subjectUserId: found.usedBy.id, subjectEmail: found.usedBy.email, ...request, detail: { reason: 'link_used' } });
        return { ok: false, reason: 'link_used', user: found.usedBy };
      }
      const change = found;
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
      // A reset link sent to the address the account left dies with the change: it would work again, were the
      // account to come back to that address later (each link is checked against the account's address).
      await accountTokens.revoke(user.id, 'reset_password');
      await auditTrail.record({ action: 'email.changed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...request, detail: { previousEmail: user.email } });
      return { ok: true, user: updated, previousEmail: user.email, notice: changedNotice(user, updated, clock.now()) };
    },

    async checkRestoreLink(token) {
      const restore = await restoreOfLink(token);
      return restore && 'user' in restore ? { ok: true, ...restore } : { ok: false, reason: 'link_invalid' };
    },

    async restore(token, request) {
      const found = await restoreOfLink(token);
      if (found && 'usedBy' in found) {
        await auditTrail.record({ action: 'email.restored', outcome: 'failure', subjectUserId: found.usedBy.id, subjectEmail: found.usedBy.email, ...request, detail: { reason: 'link_used' } });
        return { ok: false, reason: 'link_used', user: found.usedBy };
      }
      const restore = found;
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
