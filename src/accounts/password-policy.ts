// Which passwords may be chosen (NIST SP 800-63B, OWASP ASVS): a length counted in code points after NFKC,
// no composition rules, nothing made of the person's own email address or name, and nothing common, breached
// or named after the service, even with look-alike characters or digits and symbols added (P@ssw0rd!, Summer2024).
import { readFileSync } from 'node:fs';
import { domainToUnicode } from 'node:url';

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
  /**
   * The issuer's host name (login.acme-corp.example). Its words, like the service's own name, are among the
   * first an attacker tries here, so a password that is one of them, lightly changed, is refused.
   */
  issuerHost: string;
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
  // First, as the most specific message: bob12345678 also begins with a listed password, but the name is what to drop.
  if (personalWords(context).some((word) => containsPersonalWord(folded, word))) {
    return { reason: 'personal', message: 'the password must not contain your email address or your name' };
  }
  const guessable = guessableBase(folded, serviceWords(options.issuerHost));
  if (guessable === 'listed') {
    return {
      reason: 'common',
      message: 'that password is on a list of common or breached passwords, or is one with a few characters changed or added: '
        + 'choose another (a few unrelated words make a strong one)',
    };
  }
  if (guessable === 'service') {
    return {
      reason: 'common',
      message: 'that password is the name or web address of this service, with a few characters changed or added: '
        + 'choose another (a few unrelated words make a strong one)',
    };
  }
  if (isRepetitionOrSequence(folded)) {
    return { reason: 'pattern', message: 'the password must not be one run of repeated or consecutive characters, like aaaaaaaa or 12345678' };
  }
  return undefined;
}

/** The service's own name: among the first words tried against it, and one people reach for when asked for a password. */
const SERVICE_NAME = 'gatehouse';

/**
 * What is left of a password once its decoration is taken off must be this long to count as a word: shorter
 * ones (abc, joe) turn up by accident in the core of good passwords.
 */
const SHORTEST_BASE = 4;

/**
 * Whether the password is a listed one or a word of this service's, as it stands or with the changes every
 * password cracker applies to its word lists first: letters typed as look-alike digits or symbols (p@ssw0rd),
 * and digits, symbols or spaces before or after (Summer2024, !letmein!, Gatehouse2024!). Only the whole password
 * is compared, so a passphrase with a listed word among others (correct horse battery staple) is not refused.
 */
function guessableBase(folded: string, serviceWordSet: ReadonlySet<string>): 'listed' | 'service' | undefined {
  const characters = [...folded];
  const count = characters.length;
  const firstLetter = characters.findIndex(isLetter);
  const lastLetter = characters.findLastIndex(isLetter);
  // Without a letter, every character is decoration and any stretch of them may be the base (!!12345678!!).
  const leadingDecoration = firstLetter === -1 ? count : firstLetter;
  const trailingDecoration = lastLetter === -1 ? count : count - 1 - lastLetter;
  const longest = Math.max(shippedLists().longest, ...[...serviceWordSet].map((word) => [...word].length));
  for (let start = 0; start <= leadingDecoration; start += 1) {
    for (let end = Math.min(count, start + longest); end >= Math.max(count - trailingDecoration, start + SHORTEST_BASE); end -= 1) {
      const base = characters.slice(start, end);
      // A digit or symbol at a cut is read as a letter only where the password itself begins or ends ($ummer2024,
      // hell0): next to decoration it is more of it, and bob1|2345678 read as "bobi" would be a word by accident.
      const readsLookAlikes = (start === 0 || isLetter(base[0]!)) && (end === count || isLetter(base.at(-1)!));
      const found = listedOrServiceWord(base.join(''), serviceWordSet, readsLookAlikes);
      if (found) return found;
    }
  }
  return undefined;
}

function listedOrServiceWord(base: string, serviceWordSet: ReadonlySet<string>, readsLookAlikes: boolean): 'listed' | 'service' | undefined {
  const { passwords, words } = shippedLists();
  if (passwords.has(base)) return 'listed';
  // Digits alone are a number, not a word in disguise: reading them as letters would match words by accident.
  const readings = readsLookAlikes && /\p{L}/u.test(base) ? LOOK_ALIKE_READINGS.map((reading) => readLookAlikes(base, reading)) : [];
  for (const candidate of new Set([base, ...readings])) {
    if (serviceWordSet.has(candidate)) return 'service';
    if (passwords.has(candidate) || words.has(candidate)) return 'listed';
  }
  return undefined;
}

/**
 * Digits and symbols typed for the letters they look like (leetspeak). 1, ! and | stand for i as often as for
 * l, so there are two readings; mixing both in one word is rare enough to leave out.
 */
const LOOK_ALIKES: Readonly<Record<string, string>> = { '0': 'o', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g', '@': 'a', '$': 's' };
const LOOK_ALIKE_READINGS: ReadonlyArray<Readonly<Record<string, string>>> = [
  { ...LOOK_ALIKES, '1': 'i', '!': 'i', '|': 'i' },
  { ...LOOK_ALIKES, '1': 'l', '!': 'l', '|': 'l' },
];

function readLookAlikes(text: string, reading: Readonly<Record<string, string>>): string {
  return [...text].map((character) => reading[character] ?? character).join('');
}

function isLetter(character: string): boolean {
  return /\p{L}/u.test(character);
}

/**
 * The service's name and the words of the issuer's host (login.acme-corp.example → login, acme-corp, acmecorp,
 * acme, corp): every label but the top-level domain and www, a hyphenated one whole, joined and in pieces, each
 * with a letter and SHORTEST_BASE characters or more. Internationalized labels are read as typed (münchen).
 */
function serviceWords(issuerHost: string | undefined): ReadonlySet<string> {
  const labels = issuerHost ? fold(domainToUnicode(issuerHost)).split('.') : [];
  if (labels.length > 1) labels.pop();
  const hostWords = labels
    .filter((label) => label !== 'www')
    .flatMap((label) => [label, label.replaceAll('-', ''), ...label.split('-')])
    .filter((word) => [...word].length >= SHORTEST_BASE && /\p{L}/u.test(word));
  return new Set([SERVICE_NAME, ...hostWords]);
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

interface ShippedLists {
  /** Common and breached passwords of 8 characters or more (common-passwords.txt). */
  passwords: ReadonlySet<string>;
  /** Common passwords of 4 to 7 letters, refused only with something changed or added (common-password-words.txt). */
  words: ReadonlySet<string>;
  /** The most code points of any entry: no longer stretch of a password can match one. */
  longest: number;
}

let shippedListsRead: ShippedLists | undefined;

/** The shipped lists (see their headers), read once on first use; they work offline. */
function shippedLists(): ShippedLists {
  if (!shippedListsRead) {
    const passwords = readList('./common-passwords.txt');
    const words = readList('./common-password-words.txt');
    const longest = [...passwords, ...words].reduce((most, entry) => Math.max(most, [...entry].length), 0);
    shippedListsRead = { passwords, words, longest };
  }
  return shippedListsRead;
}

function commonPasswords(): ReadonlySet<string> {
  return shippedLists().passwords;
}

function readList(fileName: string): ReadonlySet<string> {
  return new Set(
    readFileSync(new URL(fileName, import.meta.url), 'utf8')
      .split('\n')
      .filter((line) => line !== '' && !line.startsWith('#')),
  );
}
