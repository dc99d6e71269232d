// Which passwords may be chosen (NIST SP 800-63B, OWASP ASVS): a length counted in code points after NFKC,
// no composition rules, and nothing common, breached, or made of the person's own email address or name.
import { readFileSync } from 'node:fs';

/** The floor: PASSWORD_MIN_LENGTH may raise the minimum, never lower it. */
export const MINIMUM_PASSWORD_LENGTH = 8;
/**
 * NIST asks that at least 64 be accepted and the issue 128; 256 leaves room for generated passphrases,
 * and argon2 costs the same for any length, so the cap only bounds what a request can make us hash.
 */
export const MAXIMUM_PASSWORD_LENGTH = 256;

export interface PasswordPolicyOptions {
  /** Raised to MINIMUM_PASSWORD_LENGTH if lower. */
  minimumLength: number;
}

/** The shortest password the policy accepts: the configured minimum, never below the floor. Pages show it. */
export function minimumPasswordLength(options: Partial<PasswordPolicyOptions> = {}): number {
  return Math.max(MINIMUM_PASSWORD_LENGTH, options.minimumLength ?? MINIMUM_PASSWORD_LENGTH);
}

/** What is known about the person choosing the password; the reset and change flows pass the same. */
export interface PasswordContext {
  email?: string;
  name?: string | null;
}

export interface PasswordProblem {
  reason: 'length' | 'common' | 'pattern' | 'personal';
  /** Says what to change, for the person; never repeats the password. */
  message: string;
}

/** The one canonical form of a password, for the policy and the hasher alike: the same password typed on two keyboards matches. */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}

/** Length as a person counts it: code points of the normalized form (an emoji is one, a composed or decomposed é is one). */
export function passwordLength(password: string): number {
  return [...normalizePassword(password)].length;
}

/** Nothing when the password may be chosen, else the first thing to change. A pure function of its arguments. */
export function checkPassword(
  password: string,
  context: PasswordContext = {},
  options: Partial<PasswordPolicyOptions> = {},
): PasswordProblem | undefined {
  const minimum = minimumPasswordLength(options);
  const length = passwordLength(password);
  if (length < minimum || length > MAXIMUM_PASSWORD_LENGTH) {
    return { reason: 'length', message: `the password must have between ${minimum} and ${MAXIMUM_PASSWORD_LENGTH} characters` };
  }
  const folded = fold(password);
  if (commonPasswords().has(folded)) {
    return {
      reason: 'common',
      message: 'that password is on a list of common or breached passwords: choose another (a few unrelated words make a strong one)',
    };
  }
  if (isRepetitionOrSequence(folded)) {
    return { reason: 'pattern', message: 'the password must not be one run of repeated or consecutive characters, like aaaaaaaa or 12345678' };
  }
  if (personalWords(context).some((word) => containsPersonalWord(folded, word))) {
    return { reason: 'personal', message: 'the password must not contain your email address or your name' };
  }
  return undefined;
}

/**
 * A word of 4 or more characters may not appear at all. A shorter one (ada, bob, tom) is a syllable of
 * countless good passphrases, so it is refused only where it is all the password says: with nothing around
 * it but digits and symbols (bob12345678, bob2026!), or with the rest a common password or one run.
 */
function containsPersonalWord(folded: string, word: string): boolean {
  if (!folded.includes(word)) return false;
  if ([...word].length >= 4) return true;
  const rest = folded.replaceAll(word, '');
  return !/\p{L}/u.test(rest) || commonPasswords().has(rest) || isRepetitionOrSequence(rest);
}

/**
 * NIST names repetitive and sequential characters beside breached passwords; the list has some (12345678)
 * but not others (aaaaaaaa, abcdefgh) nor the longer runs (abcabcabcabc, 9876543210).
 */
function isRepetitionOrSequence(folded: string): boolean {
  if (/^(.{1,4})\1+$/su.test(folded)) return true;
  const codePoints = [...folded].map((character) => character.codePointAt(0)!);
  const step = codePoints[1]! - codePoints[0]!;
  return Math.abs(step) === 1 && codePoints.every((codePoint, index) => index === 0 || codePoint - codePoints[index - 1]! === step);
}

/**
 * Words an attacker who knows the account would try: the email's local part and its pieces (ada.lovelace →
 * lovelace), and the words of the name, of 2 characters or more (containsPersonalWord treats the short ones
 * gently).
 */
function personalWords(context: PasswordContext): string[] {
  const words: string[] = [];
  if (context.email) {
    const localPart = fold(context.email.trim().slice(0, Math.max(0, context.email.trim().lastIndexOf('@'))));
    words.push(localPart, ...localPart.split(/[.\-_+]+/));
  }
  if (context.name) words.push(...fold(context.name).split(/[\s.,\-_'’]+/));
  return words.filter((word) => [...word].length >= 2);
}

/** Case-insensitive comparison: the list is lower case, and "Password1" is as common as "password1". */
function fold(text: string): string {
  return normalizePassword(text).toLowerCase();
}

let commonPasswordSet: ReadonlySet<string> | undefined;

/** The shipped list (see the header of common-passwords.txt), read once on first use; works offline. */
function commonPasswords(): ReadonlySet<string> {
  commonPasswordSet ??= new Set(
    readFileSync(new URL('./common-passwords.txt', import.meta.url), 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#')),
  );
  return commonPasswordSet;
}
