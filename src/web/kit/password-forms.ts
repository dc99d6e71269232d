// What the pages that set a new password share (the emailed reset link's form and the account's password
// page, both around views/new-password-fields.eta): the errors of those fields.
import type { UserService } from '../../accounts/users.ts';
import { upperFirst } from './views.ts';


/** An error message per field of views/new-password-fields.eta. */
export interface NewPasswordErrors {
  password?: string;
  confirm?: string;
}

/** What is wrong with a new password typed twice, per field, or undefined. */
export function newPasswordErrors(
  users: Pick<UserService, 'passwordProblem'>,
  person: { email: string; name?: string | null },
  password: string,
  confirmation: string,
): NewPasswordErrors | undefined {
  if (!password) return { password: 'Enter a new password.' };
  const problem = users.passwordProblem(person, password);
  if (problem) return { password: `${upperFirst(problem.message)}.` };
  if (confirmation !== password) return { confirm: 'The two passwords are not the same. Type the new password again in both fields.' };
  return undefined;
}
