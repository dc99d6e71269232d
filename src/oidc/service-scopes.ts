// A token from client_credentials has no person behind it: the scopes about a person (openid, profile,
// email, offline_access) are refused for it, in the protocol's words, and a service client cannot be
// registered with them. Services get API scopes only.
import { errors } from 'oidc-provider';
import { scopesAboutPeople } from './scopes.ts';
import type { TokenRequestCheck } from './engine-internals.ts';

/** Registration's rule (runtime.ts adds it to the engine's own check of client metadata). */
export function refusePeopleScopesForServices(metadata: Record<string, unknown>): void {
  const isService = Array.isArray(metadata.grant_types) && metadata.grant_types.includes('client_credentials');
  const refused = isService ? scopesAboutPeople(typeof metadata.scope === 'string' ? metadata.scope : undefined) : [];
  if (refused.length) throw new errors.InvalidClientMetadata(`a service client acts for no person: it cannot have the scope ${refused.join(', ')}`);
}

export const serviceScopesOnly: TokenRequestCheck = {
  async afterClientLookup(ctx) {
    if (ctx.oidc.params?.grant_type !== 'client_credentials') return;
    const refused = scopesAboutPeople(ctx.oidc.params.scope as string | undefined);
    if (refused.length) {
      throw new errors.InvalidScope(`a service client acts for no person: ${refused.join(', ')} cannot be granted to it`, refused.join(' '));
    }
  },
};
