// A person's browser, minus the rendering: follows what the server says with a cookie jar that
// honours cookie paths, so the interaction pages can be driven from a test without JavaScript.

interface Cookie {
  name: string;
  value: string;
  path: string;
}

export class UserAgent {
  #cookies: Cookie[] = [];
  readonly #defaultHeaders: Headers;

  /** `headers` go with every request unless the request sets them (a browser's user-agent, say). */
  constructor(options: { headers?: Record<string, string> } = {}) {
    this.#defaultHeaders = new Headers(options.headers);
  }

  /** The value of a cookie in the jar (the first of that name). */
  cookie(name: string): string | undefined {
    return this.#cookies.find((cookie) => cookie.name === name)?.value;
  }

  /** Puts a cookie in the jar as if a server (or an attacker) had set it. */
  plantCookie(name: string, value: string, path = '/'): void {
    this.#cookies = this.#cookies.filter((cookie) => !(cookie.name === name && cookie.path === path));
    this.#cookies.push({ name, value, path });
  }

  /** One request, no redirects followed; cookies stored and sent by path. */
  async request(url: string | URL, init: RequestInit = {}): Promise<Response> {
    const target = new URL(url);
    const headers = new Headers(init.headers);
    for (const [name, value] of this.#defaultHeaders) if (!headers.has(name)) headers.set(name, value);
    const cookie = this.#cookies
      .filter((candidate) => target.pathname.startsWith(candidate.path))
      .map(({ name, value }) => `${name}=${value}`)
      .join('; ');
    if (cookie) headers.set('cookie', cookie);
    if (!headers.has('accept')) headers.set('accept', 'text/html');
    const response = await fetch(target, { ...init, headers, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) this.#store(line, target);
    return response;
  }

  /** Follows redirects on this server; stops at the first redirect elsewhere (the client's callback) or a page. */
  async follow(url: string | URL, init: RequestInit = {}): Promise<{ response: Response; url: URL }> {
    let current = new URL(url);
    let response = await this.request(current, init);
    for (let hops = 0; hops < 10 && isRedirect(response.status); hops += 1) {
      const next = new URL(response.headers.get('location')!, current);
      if (next.origin !== current.origin) return { response, url: next };
      current = next;
      response = await this.request(current);
    }
    return { response, url: current };
  }

  /** Submits a form as a browser would: urlencoded, then follows redirects. */
  submit(url: string | URL, fields: Record<string, string>): Promise<{ response: Response; url: URL }> {
    return this.follow(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }

  #store(line: string, requestUrl: URL): void {
    const [pair = '', ...attributes] = line.split(';').map((part) => part.trim());
    const separator = pair.indexOf('=');
    const name = pair.slice(0, separator);
    const value = pair.slice(separator + 1);
    const pathAttribute = attributes.find((attribute) => attribute.toLowerCase().startsWith('path='));
    const path = pathAttribute ? pathAttribute.slice(5) : requestUrl.pathname.replace(/\/[^/]*$/, '') || '/';
    const expired = attributes.some((attribute) => /^expires=/i.test(attribute) && new Date(attribute.slice(8)).getTime() < Date.now())
      || attributes.some((attribute) => /^max-age=(0|-)/i.test(attribute));
    this.#cookies = this.#cookies.filter((cookie) => !(cookie.name === name && cookie.path === path));
    if (!expired) this.#cookies.push({ name, value, path });
  }
}

/** A response read whole: what a test looks at on a page it opened or a form it sent, redirects not followed. */
export interface Page {
  status: number;
  html: string;
  response: Response;
}

export async function page(agent: UserAgent, url: string | URL): Promise<Page> {
  const response = await agent.request(url);
  return { status: response.status, html: await response.text(), response };
}

/** Sends a form (urlencoded) without following where it leads. */
export async function post(agent: UserAgent, url: string | URL, fields: Record<string, string>): Promise<Page> {
  const response = await agent.request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: response.status, html: await response.text(), response };
}

export function isRedirect(status: number): boolean {
  return status >= 300 && status < 400;
}

/** The value of a named hidden or text input in an HTML page. */
export function formField(html: string, name: string): string {
  const match = new RegExp(`<input[^>]*name="${name}"[^>]*value="([^"]*)"`).exec(html);
  if (!match) throw new Error(`no field ${name} in page`);
  return match[1]!.replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>');
}

/** The action of the first form whose action matches a pattern. */
export function formAction(html: string, pattern: RegExp): string {
  for (const match of html.matchAll(/<form[^>]*action="([^"]+)"/g)) {
    if (pattern.test(match[1]!)) return match[1]!.replaceAll('&amp;', '&');
  }
  throw new Error(`no form matching ${pattern}`);
}
