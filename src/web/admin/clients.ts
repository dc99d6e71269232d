// /admin/v1/clients: the applications people sign in to and the services that call APIs, registered under the
// same rules as the CLI's (ClientService): PKCE, exact redirect URIs (https, or http on loopback), logout URIs by
// type. A client's secret is shown once, when it is made or rotated; a rotation may let the old one work a while.
import { z } from 'zod';
import { CLIENT_TYPES, ClientChangedMeanwhile, ClientError, LONGEST_REFRESH_TOKEN_GRACE_PERIOD, SECRET_AUTH_METHODS, clientTypeOf, withoutSecret, type ClientRecord, type ClientService } from '../../clients/clients.ts';
import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE } from '../../apis/admin-api.ts';
import { actorOf } from './authentication.ts';
import { operation, type Operation, type Reply } from './operations.ts';
import { Problem } from './problems.ts';
import { cursorPart, decodeCursor, encodeCursor, pageOf, pageQuery } from './paging.ts';
import { etag, ifMatch } from './versions.ts';

export interface AdminClientsDependencies {
  clients: Pick<ClientService, 'create' | 'record' | 'page' | 'update' | 'delete' | 'rotateSecret'>;
}

/** The longest an old secret may keep working after a rotation: a week. */
const MAX_SECRET_OVERLAP_SECONDS = 7 * 24 * 3600;

const uris = z.array(z.string().min(1)).max(50);
const client = z.object({
  client_id: z.string(),
  type: z.enum(CLIENT_TYPES),
  client_name: z.string(),
  redirect_uris: z.array(z.string()),
  post_logout_redirect_uris: z.array(z.string()),
  scope: z.string().optional().describe('The scopes about the person it may ask for'),
  api_scopes: z.string().optional().describe('The API scopes it may ask for'),
  default_resource: z.string().optional().describe('The API its tokens are for when a request names none'),
  resource_server: z.string().optional().describe('The API whose tokens it may introspect'),
  first_party: z.boolean().optional(),
  require_second_factor: z.boolean().optional(),
  token_endpoint_auth_method: z.string(),
  backchannel_logout_uri: z.string().optional(),
  frontchannel_logout_uri: z.string().optional(),
  refresh_token_grace_period: z.number().int().optional().describe('Seconds in which a refresh token presented again gets the first answer'),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
}).catchall(z.unknown());
const withSecret = client.extend({ client_secret: z.string().optional().describe('Shown this once: keep it safe') });
const clientId = z.strictObject({ client_id: z.string() });
const apiScopes = z.array(z.string().min(1)).max(100);
const gracePeriod = z.number().int().min(0).max(LONGEST_REFRESH_TOKEN_GRACE_PERIOD).describe('Seconds (0: off) in which a refresh token presented again gets the answer it got the first time');

function view(record: ClientRecord, secret?: string): Record<string, unknown> {
  const shown = withoutSecret(record.metadata);
  return {
    ...shown, type: clientTypeOf(record.metadata), redirect_uris: shown.redirect_uris ?? [], post_logout_redirect_uris: shown.post_logout_redirect_uris ?? [],
    created_at: record.createdAt.toISOString(), updated_at: record.updatedAt.toISOString(),
    ...(secret ? { client_secret: secret } : {}),
  };
}

function versioned(record: ClientRecord, status = 200, secret?: string): Reply {
  return { status, body: view(record, secret), headers: { ETag: etag(record.updatedAt) } };
}

/** The clients' own refusals (an invalid redirect URI, a setting its type does not take) are the caller's mistake: 422. */
async function refusedAs422<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ClientChangedMeanwhile) throw new Problem('precondition-failed', 'The client changed since it was read: read it again');
    if (error instanceof ClientError) throw new Problem('validation-failed', error.message);
    throw error;
  }
}

