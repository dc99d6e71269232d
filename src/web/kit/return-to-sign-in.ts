// Back to the application after an emailed link: a person who leaves a sign-in to reset their password or
// to confirm their address is offered to continue that sign-in once the link is used, when they follow the
// link in the same browser while the sign-in is still open (as Keycloak does). The emailed link carries
// nothing of it: the browser remembers which sign-in it left, in a signed cookie, and only ever gets a link
// to that sign-in's own page on this server, which works only with the engine's cookie for it.
import type { Context } from 'koa';
import type { Engine } from '../../oidc/engine-internals.ts';
import { pathTo } from '../paths.ts';

const COOKIE = 'gatehouse.sign-in';
/** The engine's interaction uids (nanoid); anything else in the cookie is ignored. */
const UID = /^[A-Za-z0-9_-]{1,64}$/;

/** Remembers, in this browser, the sign-in (interaction) being left, for as long as it stays open. */
export function rememberSignIn(ctx: Context, interaction: { uid: string; exp: number }): void {
  const maxAge = interaction.exp * 1000 - Date.now();
  if (maxAge <= 0) return;
  // Path /: the pages reading it (/password/reset, /verify-email) share no narrower one.
  ctx.cookies.set(COOKIE, interaction.uid, { signed: true, httpOnly: true, sameSite: 'lax', path: '/', maxAge, overwrite: true });
}

export interface SignInToContinue {
  /** The sign-in's login page. */
  href: string;
  clientName: string;
}

/**
 * The sign-in this browser left, if it still waits for a login; the cookie is cleared either way, as the
 * link is offered once. `email` fills in the login form.
 */
export async function takeSignInToContinue(ctx: Context, engine: Pick<Engine, 'findInteraction' | 'findClient'>, email?: string): Promise<SignInToContinue | undefined> {
  const uid = ctx.cookies.get(COOKIE, { signed: true });
  if (uid === undefined) return undefined;
  ctx.cookies.set(COOKIE, null, { signed: true, path: '/', overwrite: true });
  if (!UID.test(uid)) return undefined;
  const interaction = await engine.findInteraction(uid);
  if (!interaction || interaction.prompt.name !== 'login' || interaction.result || interaction.exp * 1000 <= Date.now()) return undefined;
  const client = await engine.findClient(interaction.params.client_id);
  if (!client) return undefined;
  const query = email ? `?${new URLSearchParams({ email })}` : '';
  return { href: `${pathTo('interaction', { uid })}${query}`, clientName: client.clientName ?? 'the application' };
}
