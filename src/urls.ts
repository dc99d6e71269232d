// URL helpers shared by the protocol configuration and the HTTP layer.

/** The origin of an absolute URL, or undefined for anything that has none. */
export function originOf(uri: string): string | undefined {
  try {
    const { origin } = new URL(uri);
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

/**
 * Why a URI cannot name an application's endpoint (a logout URI) or an API (a resource indicator), or undefined:
 * it must be an absolute https URL without a fragment, or http on the loopback interface (in development).
 */
export function secureUriProblem(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.hash) return 'must not have a fragment';
  if (url.protocol === 'https:') return undefined;
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  return url.protocol === 'http:' && loopback ? undefined : 'must use https (http only on the loopback interface, in development)';
}
