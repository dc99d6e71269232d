// /admin/v1/users: people's accounts, through the same flows as the CLI and the pages. An account's ETag is its
// last change: a change sent with a stale one is refused (412), so two administrators never silently undo each
// other's.
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { z } from 'zod';
import { AccountError, type AccountRecord, type UserService } from '../../accounts/users.ts';
import { NAME_MAX_LENGTH } from '../../text.ts';
import type { AccountFlows } from '../../accounts/flows/index.ts';
import type { AccountSessions } from '../../oidc/account-sessions.ts';
import { ROLE_NAME } from '../../apis/roles.ts';
import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE } from '../../apis/admin-api.ts';
import { actorOf } from './authentication.ts';
import { operation, type Operation, type Reply } from './operations.ts';
import { Problem } from './problems.ts';
import { cursorPart, decodeCursor, encodeCursor, pageQuery, pageOf, pageOfList } from './paging.ts';
import { etag, ifMatch } from './versions.ts';

export interface AdminUsersDependencies {
  users: Pick<UserService, 'record' | 'search' | 'count'>;
  flows: Pick<AccountFlows, 'accountAdministration' | 'applicationAccess' | 'passwordReset' | 'roleAssignment' | 'secondFactorReset'>;
  accountSessions: Pick<AccountSessions, 'list' | 'end' | 'endAll'>;
  logger: Pick<Logger, 'warn'>;
}

const user = z.object({
  id: z.uuid(),
  email: z.email(),
  email_verified: z.boolean(),
  name: z.string().nullable(),
  roles: z.array(z.string()),
  disabled: z.boolean(),
  second_factor_enabled: z.boolean(),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
});

const session = z.object({
  id: z.string(),
  signed_in_at: z.iso.datetime().nullable(),
  methods: z.array(z.string()).describe('How the person signed in (amr): pwd, otp'),
  device: z.string().nullable(),
  ip: z.string().nullable(),
  applications: z.array(z.object({ client_id: z.string(), name: z.string() })),
});

const userId = z.strictObject({ id: z.string().describe('The account\'s id') });
const application = z.object({
  client_id: z.string(), name: z.string(),
  scopes: z.array(z.string()).describe('The scopes about the person it was allowed'),
  claims: z.array(z.string()).describe('Claims it asked for one by one and was allowed'),
  resources: z.record(z.string(), z.array(z.string())).describe('The scopes it was allowed at each API, by API identifier'),
  allowed_at: z.iso.datetime(),
});
const roleName = z.string().regex(ROLE_NAME, 'a role name: letters, digits and . _ : - (at most 64)');
/** What people are listed and counted by. */
const accountFilter = {
  // Blank is no filter at all once the address is normalized: refused rather than listing everyone.
  email: z.string().trim().min(1).optional().describe('Part of the address'),
  name: z.string().min(1).optional().describe('Part of the name, case aside'),
  role: roleName.optional(),
  disabled: z.enum(['true', 'false']).transform((value) => value === 'true').optional(),
};

function view(record: AccountRecord): z.infer<typeof user> {
  return {
    id: record.id, email: record.email, email_verified: record.emailVerified, name: record.name, roles: record.roles, disabled: record.disabled,
    second_factor_enabled: record.secondFactorEnabled, created_at: record.createdAt.toISOString(), updated_at: record.updatedAt.toISOString(),
  };
}

function versioned(record: AccountRecord, status = 200): Reply {
  return { status, body: view(record), headers: { ETag: etag(record.updatedAt) } };
}

/** An account refused for one of its fields, as a 422 naming it (a taken address is a 409, made by the caller). */
function invalidField(error: AccountError): Problem {
  const pointer = ({ weak_password: '/password', invalid_name: '/name', invalid_email: '/email', email_taken: '/email' } as const)[error.code];
  return new Problem('validation-failed', error.message, { invalidParameters: [{ in: 'body', pointer, detail: error.message }] });
}

function requestOrigin(ctx: Context) {
  return { ip: ctx.ip, userAgent: ctx.get('user-agent') || undefined };
}

