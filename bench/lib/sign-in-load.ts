// Password sign-ins through Gatehouse's real pages, as a browser makes them: the authorization URL (PKCE), the login
// page it leads to (cookies kept), the login form posted with its CSRF token; a redirect onward is a sign-in. And
// what argon2 alone costs, measured in this process, for the ceiling it puts on sign-ins per core.
import { PasswordHasher, type PasswordHashingOptions } from '../../src/accounts/passwords.ts';
import { CODE_CHALLENGE, PERSON, PERSON_SCOPE, REDIRECT_URI } from './fixtures.ts';
import { RssSampler } from './processes.ts';

export interface SignInMeasurement {
  workers: number;
  signInsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  signIns: number;
  errors: number;
  errorKinds: Record<string, number>;
  peakRssBytes: number;
}

/** A browser's cookies for one sign-in: sent to the paths they were set for. */
class CookieJar {
  /** By name and path, as a browser keeps them. */
  readonly #cookies = new Map<string, { name: string; value: string; path: string }>();

  header(url: URL): string {
    return [...this.#cookies.values()].filter((cookie) => url.pathname.startsWith(cookie.path)).map((cookie) => `${cookie.name}=${cookie.value}`).join('; ');
  }

  keep(response: Response, url: URL): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';').map((part) => part.trim());
      const separator = pair.indexOf('=');
      const pathAttribute = attributes.find((attribute) => /^path=/i.test(attribute));
      const path = pathAttribute ? pathAttribute.slice(5) : url.pathname.replace(/\/[^/]*$/, '') || '/';
      const name = pair.slice(0, separator);
      this.#cookies.set(`${name} ${path}`, { name, value: pair.slice(separator + 1), path });
    }
  }
}

async function request(jar: CookieJar, url: URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar.header(url);
  if (cookie) headers.set('cookie', cookie);
  headers.set('accept', 'text/html');
  const response = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(10_000) });
  jar.keep(response, url);
  return response;
}

class SignInFailed extends Error {}

/** One sign-in, start to finish; throws SignInFailed saying at which step it went wrong. */
async function signInOnce(origin: string, clientId: string): Promise<void> {
  const jar = new CookieJar();
  const authorization = new URL('/auth', origin);
  for (const [name, value] of Object.entries({
    client_id: clientId, redirect_uri: REDIRECT_URI, response_type: 'code', scope: PERSON_SCOPE, state: crypto.randomUUID(), nonce: crypto.randomUUID(),
    code_challenge: CODE_CHALLENGE, code_challenge_method: 'S256',
  })) authorization.searchParams.set(name, value);
  const started = await request(jar, authorization);
  await started.body?.cancel();
  const loginLocation = started.headers.get('location');
  if (started.status < 300 || started.status >= 400 || !loginLocation) throw new SignInFailed(`authorization: HTTP ${started.status}`);
  const loginPage = new URL(loginLocation, authorization);
  const page = await request(jar, loginPage);
  const html = await page.text();
  const csrf = /<input[^>]*name="csrf"[^>]*value="([^"]*)"/.exec(html)?.[1];
  if (page.status !== 200 || !csrf) throw new SignInFailed(`login page: HTTP ${page.status}${csrf ? '' : ', no CSRF field'}`);
  const submitted = await request(jar, new URL(`${loginPage.pathname}/login`, loginPage), {
    method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf: csrf.replaceAll('&amp;', '&'), email: PERSON.email, password: PERSON.password }).toString(),
  });
  await submitted.body?.cancel();
  if (submitted.status < 300 || submitted.status >= 400) throw new SignInFailed(`login form: HTTP ${submitted.status}`);
}

/** `workers` loops signing in one after another for `durationSeconds`, all against one Gatehouse. */
export async function measureSignIns(run: { origin: string; pid: number; clientId: string; workers: number; durationSeconds: number }): Promise<SignInMeasurement> {
  const latencies: number[] = [];
  const errorKinds: Record<string, number> = {};
  const sampler = new RssSampler(run.pid, 250);
  const started = performance.now();
  const deadline = started + run.durationSeconds * 1000;
  await Promise.all(Array.from({ length: run.workers }, async () => {
    while (performance.now() < deadline) {
      const begun = performance.now();
      try {
        await signInOnce(run.origin, run.clientId);
        latencies.push(performance.now() - begun);
      } catch (error) {
        const kind = error instanceof SignInFailed ? error.message : `error: ${error instanceof Error ? error.message : String(error)}`;
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      }
    }
  }));
  const elapsedSeconds = (performance.now() - started) / 1000;
  const peakRssBytes = sampler.stop();
  latencies.sort((a, b) => a - b);
  return {
    workers: run.workers,
    signInsPerSecond: latencies.length / elapsedSeconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    signIns: latencies.length,
    errors: Object.values(errorKinds).reduce((sum, times) => sum + times, 0),
    errorKinds,
    peakRssBytes,
  };
}

function percentile(sorted: readonly number[], fraction: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

/**
 * Milliseconds of one argon2 verification with these settings, on one core: the median of `times` (hashed once), so
 * that a moment when something else held the core does not move it.
 */
export async function argon2VerifyMs(options: PasswordHashingOptions, times = 30): Promise<number> {
  const hasher = new PasswordHasher(options);
  const hash = await hasher.hash(PERSON.password);
  // The first ones warm the library up.
  for (let warm = 0; warm < 2; warm += 1) await hasher.verify(hash, PERSON.password);
  const durations: number[] = [];
  for (let time = 0; time < times; time += 1) {
    const started = performance.now();
    if (!await hasher.verify(hash, PERSON.password)) throw new Error('argon2 refused the password it hashed');
    durations.push(performance.now() - started);
  }
  return percentile(durations.sort((a, b) => a - b), 0.5);
}
