// A token from client_credentials has no person behind it: the scopes about a person (openid, profile,
// email, offline_access) are refused for it, in the protocol's words (clients.ts refuses to register a
// service client with them). Services get API scopes only.
import { errors } from 'oidc-provider';
import { scopesAboutPeople } from './scopes.ts';
import type { TokenRequestCheck } from './token-requests.ts';

export const serviceScopesOnly: TokenRequestCheck = {
  async afterClientLookup(ctx) {
    if (ctx.oidc.params?.grant_type !== 'client_credentials') return;
    const refused = scopesAboutPeople(ctx.oidc.params.scope as string | undefined);
    if (refused.length) {
      throw new errors.InvalidScope(`a service client acts for no person: ${refused.join(', ')} cannot be granted to it`, refused.join(' '));
    }
  },
};
