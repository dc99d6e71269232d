// /admin/v1/apis, /roles, /keys and /audit-events: the APIs that accept Gatehouse's tokens, the roles that bound
// what people are granted at them, the signing keys, and the audit trail — each through the same service as
// the CLI.
import { z } from 'zod';
import { ACCESS_TOKEN_FORMATS, ApiChangedMeanwhile, ApiError, SCOPE_MAX_LENGTH, type Api, type ApiService } from '../../apis/apis.ts';
import { ADMIN_ROLE, ROLE_NAME, RoleChangedMeanwhile, RoleError, type Role, type RoleService } from '../../apis/roles.ts';
import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE } from '../../apis/admin-api.ts';
import type { AccountFlows } from '../../accounts/flows/index.ts';
import { SIGNING_ALGORITHMS } from '../../keys/secrets.ts';
import { isStorableMoment } from '../../clock.ts';
import { KeyRotationError } from '../../keys/signing-keys.ts';
import type { KeyDescription, SigningKeyRing } from '../../keys/key-ring.ts';
import { AUDIT_ACTIONS, type AuditEvent, type AuditTrail } from '../../audit/audit.ts';
import { NAME_MAX_LENGTH } from '../../text.ts';
import { MAX_INITIAL_ACCESS_TOKEN_SECONDS, MAX_INITIAL_ACCESS_TOKEN_USES, type InitialAccessTokenSummary, type InitialAccessTokens } from '../../oidc/initial-access-tokens.ts';
import { actorOf } from './authentication.ts';
import { operation, type Operation, type Reply } from './operations.ts';
import { Problem } from './problems.ts';
import { cursorPart, decodeCursor, encodeCursor, pageOf, pageOfList, pageQuery } from './paging.ts';
import { etag, ifMatch } from './versions.ts';

export interface AdminSettingsDependencies {
  apis: Pick<ApiService, 'create' | 'find' | 'page' | 'update' | 'delete'>;
  roles: Pick<RoleService, 'create' | 'find' | 'list' | 'update' | 'grant' | 'revoke'>;
  /** Deleting a role takes it from people: a flow's work. */
  flows: Pick<AccountFlows, 'roleAssignment'>;
  signingKeys: Pick<SigningKeyRing, 'list' | 'rotate'>;
  auditTrail: Pick<AuditTrail, 'list'>;
  initialAccessTokens: Pick<InitialAccessTokens, 'issue' | 'list' | 'revoke'>;
}

const scopeList = z.array(z.object({ name: z.string().min(1).max(SCOPE_MAX_LENGTH), description: z.string().max(NAME_MAX_LENGTH).optional() })).max(100);
const api = z.object({
  identifier: z.string(), name: z.string(), scopes: z.array(z.object({ name: z.string(), description: z.string().optional() })),
  access_token_format: z.enum(ACCESS_TOKEN_FORMATS), access_token_ttl: z.number().int(), signing_alg: z.enum(SIGNING_ALGORITHMS),
  created_at: z.iso.datetime(), updated_at: z.iso.datetime(),
});
const apiIdentifier = z.strictObject({ identifier: z.string().describe('The API\'s identifier, URL-encoded') });
const role = z.object({
  name: z.string(), description: z.string().nullable(), permissions: z.array(z.object({ api: z.string(), scopes: z.array(z.string()) })),
  created_at: z.iso.datetime(), updated_at: z.iso.datetime(),
});
const roleName = z.strictObject({ name: z.string().regex(ROLE_NAME, 'a role name: letters, digits and . _ : - (at most 64)') });
const permission = z.strictObject({ api: z.string().min(1), scopes: z.array(z.string().min(1)).min(1).max(100) });
const key = z.object({
  kid: z.string(), alg: z.string(), state: z.enum(['next', 'signing', 'retired', 'expired', 'configured']),
  created_at: z.iso.datetime().nullable(), signs_from: z.iso.datetime().nullable(), retires_at: z.iso.datetime().nullable(), expires_at: z.iso.datetime().nullable(),
});
const auditEvent = z.object({
  id: z.string(), occurred_at: z.iso.datetime(), action: z.string(), outcome: z.enum(['success', 'failure']),
  actor_type: z.enum(['user', 'client', 'admin', 'system']), actor_id: z.string().nullable(), subject_user_id: z.string().nullable(), subject_email: z.string().nullable(),
  client_id: z.string().nullable(), ip: z.string().nullable(), user_agent: z.string().nullable(), detail: z.record(z.string(), z.unknown()),
  request_id: z.string().nullable(),
});

