// One rule for TTLs shared by every Store implementation, so the in-process store expires things
// exactly when Redis would (Redis EXPIRE only takes whole seconds).

/**
 * Whole seconds a record or index lives. A TTL that is zero, negative or not a number is a bug in
 * the caller: Redis would delete the key (or reject the command), so refuse it loudly instead.
 */
export function wholeSecondsTtl(ttlSeconds: number): number {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw new RangeError(`store TTL must be a positive number of seconds, got ${ttlSeconds}`);
  }
  return Math.ceil(ttlSeconds);
}
