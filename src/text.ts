// Rules for text Gatehouse keeps, whichever door it comes in by (a page, the admin API, the CLI, dynamic registration).
// Names people read (a person's, an application's: on pages, in ID tokens and mails) are one line of bounded length.
// And no text holds U+0000: PostgreSQL's text and jsonb cannot, and refuse the whole statement.

export const NAME_MAX_LENGTH = 200;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export type NameProblem = 'too_long' | 'control_characters';

/** What is wrong with a name, if anything. */
export function nameProblem(name: string): NameProblem | undefined {
  if (name.length > NAME_MAX_LENGTH) return 'too_long';
  if (CONTROL_CHARACTERS.test(name)) return 'control_characters';
  return undefined;
}

/** A name's problem in words, after what the name is ("a name", "client_name"). */
export function describeNameProblem(problem: NameProblem): string {
  return problem === 'too_long' ? `can have at most ${NAME_MAX_LENGTH} characters` : 'cannot contain line breaks or control characters';
}

/** Where in a value (a string, or arrays and objects of them, as JSON holds) a string or a key holds U+0000. */
export function pathsToNulCharacters(value: unknown, path: PropertyKey[] = []): PropertyKey[][] {
  if (typeof value === 'string') return value.includes('\u0000') ? [path] : [];
  if (Array.isArray(value)) return value.flatMap((item, index) => pathsToNulCharacters(item, [...path, index]));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) => (key.includes('\u0000') ? [[...path, key]] : pathsToNulCharacters(item, [...path, key])));
  }
  return [];
}
