// Signing in to the account console (/account) the way a browser does: through the login page, back
// to the page first asked for.
import type { TestServer } from './server.ts';
import { formField, type UserAgent } from './user-agent.ts';

/** Opens an /account page, signs in on the login page it leads to, and returns the account page reached. */
export async function signInToAccount(
  server: TestServer,
  agent: UserAgent,
  credentials: { email: string; password: string },
  path = '/account',
): Promise<{ response: Response; url: URL; html: string }> {
  const login = await agent.follow(`${server.issuer}${path}`);
  const loginPage = await login.response.text();
  if (!loginPage.includes('name="password"')) throw new Error(`expected the login page, got ${login.url.pathname} ${login.response.status}`);
  const reached = await agent.submit(new URL(`${login.url.pathname}/login`, login.url), {
    csrf: formField(loginPage, 'csrf'), email: credentials.email, password: credentials.password,
  });
  return { ...reached, html: await reached.response.text() };
}
