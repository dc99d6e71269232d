// What one engine request reads once however many of its steps ask: the engine asks for the person behind a token
// when it finds the account, for the token's claims and for their permissions at an API, and introspection asks
// again; each is the same read, of the same moment.

const answers = new WeakMap<object, Map<string, Promise<unknown>>>();

/** `load()`'s answer for `key`, read once per request: every later ask in the same request gets the same promise. */
export function oncePerRequest<Value>(request: object, key: string, load: () => Promise<Value>): Promise<Value> {
  let known = answers.get(request);
  if (!known) {
    known = new Map();
    answers.set(request, known);
  }
  let answer = known.get(key) as Promise<Value> | undefined;
  if (!answer) {
    answer = load();
    known.set(key, answer);
  }
  return answer;
}
