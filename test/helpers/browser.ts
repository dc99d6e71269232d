// Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core, a fresh
// profile for every browser. Without Chromium a test fails in CI (CI set) and is skipped, saying why, elsewhere.
import { accessSync, constants } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** The flags the machines need (see ENVIRONMENT.md); Playwright adds an empty temporary --user-data-dir itself. */
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}

/** Why Chromium cannot run here, or undefined when it can. */
export function chromiumUnavailable(): string | undefined {
  try {
    accessSync(CHROMIUM_PATH, constants.X_OK);
    return undefined;
  } catch {
    return `${CHROMIUM_PATH} is missing; install it with \`apt-get install -y chromium\` (.ci/run does)`;
  }
}

function runningInCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci !== 'false';
}

/**
 * Declares an ava test that gets a freshly launched Chromium, closed afterwards, and options.timeoutMs to run. When Chromium is missing
 * it never passes quietly: it fails in CI and is reported as skipped, with the reason, everywhere else.
 */
export function browserTest(
  title: string,
  options: { timeoutMs: number },
  implementation: (t: ExecutionContext, browser: Browser) => Promise<void>,
): void {
  const unavailable = chromiumUnavailable();
  if (unavailable && runningInCi()) {
    test(title, (t) => {
      t.fail(`the browser test cannot run: ${unavailable}`);
    });
    return;
  }
  if (unavailable) {
    console.warn(`browser test skipped: ${unavailable}`);
    test.skip(`${title} [skipped: ${unavailable}]`, () => {});
    return;
  }
  test(title, async (t) => {
    // A whole journey through real pages takes seconds, not ava's default handful.
    t.timeout(options.timeoutMs);
    const browser = await launchChromium();
    t.teardown(() => browser.close());
    await implementation(t, browser);
  });
}