export function clientOperations({ clients }: AdminClientsDependencies): Operation[] {
  async function found(id: string): Promise<ClientRecord> {
    const record = await clients.record(id);
    if (!record) throw new Problem('not-found', `No client has the id ${id}`);
    return record;
  }

  return [
    operation({
      id: 'listClients', tag: 'clients', method: 'get', path: '/clients', scope: ADMIN_READ_SCOPE,
      summary: 'List clients, oldest first, a page at a time (never with a secret); each filter narrows',
      query: pageQuery.extend({ type: z.enum(CLIENT_TYPES).optional(), name: z.string().min(1).max(200).optional().describe('Part of the name, case aside') }),
      answers: { 200: { description: 'A page of clients', schema: pageOf(client) } },
      async handle({ query }) {
        const after = decodeCursor(query.cursor, z.object({ createdAt: cursorPart.moment, id: cursorPart.text }));
        const { clients: records, more } = await clients.page({ type: query.type, name: query.name }, { after, limit: query.limit });
        const last = records.at(-1);
        return { body: { items: records.map((record) => view(record)), next_cursor: more && last ? encodeCursor({ createdAt: last.createdAt.toISOString(), id: last.metadata.client_id }) : null } };
      },
    }),
    operation({
      id: 'createClient', tag: 'clients', method: 'post', path: '/clients', scope: ADMIN_WRITE_SCOPE,
      summary: 'Register a client: its secret (web and service clients) is in this answer only',
      body: z.strictObject({
        name: z.string().min(1).max(200), type: z.enum(CLIENT_TYPES),
        redirect_uris: uris.optional(), post_logout_redirect_uris: uris.optional(),
        scope: z.string().max(1000).optional(), api_scopes: apiScopes.optional(),
        default_api: z.string().optional(), resource_server: z.string().optional(),
        require_second_factor: z.boolean().optional(), first_party: z.boolean().optional(),
        token_endpoint_auth_method: z.enum(SECRET_AUTH_METHODS).optional(),
        backchannel_logout_uri: z.string().optional(), frontchannel_logout_uri: z.string().optional(),
        refresh_token_grace_period: gracePeriod.optional(),
      }),
      answers: { 201: { description: 'The client, with its secret', schema: withSecret, headers: ['Location', 'ETag'] } },
      async handle({ body, caller, ctx }) {
        const metadata = await refusedAs422(() => clients.create({
          name: body.name, type: body.type, redirectUris: body.redirect_uris, postLogoutRedirectUris: body.post_logout_redirect_uris, scope: body.scope,
          apiScopes: body.api_scopes, defaultApi: body.default_api, resourceServer: body.resource_server, requireSecondFactor: body.require_second_factor,
          firstParty: body.first_party, tokenEndpointAuthMethod: body.token_endpoint_auth_method,
          backchannelLogoutUri: body.backchannel_logout_uri, frontchannelLogoutUri: body.frontchannel_logout_uri,
          refreshTokenGracePeriod: body.refresh_token_grace_period,
        }, actorOf(caller)));
        const record = await found(metadata.client_id);
        const reply = versioned(record, 201, typeof metadata.client_secret === 'string' ? metadata.client_secret : undefined);
        return { ...reply, headers: { ...reply.headers, Location: `${ctx.path}/${metadata.client_id}` } };
      },
    }),
    operation({
      id: 'getClient', tag: 'clients', method: 'get', path: '/clients/{client_id}', scope: ADMIN_READ_SCOPE, summary: 'Read a client (never its secret)',
      params: clientId,
      answers: { 200: { description: 'The client', schema: client, headers: ['ETag'] } },
      problems: [404],
      async handle({ params }) {
        return versioned(await found(params.client_id));
      },
    }),
    operation({
      id: 'updateClient', tag: 'clients', method: 'patch', path: '/clients/{client_id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Change a client\'s settings: those given replace the old ones (null removes one); its id, type and secret stay', ifMatch: true,
      params: clientId,
      body: z.strictObject({
        name: z.string().min(1).max(200).optional(), redirect_uris: uris.optional(), post_logout_redirect_uris: uris.optional(),
        scope: z.string().max(1000).optional(), api_scopes: apiScopes.optional(),
        default_api: z.string().nullable().optional(), resource_server: z.string().nullable().optional(), first_party: z.boolean().optional(),
        require_second_factor: z.boolean().optional(),
        backchannel_logout_uri: z.string().nullable().optional(), frontchannel_logout_uri: z.string().nullable().optional(),
        refresh_token_grace_period: gracePeriod.optional(),
      }),
      answers: { 200: { description: 'The client', schema: client, headers: ['ETag'] } },
      problems: [404, 412, 428],
      async handle({ params, body, caller, ctx }) {
        const unchangedSince = ifMatch(ctx);
        const updated = await refusedAs422(() => clients.update(params.client_id, {
          name: body.name, redirectUris: body.redirect_uris, postLogoutRedirectUris: body.post_logout_redirect_uris, scope: body.scope, apiScopes: body.api_scopes,
          defaultApi: body.default_api, resourceServer: body.resource_server, firstParty: body.first_party, requireSecondFactor: body.require_second_factor,
          backchannelLogoutUri: body.backchannel_logout_uri, frontchannelLogoutUri: body.frontchannel_logout_uri,
          refreshTokenGracePeriod: body.refresh_token_grace_period,
        }, actorOf(caller), unchangedSince));
        if (!updated) throw new Problem('not-found', `No client has the id ${params.client_id}`);
        return versioned(await found(params.client_id));
      },
    }),
    operation({
      id: 'deleteClient', tag: 'clients', method: 'delete', path: '/clients/{client_id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Remove a client: every token it holds stops working at once',
      params: clientId,
      answers: { 204: { description: 'Removed' } },
      problems: [404],
      async handle({ params, caller }) {
        if (!await clients.delete(params.client_id, actorOf(caller))) throw new Problem('not-found', `No client has the id ${params.client_id}`);
        return {};
      },
    }),
    operation({
      id: 'rotateClientSecret', tag: 'clients', method: 'post', path: '/clients/{client_id}/secret', scope: ADMIN_WRITE_SCOPE,
      summary: 'Give a client a new secret; the old one keeps working for overlap_seconds (default an hour, 0 to stop it at once)',
      params: clientId,
      body: z.strictObject({ overlap_seconds: z.number().int().min(0).max(MAX_SECRET_OVERLAP_SECONDS).default(3600) }),
      answers: { 200: { description: 'The client, with its new secret', schema: withSecret, headers: ['ETag'] } },
      problems: [404],
      async handle({ params, body, caller }) {
        const rotated = await refusedAs422(() => clients.rotateSecret(params.client_id, body.overlap_seconds, actorOf(caller)));
        if (!rotated) throw new Problem('not-found', `No client has the id ${params.client_id}`);
        return versioned(await found(params.client_id), 200, String(rotated.client_secret));
      },
    }),
  ];
}
