// Account console: the applications the person allowed, what each may see, and removing one's access (the
// work is src/accounts/flows/application-access.ts's).
import { HttpError } from '../kit/errors.ts';
import { formBody, requireCsrf } from '../kit/pages.ts';
import { describeScope } from '../../oidc/scopes.ts';
import { describeApiScope } from '../../apis/apis.ts';
import type { WebDependencies } from '../dependencies.ts';
import { PATHS, within } from '../paths.ts';
import type { AccountPages, AccountRouter } from './index.ts';

const TITLE = 'Apps with access';
const allowedOn = new Intl.DateTimeFormat('en-GB', { dateStyle: 'long', timeZone: 'UTC' });

export function applicationRoutes(router: AccountRouter, deps: Pick<WebDependencies, 'flows' | 'apis'>, pages: AccountPages): void {
  const { applicationAccess } = deps.flows;

  /** What an app may do, in words: about the person, then at each API, in the API's own words. */
  async function accessInWords(application: { scopes: string[]; resources: Record<string, string[]> }): Promise<string[]> {
    const ofApis = await Promise.all(Object.entries(application.resources).map(async ([identifier, scopes]) => {
      const api = await deps.apis.find(identifier);
      // An API since removed gives no access any more.
      return api ? scopes.map((scope) => describeApiScope(api, scope)) : [];
    }));
    return [...application.scopes.filter((scope) => scope !== 'openid').map(describeScope), ...ofApis.flat()];
  }

  router.get(within('account', 'accountApplications'), async (ctx) => {
    const applications = await applicationAccess.list(ctx.state.account.user);
    const access = await Promise.all(applications.map(accessInWords));
    // The name of the app just removed comes back from the list of the person's own apps, never from the address.
    pages.render(ctx, 'account/applications', {
      title: TITLE,
      removed: ctx.query.removed === '1',
      applications: applications.map((application, index) => ({
        clientId: application.clientId,
        name: application.name,
        access: access[index],
        allowedOn: allowedOn.format(application.grantedAt),
        allowedOnIso: application.grantedAt.toISOString(),
      })),
    });
  });

  router.post(within('account', 'accountApplicationRemove'), formBody, async (ctx) => {
    requireCsrf(ctx);
    const result = await applicationAccess.withdraw(ctx.state.account.user, ctx.params.clientId ?? '', { ip: ctx.ip, userAgent: ctx.get('user-agent') });
    if (!result.ok) throw new HttpError(404, 'That application does not have access to your account. It may have been removed already.');
    ctx.status = 303;
    ctx.redirect(`${PATHS.accountApplications}?removed=1`);
  });
}