export function userOperations({ users, flows, accountSessions, logger }: AdminUsersDependencies): Operation[] {
  /** The account, or 404. */
  async function found(id: string): Promise<AccountRecord> {
    const record = await users.record(id);
    if (!record) throw new Problem('not-found', `No account has the id ${id}`);
    return record;
  }
  const unknownAccount = (id: string) => new Problem('not-found', `No account has the id ${id}`);
  /** What a flow refused, as its problem: an unknown account, or the last administrator kept. */
  const refusal = (id: string, reason: string) => reason === 'last_administrator'
    ? new Problem('last-administrator', 'This is the last enabled account with the admin role: give the role to someone else first')
    : unknownAccount(id);

  return [
    operation({
      id: 'listUsers', tag: 'users', method: 'get', path: '/users', scope: ADMIN_READ_SCOPE,
      summary: 'List accounts, oldest first, a page at a time; each filter narrows',
      query: pageQuery.extend(accountFilter),
      answers: { 200: { description: 'A page of accounts', schema: pageOf(user) } },
      async handle({ query }) {
        const after = decodeCursor(query.cursor, z.object({ createdAt: cursorPart.moment, id: cursorPart.uuid }));
        const { accounts, more } = await users.search(query, { after, limit: query.limit });
        const last = accounts.at(-1);
        return { body: { items: accounts.map(view), next_cursor: more && last ? encodeCursor({ createdAt: last.createdAt.toISOString(), id: last.id }) : null } };
      },
    }),
    operation({
      // Before /users/{id}, which would take "count" for an id.
      id: 'countUsers', tag: 'users', method: 'get', path: '/users/count', scope: ADMIN_READ_SCOPE,
      summary: 'How many accounts there are; each filter narrows, as in the list',
      query: z.strictObject(accountFilter),
      answers: { 200: { description: 'The number of accounts', schema: z.object({ count: z.number().int() }) } },
      async handle({ query }) {
        return { body: { count: await users.count(query) } };
      },
    }),
    operation({
      id: 'createUser', tag: 'users', method: 'post', path: '/users', scope: ADMIN_WRITE_SCOPE,
      summary: 'Make an account (its password is checked as anyone\'s)',
      body: z.strictObject({
        // Checked as every door checks it (an internationalized domain is kept in the ASCII form mail uses).
        email: z.string().min(1).describe('An email address; one with an internationalized domain is kept in the ASCII form mail uses'), password: z.string().min(1), name: z.string().max(NAME_MAX_LENGTH).optional(),
        email_verified: z.boolean().default(false), roles: z.array(roleName).max(50).default([]),
      }),
      answers: { 201: { description: 'The account', schema: user, headers: ['Location', 'ETag'] } },
      problems: [409],
      async handle({ body, caller, ctx }) {
        let created;
        try {
          created = await flows.accountAdministration.create({ email: body.email, password: body.password, name: body.name, emailVerified: body.email_verified, roles: body.roles }, actorOf(caller));
        } catch (error) {
          if (!(error instanceof AccountError)) throw error;
          if (error.code === 'email_taken') throw new Problem('conflict', 'An account has this email address already');
          throw invalidField(error);
        }
        if (!created.ok) throw new Problem('validation-failed', `No role ${created.roles.join(', ')}: create it first`, { invalidParameters: [{ in: 'body', pointer: '/roles', detail: 'unknown role' }] });
        const record = await found(created.user.id);
        return { ...versioned(record, 201), headers: { ETag: etag(record.updatedAt), Location: `${ctx.path}/${record.id}` } };
      },
    }),
    operation({
      id: 'getUser', tag: 'users', method: 'get', path: '/users/{id}', scope: ADMIN_READ_SCOPE, summary: 'Read an account',
      params: userId,
      answers: { 200: { description: 'The account', schema: user, headers: ['ETag'] } },
      problems: [404],
      async handle({ params }) {
        return versioned(await found(params.id));
      },
    }),
    operation({
      id: 'updateUser', tag: 'users', method: 'patch', path: '/users/{id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Change the name, or whether the address counts as verified', ifMatch: true,
      params: userId,
      body: z.strictObject({ name: z.string().max(NAME_MAX_LENGTH).nullable().optional(), email_verified: z.boolean().optional() }),
      answers: { 200: { description: 'The account', schema: user, headers: ['ETag'] } },
      problems: [404, 412, 428],
      async handle({ params, body, caller, ctx }) {
        let updated;
        try {
          updated = await flows.accountAdministration.update(params.id, { name: body.name, emailVerified: body.email_verified }, actorOf(caller), ifMatch(ctx));
        } catch (error) {
          if (error instanceof AccountError) throw invalidField(error);
          throw error;
        }
        if (updated === null) throw unknownAccount(params.id);
        if (updated === 'stale') throw new Problem('precondition-failed', 'The account changed since it was read: read it again');
        return versioned(updated);
      },
    }),
    operation({
      id: 'deleteUser', tag: 'users', method: 'delete', path: '/users/{id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Delete an account: its sessions end, its grants are revoked (applications are told), then it goes with its links and second factor',
      params: userId,
      answers: { 204: { description: 'Deleted' } },
      problems: [404, 409],
      async handle({ params, caller }) {
        const record = await found(params.id);
        const deleted = await flows.accountAdministration.delete(record.email, actorOf(caller));
        if (!deleted.ok) throw refusal(params.id, deleted.reason);
        return {};
      },
    }),
    ...(['disable', 'enable'] as const).map((act) => operation({
      id: `${act}User`, tag: 'users', method: 'post', path: `/users/{id}/${act}`, scope: ADMIN_WRITE_SCOPE,
      summary: act === 'disable'
        ? 'Disable an account: it signs in nowhere, its sessions end and every grant and token it holds stops working at once'
        : 'Let a disabled account sign in again (nothing it had is given back)',
      params: userId,
      answers: { 200: { description: 'The account', schema: user, headers: ['ETag'] } },
      problems: act === 'disable' ? [404, 409] : [404],
      async handle({ params, caller }) {
        const record = await found(params.id);
        const changed = await flows.accountAdministration[act](record.email, actorOf(caller));
        if (!changed.ok) throw refusal(params.id, changed.reason);
        return versioned(await found(params.id));
      },
    })),
    operation({
      id: 'unlockUser', tag: 'users', method: 'post', path: '/users/{id}/unlock', scope: ADMIN_WRITE_SCOPE,
      summary: 'Lift the account\'s lockouts, of the password and of the second factor, and forget its failed attempts',
      params: userId,
      answers: { 204: { description: 'Unlocked' } },
      problems: [404],
      async handle({ params, caller }) {
        const unlocked = await flows.accountAdministration.unlock((await found(params.id)).email, actorOf(caller));
        if (!unlocked.ok) throw unknownAccount(params.id);
        return {};
      },
    }),
    operation({
      id: 'resetSecondFactor', tag: 'users', method: 'delete', path: '/users/{id}/second-factor', scope: ADMIN_WRITE_SCOPE,
      summary: 'Turn off the account\'s second factor (a lost authenticator): its sessions end and the person is told by email',
      params: userId,
      answers: {
        200: {
          description: 'What was removed',
          schema: z.object({
            removed: z.enum(['nothing', 'unfinished_setup', 'second_factor']),
            notified: z.boolean().optional().describe('With second_factor: whether the person was told by email; false: the mail server did not take it, tell them yourself'),
          }),
        },
      },
      problems: [404],
      async handle({ params, caller }) {
        const reset = await flows.secondFactorReset.reset({ email: (await found(params.id)).email, actor: actorOf(caller), endSessions: true });
        if (!reset.ok) throw unknownAccount(params.id);
        if (reset.removed !== 'second_factor') return { body: { removed: reset.removed } };
        // Sent before the answer, as the CLI does: the administrator learns whether the person was told.
        const notified = await reset.notice().then(() => true, (error: unknown) => {
          logger.warn({ err: error, accountId: reset.user.id }, 'second-factor reset notice not sent');
          return false;
        });
        return { body: { removed: reset.removed, notified } };
      },
    }),
    operation({
      id: 'sendPasswordReset', tag: 'users', method: 'post', path: '/users/{id}/password-reset', scope: ADMIN_WRITE_SCOPE,
      summary: 'Email the person a link to set a new password',
      params: userId,
      answers: { 202: { description: 'The link is sent, or queued until the mail server takes it', schema: z.object({ email: z.email().describe('Where it goes') }) } },
      problems: [404, 409],
      async handle({ params, caller, ctx }) {
        const record = await found(params.id);
        if (record.disabled) throw new Problem('conflict', 'The account is disabled: enable it first');
        await flows.passwordReset.requestLink(record.email, requestOrigin(ctx), actorOf(caller));
        return { status: 202, body: { email: record.email } };
      },
    }),
    operation({
      id: 'addUserRole', tag: 'users', method: 'put', path: '/users/{id}/roles/{role}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Give the person a role',
      params: z.strictObject({ id: z.string(), role: roleName }),
      answers: { 200: { description: 'The account', schema: user, headers: ['ETag'] } },
      problems: [404],
      async handle({ params, caller }) {
        const assigned = await flows.roleAssignment.add((await found(params.id)).email, params.role, actorOf(caller));
        if (!assigned.ok) throw new Problem('not-found', assigned.reason === 'unknown_role' ? `No role ${params.role}: create it first` : `No account has the id ${params.id}`);
        return versioned(await found(params.id));
      },
    }),
    operation({
      id: 'removeUserRole', tag: 'users', method: 'delete', path: '/users/{id}/roles/{role}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Take a role away from the person',
      params: z.strictObject({ id: z.string(), role: roleName }),
      answers: { 200: { description: 'The account', schema: user, headers: ['ETag'] } },
      problems: [404, 409],
      async handle({ params, caller }) {
        const removed = await flows.roleAssignment.remove((await found(params.id)).email, params.role, actorOf(caller));
        if (!removed.ok) throw refusal(params.id, removed.reason);
        return versioned(await found(params.id));
      },
    }),
    operation({
      id: 'listUserSessions', tag: 'users', method: 'get', path: '/users/{id}/sessions', scope: ADMIN_READ_SCOPE,
      summary: 'The person\'s sessions, oldest first: where they are signed in, and to which applications',
      params: userId, query: pageQuery,
      answers: { 200: { description: 'The sessions', schema: pageOf(session) } },
      problems: [404],
      async handle({ params, query }) {
        const sessions = await accountSessions.list((await found(params.id)).id);
        const page = pageOfList(sessions, (entry) => `${String(entry.loginTs ?? 0).padStart(12, '0')} ${entry.uid}`, query);
        return {
          body: {
            next_cursor: page.next_cursor,
            items: page.items.map((entry) => ({
              id: entry.uid, signed_in_at: entry.loginTs ? new Date(entry.loginTs * 1000).toISOString() : null, methods: entry.amr,
              device: entry.device ?? null, ip: entry.ip ?? null, applications: entry.applications.map((application) => ({ client_id: application.clientId, name: application.name })),
            })),
          },
        };
      },
    }),
    operation({
      id: 'endUserSessions', tag: 'users', method: 'delete', path: '/users/{id}/sessions', scope: ADMIN_WRITE_SCOPE,
      summary: 'Sign the person out everywhere: every session ends and every grant is revoked (applications are told)',
      params: userId,
      answers: { 200: { description: 'What ended', schema: z.object({ sessions_ended: z.number().int(), grants_revoked: z.number().int() }) } },
      problems: [404],
      async handle({ params, caller, ctx }) {
        const ended = await accountSessions.endAll((await found(params.id)).id, { reason: 'ended_by_administrator', request: requestOrigin(ctx), actor: actorOf(caller) });
        return { body: { sessions_ended: ended.sessions, grants_revoked: ended.grants } };
      },
    }),
    operation({
      id: 'listUserApplications', tag: 'users', method: 'get', path: '/users/{id}/applications', scope: ADMIN_READ_SCOPE,
      summary: 'The applications the person allowed, and what each may have (as their account\'s "Apps with access" page shows them), by client id',
      params: userId, query: pageQuery,
      answers: { 200: { description: 'The applications', schema: pageOf(application) } },
      problems: [404],
      async handle({ params, query }) {
        const page = pageOfList(await flows.applicationAccess.list(await found(params.id)), (entry) => entry.clientId, query);
        return {
          body: {
            next_cursor: page.next_cursor,
            items: page.items.map((entry) => ({
              client_id: entry.clientId, name: entry.name, scopes: entry.scopes, claims: entry.claims, resources: entry.resources, allowed_at: entry.grantedAt.toISOString(),
            })),
          },
        };
      },
    }),
    operation({
      id: 'withdrawUserApplication', tag: 'users', method: 'delete', path: '/users/{id}/applications/{client_id}', scope: ADMIN_WRITE_SCOPE,
      summary: 'Withdraw an application\'s access to the person\'s account: its consent is forgotten (it asks again), its grants and their tokens are revoked, its sessions told',
      params: z.strictObject({ id: z.string(), client_id: z.string() }),
      answers: { 200: { description: 'What was revoked', schema: z.object({ grants_revoked: z.number().int() }) } },
      problems: [404],
      async handle({ params, caller, ctx }) {
        const withdrawn = await flows.applicationAccess.withdraw(await found(params.id), params.client_id, requestOrigin(ctx), actorOf(caller));
        if (!withdrawn.ok) throw new Problem('not-found', `The person has not allowed an application ${params.client_id}`);
        return { body: { grants_revoked: withdrawn.grantsRevoked } };
      },
    }),
    operation({
      id: 'endUserSession', tag: 'users', method: 'delete', path: '/users/{id}/sessions/{session}', scope: ADMIN_WRITE_SCOPE,
      summary: 'End one of the person\'s sessions (its applications are told)',
      params: z.strictObject({ id: z.string(), session: z.string() }),
      answers: { 204: { description: 'Ended' } },
      problems: [404],
      async handle({ params, caller, ctx }) {
        const ended = await accountSessions.end((await found(params.id)).id, params.session, { reason: 'ended_by_administrator', request: requestOrigin(ctx), actor: actorOf(caller) });
        if (!ended) throw new Problem('not-found', `The person has no session ${params.session}`);
        return {};
      },
    }),
  ];
}
