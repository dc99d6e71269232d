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

/** A place in a value: its key or index, under its parent's place (none for the value itself). */
interface Place {
  parent: Place | undefined;
  key: PropertyKey;
}

/**
 * Where in a value (a string, or arrays and objects of them, as JSON holds) a string or a key cannot be stored
 * (storable above). Walked without recursion and in time linear in its size: a small JSON body can nest tens of
 * thousands of levels deep, and each place's path is only spelled out when something is found there.
 */
export function pathsToUnstorableText(value: unknown): PropertyKey[][] {
  const found: Array<Place | undefined> = [];
  const pending: Array<{ value: unknown; place: Place | undefined }> = [{ value, place: undefined }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { value: item, place: parent } = next;
    if (typeof item === 'string') {
      if (!storable(item)) found.push(parent);
    } else if (Array.isArray(item)) {
      item.forEach((element, index) => pending.push({ value: element, place: { parent, key: index } }));
    } else if (item !== null && typeof item === 'object') {
      for (const [key, element] of Object.entries(item)) {
        if (storable(key)) pending.push({ value: element, place: { parent, key } });
        else found.push({ parent, key });
      }
    }
  }
  return found.map(pathOf);
}

function pathOf(place: Place | undefined): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (let at = place; at !== undefined; at = at.parent) path.push(at.key);
  return path.reverse();
}
