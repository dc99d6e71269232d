// The pages the engine shows, in Gatehouse's layout: the logout confirmation, "signed out", and its errors,
// which say what went wrong in words, never a stack trace. Handed to the engine as its EnginePages.
import type { EnginePages } from '../../oidc/provider.ts';
import { contentSecurityPolicy } from './content-security-policy.ts';
import { upperFirst, type Views } from './views.ts';

const TITLES: Record<string, string> = {
  invalid_request: 'This sign-in request is not valid',
  invalid_client: 'Unknown application',
  invalid_redirect_uri: 'This application is not allowed to sign in here',
  temporarily_unavailable: 'Gatehouse is temporarily unavailable',
  session_not_found: 'This sign-in has expired',
};

/** The engine's routes of a sign-out (RP-initiated logout): their errors are a sign-out's, not a sign-in's. */
const SIGN_OUT_ROUTES = new Set(['end_session', 'end_session_confirm', 'end_session_success']);
const SIGN_OUT_TITLES: Record<string, string> = { ...TITLES, invalid_request: 'This sign-out request is not valid' };
/** What the engine says when a confirmation comes again after the session it belonged to ended (its xsrf is gone). */
const SIGN_OUT_ALREADY_USED = 'could not find logout details';

export function enginePages(views: Views): EnginePages {
  return {
    logout(ctx, { engineForm, clientName, fromApplication, returnTo }) {
      // The confirmation form ends in a redirect to the client's (already checked) post-logout URI.
      ctx.set('Content-Security-Policy', contentSecurityPolicy(returnTo ? [returnTo] : []));
      ctx.type = 'html';
      ctx.body = views.render('logout', { engineForm, clientName, fromApplication });
    },
    loggedOut(ctx, { clientName, onlyFromClient }) {
      ctx.type = 'html';
      ctx.body = views.render('logged-out', { clientName, onlyFromClient });
    },
    signingOut(ctx, { frontChannel, continueTo }) {
      // Instead of the engine's redirect: the page goes on to it once the frames have loaded.
      ctx.remove('Location');
      ctx.status = 200;
      ctx.set('Content-Security-Policy', contentSecurityPolicy([], frontChannel));
      ctx.type = 'html';
      ctx.body = views.render('signing-out', { frontChannel, continueTo });
    },
    formLeadsTo(ctx, { returnTo }) {
      // The engine's page may carry the hash of its one inline script in script-src: that stays.
      const current = String(ctx.response.get('Content-Security-Policy') ?? '');
      const scriptSrc = current.split(';').map((directive) => directive.trim()).find((directive) => directive.startsWith('script-src '));
      const policy = contentSecurityPolicy([returnTo]).split('; ').map((directive) => (directive.startsWith('script-src ') && scriptSrc ? scriptSrc : directive));
      ctx.set('Content-Security-Policy', policy.join('; '));
    },
    error(ctx, out) {
      ctx.type = 'html';
      const signingOut = SIGN_OUT_ROUTES.has(ctx.oidc?.route ?? '');
      ctx.body = views.render('error', {
        title: (signingOut ? SIGN_OUT_TITLES : TITLES)[out.error] ?? 'Something went wrong',
        message: out.error === 'server_error'
          ? 'Something went wrong on our side. Please try again.'
          : signingOut && out.error_description === SIGN_OUT_ALREADY_USED
            ? 'This sign-out page was already used, or has expired: you may be signed out already. If you are not, sign out again from the application.'
            : upperFirst(out.error_description ?? 'The request could not be completed.'),
        code: out.error,
      });
    },
  };
}
