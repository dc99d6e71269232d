// RP-initiated logout as Gatehouse finishes it: the browser always finds its way back to the client (the page's
// CSP names where the engine's form leads), and every application of the session is told that it ended.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
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
