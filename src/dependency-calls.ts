// Calls to the store and the database, measured where they are made (RedisStore, the Prisma client) and
// reported to whoever watches (the metrics): how long each took and how it ended.

/** How a call ended: answered, the dependency unreachable, or refused for another reason. */
export type CallOutcome = 'ok' | 'unavailable' | 'error';

/** Told how long one call took and how it ended. */
export type CallObserver = (outcome: CallOutcome, seconds: number) => void;

/** Runs one call, telling `observe` its time and outcome (`unavailable` when `isOutage` says so). */
export async function timed<Result>(observe: CallObserver | undefined, isOutage: (error: unknown) => boolean, call: () => Promise<Result>): Promise<Result> {
  if (!observe) return call();
  const started = performance.now();
  try {
    const result = await call();
    observe('ok', (performance.now() - started) / 1000);
    return result;
  } catch (error) {
    observe(isOutage(error) ? 'unavailable' : 'error', (performance.now() - started) / 1000);
    throw error;
  }
}
