// The account workflows, one interface for every door (the web pages, the CLI, the admin API); the composition
// root (src/runtime.ts) builds each once with what it uses.
import type { AccountAdministrationFlow } from './account-administration.ts';
import type { ApplicationAccessFlow } from './application-access.ts';
import type { EmailChangeFlow } from './email-change.ts';
import type { EmailVerificationFlow } from './email-verification.ts';
import type { PasswordChangeFlow } from './password-change.ts';
import type { PasswordResetFlow } from './password-reset.ts';
import type { ReauthenticationFlow } from './reauthentication.ts';
import type { RoleAssignmentFlow } from './role-assignment.ts';
import type { SecondFactorResetFlow } from './second-factor-reset.ts';
import type { SecondFactorSettingsFlow } from './second-factor-settings.ts';
import type { SignInFlow } from './sign-in.ts';
import type { SignUpFlow } from './sign-up.ts';

export interface AccountFlows {
  /** The password, then the second factor (or its enrollment) when the sign-in needs it. */
  signIn: SignInFlow;
  /** The current password asked again before a sensitive change. */
  reauthentication: ReauthenticationFlow;
  passwordReset: PasswordResetFlow;
  passwordChange: PasswordChangeFlow;
  /** Confirming a change of email address, and undoing one. */
  emailChange: EmailChangeFlow;
  /** An administrator's reset of a person's second factor. */
  secondFactorReset: SecondFactorResetFlow;
  /** An administrator disabling or enabling an account. */
  accountAdministration: AccountAdministrationFlow;
  /** An administrator giving a person a role, or taking it away. */
  roleAssignment: RoleAssignmentFlow;
  /** A person's own second factor: confirming a setup, renewing recovery codes, turning it off. */
  secondFactorSettings: SecondFactorSettingsFlow;
  /** Creating an account, or telling a registered address's owner that someone tried. */
  signUp: SignUpFlow;
  /** Mailing, checking and using the links that verify an address. */
  emailVerification: EmailVerificationFlow;
  /** The applications a person allowed, and withdrawing one's access. */
  applicationAccess: ApplicationAccessFlow;
}