/** An audit filter's bound: an ISO date-time with its zone, within the years the database holds. */
const auditMoment = z.iso.datetime({ offset: true }).transform((value) => new Date(value)).refine(isStorableMoment, 'a date-time from year 1 to 9999');
const initialAccessToken = z.object({ id: z.string(), expires_at: z.iso.datetime(), uses: z.number().int(), uses_left: z.number().int() });

function tokenView(entry: InitialAccessTokenSummary): z.infer<typeof initialAccessToken> {
  return { id: entry.id, expires_at: entry.expiresAt.toISOString(), uses: entry.uses, uses_left: entry.usesLeft };
}

function apiView(entry: Api): Reply {
  return {
    body: {
      identifier: entry.identifier, name: entry.name, scopes: entry.scopes, access_token_format: entry.accessTokenFormat, access_token_ttl: entry.accessTokenTtl,
      signing_alg: entry.signingAlg, created_at: entry.createdAt.toISOString(), updated_at: entry.updatedAt.toISOString(),
    },
    headers: { ETag: etag(entry.updatedAt) },
  };
}

function roleView(entry: Role): Reply {
  return {
    body: {
      name: entry.name, description: entry.description ?? null, permissions: entry.permissions,
      created_at: entry.createdAt.toISOString(), updated_at: entry.updatedAt.toISOString(),
    } satisfies z.infer<typeof role>,
    headers: { ETag: etag(entry.updatedAt) },
  };
}

function keyView(entry: KeyDescription): z.infer<typeof key> {
  const when = (moment: Date | undefined) => moment?.toISOString() ?? null;
  return { kid: entry.kid, alg: entry.alg, state: entry.state, created_at: when(entry.createdAt), signs_from: when(entry.signsFrom), retires_at: when(entry.retiresAt), expires_at: when(entry.expiresAt) };
}

function eventView(event: AuditEvent): z.infer<typeof auditEvent> {
  return {
    id: event.id, occurred_at: event.occurredAt.toISOString(), action: event.action, outcome: event.outcome, actor_type: event.actorType, actor_id: event.actorId,
    subject_user_id: event.subjectUserId, subject_email: event.subjectEmail, client_id: event.clientId, ip: event.ip, user_agent: event.userAgent, detail: event.detail,
    request_id: event.requestId,
  };
}

/** What the services refuse (an identifier that is not a URL, a scope an API does not define) is the caller's mistake. */
async function refusedAs422<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiChangedMeanwhile) throw new Problem('precondition-failed', 'The API changed since it was read: read it again');
    if (error instanceof RoleChangedMeanwhile) throw new Problem('precondition-failed', 'The role changed since it was read: read it again');
    if (error instanceof ApiError || error instanceof RoleError) {
      throw new Problem(/already/.test(error.message) ? 'conflict' : /^no (role|API) /.test(error.message) ? 'not-found' : 'validation-failed', error.message);
    }
    throw error;
  }
}

