// Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core, a fresh
// profile for every browser. Without Chromium a test fails in CI (CI set) and is skipped, saying why, elsewhere.
// Also what browser tests share: the example apps, watching a page for problems, the phone-width check.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startExample } from '../../examples/spa/server.ts';
import { findFreePort } from './redis.ts';
import type { TestServer } from './server.ts';

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

/** A phone's width (iPhone 12–15): the pages must fit it without scrolling sideways. */
export const PHONE = { width: 390, height: 844 };
/** Set E2E_SCREENSHOTS to a directory to keep screenshots of Gatehouse's pages at phone width. */
const SCREENSHOTS = process.env.E2E_SCREENSHOTS;

/** The example SPA and API (examples/), registered as clients of the test server, closed after the test. */
export async function startExampleApps(t: ExecutionContext, server: TestServer) {
  // The SPA's redirect URI names its port, and the SPA's config names its client: pick the port first.
  const port = await findFreePort();
  const spaOrigin = `http://127.0.0.1:${port}`;
  const spaClient = await server.runtime.clients.create({
    name: 'Example SPA', type: 'spa', redirectUris: [`${spaOrigin}/callback`], postLogoutRedirectUris: [`${spaOrigin}/`],
  });
  const apiClient = await server.runtime.clients.create({ name: 'Example API', type: 'service' });
  const example = await startExample({
    issuer: server.issuer, clientId: spaClient.client_id, apiClientId: apiClient.client_id, apiClientSecret: String(apiClient.client_secret), port,
  });
  t.teardown(() => example.close());
  t.is(example.origin, spaOrigin);
  return { example, spaOrigin, spaClient, apiClient };
}

/** Collects console errors (but the expected ones), uncaught exceptions, failed requests and error responses seen by the page. */
export function watchForProblems(page: Page) {
  const consoleErrors: string[] = [];
  const failedRequests: string[] = [];
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const error = `${message.text()} (${message.location().url})`;
    consoleErrors.push(error);
  });
  page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
  page.on('requestfailed', (request) => {
    failedRequests.push(`${request.method()} ${request.url()}: ${request.failure()?.errorText ?? 'failed'}`);
  });
  page.on('response', (response) => {
    if (response.status() >= 400) failedRequests.push(`${response.request().method()} ${response.url()}: ${response.status()}`);
  });
  return { consoleErrors, failedRequests };
}

/** The page has no sideways scrolling at phone width; with E2E_SCREENSHOTS set, also keeps a screenshot. */
export async function fitsPhone(t: ExecutionContext, page: Page, name: string): Promise<void> {
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  t.true(width <= PHONE.width, `the ${name} is ${width}px wide, wider than a ${PHONE.width}px phone`);
  if (SCREENSHOTS) {
    const file = path.join(SCREENSHOTS, `${name.replaceAll(/[^a-z0-9]+/gi, '-')}.png`);
    await page.screenshot({ path: file, fullPage: true });
    t.log(`screenshot: ${file}`);
  }
}

/**
 * An app of the test's own on a free loopback port, closed after the test: its origin (for the client's
 * redirect URIs), and its server, to which the test adds its request handler once it knows what to serve.
 */
export async function startLoopbackApp(t: ExecutionContext): Promise<{ origin: string; app: Server }> {
  const app = createServer();
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => app.close(() => resolve())));
  return { origin: `http://127.0.0.1:${(app.address() as AddressInfo).port}`, app };
}
