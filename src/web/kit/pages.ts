// What every server-rendered page with a form shares: the form body parser, rendering with no-store,
// a CSP naming where forms may lead, and the CSRF token. Interaction, reset and account pages all go
// through here; the 429 page is thrown (TooManyAttempts in kit/errors.ts).
import { bodyParser } from '@koa/bodyparser';
import type { Context } from 'koa';
import type { LimitDecision } from '../../limits/index.ts';
import { csrfToken, csrfTokenMatches } from './csrf.ts';
import { HttpError } from './errors.ts';
import { contentSecurityPolicy } from './content-security-policy.ts';
import type { Views } from './views.ts';

export type Refusal = Extract<LimitDecision, { allowed: false }>;

export interface RenderOptions {
  status?: number;
  /** A URL the page's forms may end up redirecting to (the client's redirect URI), for CSP form-action. */
  formTarget?: unknown;
  /** URLs the page loads in frames (applications' front-channel logout URLs), for CSP frame-src. */
  frames?: readonly string[] | undefined;
}

/** Parses urlencoded forms only (16 kB); anything unreadable is a 400 page. */
export const formBody = bodyParser({
  enableTypes: ['form'],
  formLimit: '16kb',
  onError: () => { throw new HttpError(400, 'The form could not be read.'); },
});

export class Pages {
  readonly #views: Views;

  constructor(views: Views) {
    this.#views = views;
  }

  render(ctx: Context, template: string, data: Record<string, unknown>, options: RenderOptions): void {
    ctx.status = options.status ?? 200;
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Security-Policy', contentSecurityPolicy(typeof options.formTarget === 'string' ? [options.formTarget] : [], options.frames));
    ctx.body = this.#views.render(template, { ...data, csrf: csrfToken(ctx) });
  }
}

/** Throws a 403 page unless the POSTed form carries the CSRF token of its cookie. */
export function requireCsrf(ctx: Context): void {
  if (!csrfTokenMatches(ctx, formField(ctx, 'csrf'))) {
    throw new HttpError(403, 'This form has expired. Go back and try again.');
  }
}

/** A field of the parsed form as a string ('' when missing or repeated). */
export function formField(ctx: Context, name: string): string {
  const value = (ctx.request.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : '';
}

/** A query parameter given once, or '' (absent, or repeated into an array). */
export function queryField(ctx: Context, name: string): string {
  const value = ctx.query[name];
  return typeof value === 'string' ? value : '';
}
