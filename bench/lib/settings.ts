// The benchmarks' own settings, from the environment (BENCH_DURATION, BENCH_CONNECTIONS, BENCH_SOAK_MINUTES).

/** A positive number from the environment, or the default when unset; anything else ends the run, saying why. */
export function positiveSetting(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text.trim() === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    // Read before anything is started: nothing to clean up.
    process.stderr.write(`bench: ${name} must be a positive number, not "${text}"\n`);
    process.exit(2);
  }
  return value;
}
