// Password reset by emailed link, for people who cannot sign in: sending the link, and using it, which sets
// the new password and closes every way in that did not need it (sessions, grants, a pending change of address,
// a second factor someone may have set up before the address was proved).
import type { AuditActor, AuditTrail } from '../../audit/audit.ts';
import type { Clock } from '../../clock.ts';
import type { Delivered, MailQueue } from '../../mail/queue.ts';
import type { AccountTokens } from '../account-tokens.ts';
import type { SecondFactorService } from '../second-factor.ts';
import { normalizeEmail, type User, type UserService } from '../users.ts';
import type { AccountLinks, Notice, RequestOrigin, SessionEnder } from './dependencies.ts';

export interface PasswordResetDependencies {
  users: Pick<UserService, 'findByEmail' | 'findById' | 'setPassword'>;
  accountTokens: Pick<AccountTokens, 'issue' | 'peek' | 'redeem' | 'revoke'>;
  secondFactor: Pick<SecondFactorService, 'removeForAccountRecovery'>;
  accountSessions: SessionEnder;
  /** The sign-in lockout (src/limits/login-guard.ts): reading the address's mail outweighs the guesses it counted. */
  loginLockout: { forgive(email: string): Promise<void> };
  /**
   * The second factor's lockout (src/limits/second-factor-guard.ts): whoever guessed codes knew the old password,
   * and cannot reach the code step any more; the owner, with the new one, must not find it locked.
   */
  secondFactorLockout: { forgive(accountId: string): Promise<void> };
  auditTrail: Pick<AuditTrail, 'record'>;
  /** Links and notices wait in the queue while the mail server is down. */
  mail: Pick<MailQueue, 'deliver'>;
  links: Pick<AccountLinks, 'forgotPassword' | 'resetPassword'>;
  clock: Clock;
  /** How long a reset link works (PASSWORD_RESET_TTL). */
  linkTtlSeconds: number;
}

export type ResetLinkRequest =
  | { ok: true; user: User; delivered: Delivered }
  /** Nothing was sent: a disabled account gets no link, as a new password would not let it sign in. */
  | { ok: false; reason: 'unknown_email' | 'account_disabled' };

export type ResetLinkCheck = { ok: true; user: User } | { ok: false; reason: 'link_invalid' };

export interface PasswordResetInput<PasswordErrors> {
  token: string;
  password: string;
  /**
   * The door's check of the new password as typed (the policy, a confirmation field), run once the link is
   * known good because the policy needs the account's address and name. Errors refuse the password and leave
   * the link usable, so the person can try another one.
   */
  newPasswordErrors(account: User): PasswordErrors | undefined;
}

export type PasswordResetCompletion<PasswordErrors> =
  /** `notice`: the "password changed" mail, for the door to send after its answer. */
  | { ok: true; user: User; secondFactorRemoved: boolean; sessionsEnded: number; grantsRevoked: number; notice: Notice }
  | { ok: false; reason: 'link_invalid' }
  /** The link did set a password (another submission of the same form, a double click, got there first). */
  | { ok: false; reason: 'link_used' }
  | { ok: false; reason: 'password_refused'; user: User; errors: PasswordErrors };

export interface PasswordResetFlow {
  /**
   * Issues a link for the account with this (normalized) address and mails it, now or once the mail server is
   * back. Audited either way, as the act of `actor` when an administrator sent it (the person's own otherwise).
   * Throws when the mail cannot even be queued (audited as mail_not_sent first).
   */
  requestLink(email: string, request: RequestOrigin, actor?: AuditActor): Promise<ResetLinkRequest>;
  /** The account a link is for, without using the link (mail scanners open links before people do). */
  checkLink(token: string): Promise<ResetLinkCheck>;
  /** Uses the link (once) to set the new password, then ends everything the old one may have opened. */
  complete<PasswordErrors>(input: PasswordResetInput<PasswordErrors>, request: RequestOrigin): Promise<PasswordResetCompletion<PasswordErrors>>;
}

