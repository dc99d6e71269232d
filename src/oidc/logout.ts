// RP-initiated logout as Gatehouse finishes it: the browser always finds its way back to the client (the page's
// CSP names where the engine's form leads), and every application of the session is told that it ended.
import { decodeJwt, decodeProtectedHeader } from 'jose';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { PrivateJwks } from '../keys/secrets.ts';
import { sessionBeingEnded } from './engine-internals.ts';
import { asProviderError } from './errors.ts';
import type { EnginePages, ProviderDependencies } from './provider.ts';

/**
 * RP-initiated logout of a browser whose session is already gone (expired, signed out elsewhere) answers with
 * the engine's self-submitting form, whose confirmation redirects to the client's post_logout_redirect_uri: the
 * page's form-action must name that origin, or the browser stops on a blank page. The engine answers 200 only
 * once the URI matched one the client registered.
 */
export function logoutReturnsToClient(pages: EnginePages) {
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    await next();
    const returnTo = ctx.oidc?.params?.post_logout_redirect_uri;
    if (ctx.oidc?.route === 'end_session' && ctx.status === 200 && typeof returnTo === 'string') pages.formLeadsTo(ctx, { returnTo });
  };
}

/**
 * A person signing out through an application (RP-initiated logout) signs out of every application of the
 * session, or of the one they chose: those applications are told (back-channel, queued), and the browser loads
 * their front-channel logout URLs on a page of its own before going where the engine sends it. The session is
 * read before the engine's confirmation ends it: that is the one moment it still names them.
 */
export function logoutReachesApplications(provider: Provider, notices: ProviderDependencies['logoutNotices'], pages: EnginePages) {
  const confirmPath = provider.pathFor('end_session_confirm');
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    if (ctx.method !== 'POST' || ctx.path !== confirmPath) return next();
    const ending = await asProviderError(() => sessionBeingEnded(provider, ctx));
    await next();
    const continueTo = ctx.response.get('Location');
    if (ctx.status !== 303 || !continueTo || !ending.accountId) return;
    // The engine's confirmation ends every application's session with "logout", else only the one chosen.
    const everywhere = Boolean(ctx.oidc.params?.logout);
    const applications = everywhere ? ending.applications : ending.applications.filter((application) => application.clientId === ending.onlyFrom);
    const reason = everywhere ? 'signed_out' : 'signed_out_of_application';
    const frontChannel = await asProviderError(() => notices.sessionEnded({ accountId: ending.accountId!, applications, reason }));
    if (frontChannel.length) pages.signingOut(ctx, { frontChannel, continueTo });
  };
}

/**
 * RP-initiated logout whose id_token_hint was signed by a key that has left the JWKS since (rotated out once the
 * tokens it signed had expired, while an application keeps its sign-in's ID token as long as the session lasts): the
 * engine cannot check it and refused the sign-out. All a hint does there is name the application (its aud), which
 * client_id names as well, with no proof either: such a hint of this issuer is taken as that client_id. The person is
 * asked to confirm, as always, and the engine holds post_logout_redirect_uri to that client's registered URIs.
 */
export function logoutHintOfRetiredKey(provider: Provider, signingKeys: { readonly jwks: PrivateJwks }) {
  const path = provider.pathFor('end_session');
  return async (ctx: KoaContextWithOIDC, next: () => Promise<void>): Promise<void> => {
    const hint = (ctx.method === 'GET' || ctx.method === 'HEAD') && ctx.path === path ? ctx.query.id_token_hint : undefined;
    const named = typeof hint === 'string' ? applicationOfHintByRetiredKey(hint, provider.issuer, signingKeys.jwks) : undefined;
    if (named !== undefined && (ctx.query.client_id === undefined || ctx.query.client_id === named)) {
      const { id_token_hint: _retired, ...rest } = ctx.query;
      ctx.query = { ...rest, client_id: named };
    }
    await next();
  };
}

/** The application (aud) an ID token of this issuer names, if the key it names is not one the engine has now. */
function applicationOfHintByRetiredKey(hint: string, issuer: string, jwks: PrivateJwks): string | undefined {
  try {
    const { kid } = decodeProtectedHeader(hint);
    if (typeof kid !== 'string' || jwks.keys.some((key) => key.kid === kid)) return undefined;
    const { iss, aud } = decodeJwt(hint);
    const audience = Array.isArray(aud) && aud.length === 1 ? aud[0] : aud;
    return iss === issuer && typeof audience === 'string' ? audience : undefined;
  } catch {
    return undefined;
  }
}
