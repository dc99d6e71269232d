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
