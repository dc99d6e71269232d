// The engine's error page, in Gatehouse's layout: says what went wrong in words, never a stack trace.
import type { Configuration } from 'oidc-provider';
import { upperFirst, type Views } from '../http/views.ts';

type ErrorOut = { error: string; error_description?: string };

const TITLES: Record<string, string> = {
  invalid_request: 'This sign-in request is not valid',
  invalid_client: 'Unknown application',
  invalid_redirect_uri: 'This application is not allowed to sign in here',
  temporarily_unavailable: 'Gatehouse is temporarily unavailable',
  session_not_found: 'This sign-in has expired',
};

type EngineContext = Parameters<NonNullable<Configuration['renderError']>>[0];

export async function renderEngineError(ctx: EngineContext, views: Views, out: ErrorOut): Promise<void> {
  ctx.type = 'html';
  ctx.body = views.render('error', {
    title: TITLES[out.error] ?? 'Something went wrong',
    message: out.error === 'server_error'
      ? 'Something went wrong on our side. Please try again.'
      : upperFirst(out.error_description ?? 'The request could not be completed.'),
    code: out.error,
  });
}