export function createPasswordResetFlow(dependencies: PasswordResetDependencies): PasswordResetFlow {
  const { users, accountTokens, secondFactor, accountSessions, loginLockout, secondFactorLockout, auditTrail, mail, links, clock, linkTtlSeconds } = dependencies;

  /**
   * The account a reset link is for, if the link is still good and still goes to the account's address; a link
   * used already is told apart (link_used, with its account) only on the same terms.
   */
  async function accountOfLink(token: string): Promise<{ user: User } | { reason: 'link_used'; user: User } | { reason: 'link_invalid' }> {
    const link = await accountTokens.peek(token, 'reset_password');
    if (!link.ok && link.reason !== 'used') return { reason: 'link_invalid' };
    const user = await users.findById(link.userId);
    // A link sent to an address the account no longer has proves nothing about the person now reading it.
    if (!user || user.disabled || user.email !== normalizeEmail(link.email)) return { reason: 'link_invalid' };
    return link.ok ? { user } : { reason: 'link_used', user };
  }

  return {
    async requestLink(email, request, actor) {
      const user = await users.findByEmail(email);
      if (!user || user.disabled) {
        const reason = user ? 'account_disabled' : 'unknown_email';
        await auditTrail.record({ action: 'password_reset.requested', outcome: 'failure', actor, subjectEmail: email, subjectUserId: user?.id, ...request, detail: { reason } });
        return { ok: false, reason };
      }
      const token = await accountTokens.issue(user.id, 'reset_password', user.email, linkTtlSeconds);
      let delivered: Delivered;
      try {
        delivered = await mail.deliver({
          to: user.email, template: 'reset-password',
          data: { link: links.resetPassword(token), expiresInMinutes: Math.max(1, Math.ceil(linkTtlSeconds / 60)) },
        });
      } catch (error) {
        await auditTrail.record({ action: 'password_reset.requested', outcome: 'failure', actor, subjectEmail: user.email, subjectUserId: user.id, ...request, detail: { reason: 'mail_not_sent' } });
        throw error;
      }
      await auditTrail.record({
        action: 'password_reset.requested', outcome: 'success', actor, subjectEmail: user.email, subjectUserId: user.id, ...request,
        ...(delivered === 'queued' ? { detail: { mail: 'queued' } } : {}),
      });
      return { ok: true, user, delivered };
    },

    async checkLink(token) {
      const link = await accountOfLink(token);
      return 'reason' in link ? { ok: false, reason: 'link_invalid' } : { ok: true, user: link.user };
    },

    async complete({ token, password, newPasswordErrors }, request) {
      const link = await accountOfLink(token);
      if ('reason' in link) {
        const about = 'user' in link ? { subjectUserId: link.user.id, subjectEmail: link.user.email } : {};
        await auditTrail.record({ action: 'password_reset.completed', outcome: 'failure', ...about, ...request, detail: { reason: link.reason } });
        return { ok: false, reason: link.reason };
      }
      const { user } = link;
      const errors = newPasswordErrors(user);
      if (errors !== undefined) return { ok: false, reason: 'password_refused', user, errors };
      // Exactly one of two concurrent submissions gets past this with the link.
      const redeemed = await accountTokens.redeem(token, 'reset_password');
      if (!redeemed.ok || redeemed.userId !== user.id) {
        const reason = !redeemed.ok && redeemed.reason === 'used' ? 'link_used' : 'link_invalid';
        await auditTrail.record({ action: 'password_reset.completed', outcome: 'failure', subjectUserId: user.id, subjectEmail: user.email, ...request, detail: { reason } });
        return { ok: false, reason };
      }
      // The link proved the person reads the address it went to: the address is verified too.
      const updated = await users.setPassword(user.id, password, { confirmedEmail: redeemed.email });
      // The account is gone since the link was checked.
      if (!updated) return { ok: false, reason: 'link_invalid' };
      const changedAt = clock.now();
      // The password is new before anything old is ended, so no session can start with the old one after.
      await accountTokens.revoke(user.id, 'change_email');
      // Before this link nobody had proved they read the address: whoever signed up with it may have enrolled
      // a second factor of their own, which would keep the owner out (or be a way in for that someone).
      const secondFactorRemoved = !user.emailVerified && await secondFactor.removeForAccountRecovery(user.id);
      if (secondFactorRemoved) {
        await auditTrail.record({ action: 'second_factor.removed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...request, detail: { reason: 'password_reset_unverified_email' } });
      }
      const ended = await accountSessions.endAll(user.id, { reason: 'password_reset', request });
      await loginLockout.forgive(updated.email);
      await secondFactorLockout.forgive(user.id);
      await auditTrail.record({
        action: 'password_reset.completed', outcome: 'success', subjectUserId: user.id, subjectEmail: updated.email, ...request,
        detail: { sessionsEnded: ended.sessions, grantsRevoked: ended.grants },
      });
      return {
        ok: true, user: updated, secondFactorRemoved, sessionsEnded: ended.sessions, grantsRevoked: ended.grants,
        notice: () => mail.deliver({ to: updated.email, template: 'password-changed', data: { changedAt, link: links.forgotPassword } }),
      };
    },
  };
}
