// What a benchmark run must undo — child processes, its database, its Redis keys, its temporary folder — undone
// in reverse order on the way out: after success, after a failure, and on Ctrl-C or SIGTERM.

interface Step {
  what: string;
  undo: () => Promise<void>;
}

export class Cleanup {
  readonly #steps: Step[] = [];
  #running: Promise<void> | undefined;

  /** Registers what undoes a thing just made; the last made is undone first. */
  add(what: string, undo: () => Promise<void>): void {
    this.#steps.push({ what, undo });
  }

  /** Undoes everything registered (once, whoever asks): a step that fails is reported and the others still run. */
  run(): Promise<void> {
    this.#running ??= (async () => {
      for (let step = this.#steps.pop(); step; step = this.#steps.pop()) {
        try {
          await step.undo();
        } catch (error) {
          process.stderr.write(`bench: could not ${step.what}: ${error instanceof Error ? error.message : String(error)}\n`);
        }
      }
    })();
    return this.#running;
  }

  /** What is left to undo, for a message when the run is interrupted a second time. */
  get pending(): string[] {
    return this.#steps.map((step) => step.what);
  }
}

/**
 * Runs a benchmark's `main` with a Cleanup that is always run, then ends the process (a load generator can leave
 * timers behind). A first Ctrl-C cleans up and exits 130; a second one exits at once, saying what was left.
 */
export async function runWithCleanup(main: (cleanup: Cleanup) => Promise<void>): Promise<never> {
  const cleanup = new Cleanup();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (interrupted) {
      const left = cleanup.pending;
      process.stderr.write(`bench: stopped before cleaning up${left.length ? `; still to ${left.join(', ')}` : ''}\n`);
      process.exit(code);
    }
    interrupted = true;
    process.stderr.write(`\nbench: ${signal}: cleaning up (again to stop at once)\n`);
    void cleanup.run().finally(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let failed = false;
  try {
    await main(cleanup);
  } catch (error) {
    failed = true;
    // After Ctrl-C, what fails is the run being taken apart under it: not worth a message.
    if (!interrupted) process.stderr.write(`bench: failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  }
  await cleanup.run();
  process.exit(failed ? 1 : 0);
}