export function settingsOperations({ apis, roles, flows, signingKeys, auditTrail, initialAccessTokens }: AdminSettingsDependencies): Operation[] {
  async function foundApi(identifier: string): Promise<Api> {
    const found = await apis.find(identifier);
    if (!found) throw new Problem('not-found', `No API has the identifier ${identifier}`);
    return found;
  }
  async function foundRole(name: string): Promise<Role> {
    const found = await roles.find(name);
    if (!found) throw new Problem('not-found', `No role ${name}`);
    return found;
  }

  return [
    operation({
      id: 'listApis', tag: 'apis', method: 'get', path: '/apis', scope: ADMIN_READ_SCOPE, summary: 'List the APIs, by identifier, a page at a time',
      query: pageQuery,
      answers: { 200: { description: 'A page of APIs', schema: pageOf(api) } },
      async handle({ query }) {
        const after = decodeCursor(query.cursor, z.object({ identifier: cursorPart.text }));
        const { apis: page, more } = await apis.page({ after: after?.identifier, limit: query.limit });
        const last = page.at(-1);
        return { body: { items: page.map((entry) => apiView(entry).body), next_cursor: more && last ? encodeCursor({ identifier: last.identifier }) : null } };
      },
    }),
    operation({
      id: 'createApi', tag: 'apis', method: 'post', path: '/apis', scope: ADMIN_WRITE_SCOPE,
      summary: 'Register an API: its identifier is its tokens\' audience (RFC 8707 resource indicator)',
      body: z.strictObject({
        identifier: z.string().min(1), name: z.string().min(1).max(NAME_MAX_LENGTH), scopes: scopeList.default([]),
        access_token_format: z.enum(ACCESS_TOKEN_FORMATS).optional(), access_token_ttl: z.number().int().optional(), signing_alg: z.enum(SIGNING_ALGORITHMS).optional(),
      }),
      answers: { 201: { description: 'The API', schema: api, headers: ['Location', 'ETag'] } },
      problems: [409],
      async handle({ body, caller, ctx }) {
        const created = await refusedAs422(() => apis.create({
          identifier: body.identifier, name: body.name, scopes: body.scopes, accessTokenFormat: body.access_token_format, accessTokenTtl: body.access_token_ttl, signingAlg: body.signing_alg,
        }, actorOf(caller)));
        const reply = apiView(created);
        return { ...reply, status: 201, headers: { ...reply.headers, Location: `${ctx.path}/${encodeURIComponent(created.identifier)}` } };
      },
    }),
    operation({
      id: 'getApi', tag: 'apis', method: 'get', path: '/apis/{identifier}', scope: ADMIN_READ_SCOPE, summary: 'Read an API',
      params: apiIdentifier,
      answers: { 200: { description: 'The API', schema: api, headers: ['ETag'] } },
      problems: [404],
      async handle({ params }) {
        return apiView(await foundApi(params.identifier));
      },
    }),
    operation({
      id: 'updateApi', tag: 'apis', method: 'patch', path: '/apis/{identifier}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Change an API (scopes given replace the old ones; clients lose those no API defines any more); its identifier stays', ifMatch: true,
      params: apiIdentifier,
      body: z.strictObject({
        name: z.string().min(1).max(NAME_MAX_LENGTH).optional(), scopes: scopeList.optional(), access_token_format: z.enum(ACCESS_TOKEN_FORMATS).optional(),
        access_token_ttl: z.number().int().optional(), signing_alg: z.enum(SIGNING_ALGORITHMS).optional(),
      }),
      answers: { 200: { description: 'The API', schema: api, headers: ['ETag'] } },
      problems: [404, 412, 428],
      async handle({ params, body, caller, ctx }) {
        const unchangedSince = ifMatch(ctx);
        const updated = await refusedAs422(() => apis.update(params.identifier, {
          name: body.name, scopes: body.scopes, accessTokenFormat: body.access_token_format, accessTokenTtl: body.access_token_ttl, signingAlg: body.signing_alg,
        }, actorOf(caller), unchangedSince));
        if (!updated) throw new Problem('not-found', `No API has the identifier ${params.identifier}`);
        return apiView(updated);
      },
    }),
    operation({
      id: 'deleteApi', tag: 'apis', method: 'delete', path: '/apis/{identifier}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Remove an API: no token is issued for it again (those issued expire as they would), and no client keeps it as its default API or resource server',
      params: apiIdentifier,
      answers: { 204: { description: 'Removed' } },
      problems: [404],
      async handle({ params, caller }) {
        if (!await refusedAs422(() => apis.delete(params.identifier, actorOf(caller)))) throw new Problem('not-found', `No API has the identifier ${params.identifier}`);
        return {};
      },
    }),
    operation({
      id: 'listRoles', tag: 'roles', method: 'get', path: '/roles', scope: ADMIN_READ_SCOPE, summary: 'List the roles and what each permits, by name',
      query: pageQuery,
      answers: { 200: { description: 'A page of roles', schema: pageOf(role) } },
      async handle({ query }) {
        const page = pageOfList(await roles.list(), (entry) => entry.name, query);
        return { body: { items: page.items.map((entry) => roleView(entry).body), next_cursor: page.next_cursor } };
      },
    }),
    operation({
      id: 'createRole', tag: 'roles', method: 'post', path: '/roles', scope: ADMIN_WRITE_SCOPE, summary: 'Make a role',
      body: z.strictObject({ name: roleName.shape.name, description: z.string().max(NAME_MAX_LENGTH).optional() }),
      answers: { 201: { description: 'The role', schema: role, headers: ['Location', 'ETag'] } },
      problems: [409],
      async handle({ body, caller, ctx }) {
        const created = roleView(await refusedAs422(() => roles.create(body.name, body.description, actorOf(caller))));
        return { ...created, status: 201, headers: { ...created.headers, Location: `${ctx.path}/${body.name}` } };
      },
    }),
    operation({
      id: 'getRole', tag: 'roles', method: 'get', path: '/roles/{name}', scope: ADMIN_READ_SCOPE, summary: 'Read a role and what it permits',
      params: roleName,
      answers: { 200: { description: 'The role', schema: role, headers: ['ETag'] } },
      problems: [404],
      async handle({ params }) {
        return roleView(await foundRole(params.name));
      },
    }),
    operation({
      id: 'updateRole', tag: 'roles', method: 'patch', path: '/roles/{name}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Change a role\'s description (null removes it); its name, which people hold, stays', ifMatch: true,
      params: roleName,
      body: z.strictObject({ description: z.string().max(NAME_MAX_LENGTH).nullable() }),
      answers: { 200: { description: 'The role', schema: role, headers: ['ETag'] } },
      problems: [404, 412, 428],
      async handle({ params, body, caller, ctx }) {
        const unchangedSince = ifMatch(ctx);
        const updated = await refusedAs422(() => roles.update(params.name, { description: body.description }, actorOf(caller), unchangedSince));
        if (!updated) throw new Problem('not-found', `No role ${params.name}`);
        return roleView(updated);
      },
    }),
    operation({
      id: 'deleteRole', tag: 'roles', method: 'delete', path: '/roles/{name}', scope: ADMIN_WRITE_SCOPE,
      summary: `Remove a role (never ${ADMIN_ROLE}): the people who had it lose it, and what it permitted`,
      params: roleName,
      answers: { 204: { description: 'Removed' } },
      problems: [404],
      async handle({ params, caller }) {
        const deleted = await refusedAs422(() => flows.roleAssignment.deleteRole(params.name, actorOf(caller)));
        if (!deleted.ok) throw new Problem('not-found', `No role ${params.name}`);
        return {};
      },
    }),
    operation({
      id: 'grantRolePermission', tag: 'roles', method: 'post', path: '/roles/{name}/permissions', scope: ADMIN_WRITE_SCOPE,
      summary: 'Let the role\'s people be granted these scopes of an API',
      params: roleName, body: permission,
      answers: { 200: { description: 'The role', schema: role, headers: ['ETag'] } },
      problems: [404],
      async handle({ params, body, caller }) {
        return roleView(await refusedAs422(() => roles.grant(params.name, body.api, body.scopes, actorOf(caller))));
      },
    }),
    operation({
      id: 'revokeRolePermission', tag: 'roles', method: 'delete', path: '/roles/{name}/permissions', scope: ADMIN_WRITE_SCOPE,
      summary: 'Take scopes of an API back from the role',
      params: roleName,
      query: z.strictObject({ api: z.string().min(1), scope: z.union([z.string().min(1), z.array(z.string().min(1))]).transform((value) => [value].flat()) }),
      answers: { 200: { description: 'The role', schema: role, headers: ['ETag'] } },
      problems: [404],
      async handle({ params, query, caller }) {
        return roleView(await refusedAs422(() => roles.revoke(params.name, query.api, query.scope, actorOf(caller))));
      },
    }),
    operation({
      id: 'listKeys', tag: 'keys', method: 'get', path: '/keys', scope: ADMIN_READ_SCOPE,
      summary: 'The signing keys and what each does: next (published, signs from signs_from), signing, retired, expired; or configured (JWKS)',
      query: pageQuery,
      answers: { 200: { description: 'The keys, oldest first', schema: pageOf(key) } },
      async handle({ query }) {
        const page = pageOfList(await signingKeys.list(), (entry) => `${entry.signsFrom?.toISOString() ?? ''} ${entry.alg} ${entry.kid}`, query);
        return { body: { items: page.items.map(keyView), next_cursor: page.next_cursor } };
      },
    }),
    operation({
      id: 'rotateKeys', tag: 'keys', method: 'post', path: '/keys/rotate', scope: ADMIN_WRITE_SCOPE,
      summary: 'Start a rotation: new keys are published now and sign after KEY_ROTATION_DELAY; the keys they replace stay published until their tokens expire',
      answers: { 202: { description: 'The new keys', schema: z.object({ items: z.array(key) }) } },
      problems: [409],
      async handle({ caller }) {
        try {
          const created = await signingKeys.rotate(actorOf(caller));
          return { status: 202, body: { items: created.map((entry) => keyView({ ...entry, state: 'next' })) } };
        } catch (error) {
          if (error instanceof KeyRotationError) throw new Problem('conflict', error.message);
          throw error;
        }
      },
    }),
    operation({
      id: 'createInitialAccessToken', tag: 'registration', method: 'post', path: '/initial-access-tokens', scope: ADMIN_WRITE_SCOPE,
      summary: 'An initial access token for dynamic client registration (RFC 7591): good for `uses` registrations (default one) until it expires',
      body: z.strictObject({
        uses: z.number().int().min(1).max(MAX_INITIAL_ACCESS_TOKEN_USES).default(1),
        expires_in: z.number().int().min(60).max(MAX_INITIAL_ACCESS_TOKEN_SECONDS).default(24 * 3600).describe('Seconds'),
      }),
      answers: { 201: { description: 'The token, shown this once, and the id it is listed and revoked by', schema: initialAccessToken.extend({ initial_access_token: z.string() }) } },
      async handle({ body, caller }) {
        const issued = await initialAccessTokens.issue({ uses: body.uses, expiresInSeconds: body.expires_in, actor: actorOf(caller) });
        return { status: 201, body: { initial_access_token: issued.token, ...tokenView(issued) } };
      },
    }),
    operation({
      id: 'listInitialAccessTokens', tag: 'registration', method: 'get', path: '/initial-access-tokens', scope: ADMIN_READ_SCOPE,
      summary: 'The initial access tokens that may still register a client (never the tokens themselves), soonest to expire first',
      query: pageQuery,
      answers: { 200: { description: 'The tokens', schema: pageOf(initialAccessToken) } },
      async handle({ query }) {
        const page = pageOfList(await initialAccessTokens.list(), (entry) => `${entry.expiresAt.toISOString()} ${entry.id}`, query);
        return { body: { items: page.items.map(tokenView), next_cursor: page.next_cursor } };
      },
    }),
    operation({
      id: 'revokeInitialAccessToken', tag: 'registration', method: 'delete', path: '/initial-access-tokens/{id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Withdraw an initial access token: it registers nothing more',
      params: z.strictObject({ id: z.string() }),
      answers: { 204: { description: 'Withdrawn' } },
      problems: [404],
      async handle({ params, caller }) {
        if (!await initialAccessTokens.revoke(params.id, actorOf(caller))) throw new Problem('not-found', `No initial access token has the id ${params.id}`);
        return {};
      },
    }),
    operation({
      id: 'listAuditEvents', tag: 'audit', method: 'get', path: '/audit-events', scope: ADMIN_READ_SCOPE,
      summary: 'The audit trail, newest first, a page at a time; each filter narrows',
      query: pageQuery.extend({
        user_email: z.string().min(1).optional().describe('Events about the person with this address (their account\'s, and attempts with the address)'),
        user_id: z.string().min(1).optional(), client_id: z.string().min(1).optional(),
        action: z.string().regex(/^[a-z_]+(\.[a-z_]+)?\*?$|^[a-z_]+\.\*$/, 'an action (login.failed) or a prefix (login.*)').optional()
          .describe(`One of ${AUDIT_ACTIONS.join(', ')}; or a prefix ending in *`),
        outcome: z.enum(['success', 'failure']).optional(),
        since: auditMoment.optional(),
        until: auditMoment.optional(),
      }),
      answers: { 200: { description: 'A page of events', schema: pageOf(auditEvent) } },
      async handle({ query }) {
        const before = decodeCursor(query.cursor, z.object({ occurredAt: cursorPart.moment, id: cursorPart.uuid }));
        const events = await auditTrail.list({
          userEmail: query.user_email, userId: query.user_id, clientId: query.client_id, action: query.action, outcome: query.outcome,
          since: query.since, until: query.until, before, limit: query.limit + 1,
        });
        const page = events.slice(0, query.limit);
        const last = page.at(-1);
        return { body: { items: page.map(eventView), next_cursor: events.length > query.limit && last ? encodeCursor({ occurredAt: last.occurredAt.toISOString(), id: last.id }) : null } };
      },
    }),
  ];
}
