// Creating an account (the sign-up page now): the account, unverified, and its verification link; or, for an
// address that has an account, a notice to its owner instead. Both answers are the same to whoever asked, and
// no sign-in follows: the address's owner is told by email.
import type { AuditTrail } from '../../audit/audit.ts';
import type { MailQueue } from '../../mail/queue.ts';
import { AccountError, normalizeEmail, type User, type UserService } from '../users.ts';
import { nameProblem } from '../../text.ts';
import type { AccountLinks, Notice, RequestOrigin } from './dependencies.ts';
import type { EmailVerificationFlow } from './email-verification.ts';

export interface SignUpDependencies {
  users: Pick<UserService, 'create' | 'findByEmail'>;
  emailVerification: Pick<EmailVerificationFlow, 'sendLink'>;
  auditTrail: Pick<AuditTrail, 'record'>;
  /** The notice to a registered address waits in the queue while the mail server is down. */
  mail: Pick<MailQueue, 'deliver'>;
  /** `account`, in the "you already have an account" notice: where its owner signs in. */
  links: Pick<AccountLinks, 'account'>;
}

export interface SignUpRequest {
  name: string;
  email: string;
  password: string;
}

/** Where the sign-up came from, for the audit trail: the request and the client whose sign-in page it was. */
export type SignUpOrigin = RequestOrigin & { clientId?: string | undefined };

export type SignUp =
  /**
   * The same for a new and a registered address: `email`, the address as normalized. `notice`: the audit record
   * and the mail (the link, or the notice to the owner), for the door to run after its answer, so that neither
   * the answer nor its timing tells the two apart. `created`: which it was, for the door's log only.
   */
  | { ok: true; email: string; created: boolean; notice: Notice }
  | { ok: false; reason: 'invalid_name'; problem: 'too_long' | 'control_characters' }
  | { ok: false; reason: 'invalid_email' }
  /** `problem`: the password policy's words, "must have at least 12 characters". */
  | { ok: false; reason: 'weak_password'; problem: string };

export interface SignUpFlow {
  signUp(request: SignUpRequest, origin: SignUpOrigin): Promise<SignUp>;
}

export function createSignUpFlow({ users, emailVerification, auditTrail, mail, links }: SignUpDependencies): SignUpFlow {
  /** After the answer: the new account's audit record and verification link. */
  function welcome(user: User, origin: SignUpOrigin): Notice {
    return async () => {
      await auditTrail.record({ action: 'account.created', outcome: 'success', ...origin, subjectUserId: user.id, subjectEmail: user.email, detail: { via: 'sign-up' } });
      await emailVerification.sendLink(user);
    };
  }

  /** After the answer: the registered address's owner is looked up, and told; the attempt is audited on their account. */
  function accountExists(address: string, origin: SignUpOrigin): Notice {
    return async () => {
      const owner = await users.findByEmail(address);
      if (!owner) return;
      await auditTrail.record({ action: 'account.created', outcome: 'failure', ...origin, subjectUserId: owner.id, subjectEmail: owner.email, detail: { reason: 'email_taken' } });
      await mail.deliver({ to: owner.email, template: 'account-exists', data: { link: links.account } });
    };
  }

  return {
    async signUp({ name, email, password }, origin) {
      const problem = nameProblem(name);
      if (problem) return { ok: false, reason: 'invalid_name', problem };
      const address = normalizeEmail(email);
      try {
        // The password is hashed before the address is found taken, so both outcomes take the same time.
        const user = await users.create({ email, password, ...(name ? { name } : {}) });
        return { ok: true, email: address, created: true, notice: welcome(user, origin) };
      } catch (error) {
        if (!(error instanceof AccountError) || error.code === 'invalid_name') throw error;
        if (error.code === 'invalid_email') return { ok: false, reason: 'invalid_email' };
        if (error.code === 'weak_password') return { ok: false, reason: 'weak_password', problem: error.message };
        return { ok: true, email: address, created: false, notice: accountExists(address, origin) };
      }
    },
  };
}
