// What the pages of emailed links share: opening a link (GET) only checks it and shows a button, since mail
// scanners and link previews open links before (or instead of) the person; the button's form (POST) uses it.
// Both are counted per IP (tokens cannot be guessed, but nobody gets to try many), and a link checker's HEAD
// gets an empty page with nothing looked up or counted.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { networkOf, type RateLimits } from '../../limits/index.ts';
import { TooManyAttempts } from '../kit/errors.ts';
import { formBody, formField, queryField, requireCsrf } from '../kit/pages.ts';
import { PATHS, type PathName } from '../paths.ts';

export interface EmailedLinkPage<Checked> {
  /** The link's path in the route table; the mail adds `?token=`. */
  path: PathName;
  /** What the 429 page says is paused, as a gerund ("using emailed links"). */
  paused: string;
  /** What the token stands for, if it still works; undefined for every reason it does not. */
  check(token: string): Promise<Checked | undefined>;
  /** The page with the button, for a link that works. */
  showButton(ctx: Context, token: string, checked: Checked): void | Promise<void>;
  /** Uses the link (the button's form), and shows what came of it. */
  use(ctx: Context, token: string): Promise<void>;
  /** The page for a link that does not work (one page for every reason: which one is of use only to a prober). */
  showInvalid(ctx: Context): void | Promise<void>;
}

/** Adds an emailed link's two routes to `router`. */
export function emailedLinkRoutes<Checked>(router: Router, rates: Pick<RateLimits, 'consume'>, page: EmailedLinkPage<Checked>): void {
  async function countUse(ctx: Context): Promise<void> {
    const decision = await rates.consume('emailed-link-ip', networkOf(ctx.ip));
    if (!decision.allowed) throw new TooManyAttempts(decision, { action: page.paused });
  }

  router.get(PATHS[page.path], async (ctx) => {
    // The router answers HEAD with this handler too.
    if (ctx.method === 'HEAD') {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.set('Cache-Control', 'no-store');
      return;
    }
    const token = queryField(ctx, 'token');
    if (!token) return page.showInvalid(ctx);
    await countUse(ctx);
    const checked = await page.check(token);
    if (checked === undefined) return page.showInvalid(ctx);
    await page.showButton(ctx, token, checked);
  });

  router.post(PATHS[page.path], formBody, async (ctx) => {
    requireCsrf(ctx);
    await countUse(ctx);
    await page.use(ctx, formField(ctx, 'token'));
  });
}
