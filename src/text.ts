// Rules for text Gatehouse keeps, whichever door it comes in by (a page, the admin API, the CLI, dynamic registration).
// Names people read (a person's, an application's: on pages, in ID tokens and mails) are one line of bounded length.
// And no text holds U+0000 or an unpaired surrogate: PostgreSQL's jsonb refuses the whole statement for either.

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

/** What is wrong with text pathsToUnstorableText finds, after the field's name. */
export const UNSTORABLE_TEXT = 'holds a NUL character (U+0000) or an unpaired surrogate (\\ud800…\\udfff alone)';

/** Whether PostgreSQL can keep a string: text and jsonb cannot hold U+0000, and jsonb refuses an unpaired surrogate (text would keep U+FFFD instead of what was sent). */
function storable(text: string): boolean {
  return !text.includes('\u0000') && text.isWellFormed();
}

/**
 * Where in a value (a string, or arrays and objects of them, as JSON holds) a string or a key cannot be stored
 * (storable above). Walked without recursion: a small JSON body can nest thousands of levels deep.
 */
export function pathsToUnstorableText(value: unknown): PropertyKey[][] {
  const found: PropertyKey[][] = [];
  const pending: Array<{ value: unknown; path: PropertyKey[] }> = [{ value, path: [] }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value: item, path } = next;
    if (typeof item === 'string') {
      if (!storable(item)) found.push(path);
    } else if (Array.isArray(item)) {
      item.forEach((element, index) => pending.push({ value: element, path: [...path, index] }));
    } else if (item !== null && typeof item === 'object') {
      for (const [key, element] of Object.entries(item)) {
        if (storable(key)) pending.push({ value: element, path: [...path, key] });
        else found.push([...path, key]);
      }
    }
  }
  return found;
}
