// The API records (src/apis/): what an administrator may register, change and remove, each change audited, and
// what a client may be allowed of them. The protocol side is test/resource-indicators.test.ts.
import test from 'ava';
import { API_CHANGES_CHANNEL, ApiError, ApiService, type Api } from '../src/apis/apis.ts';
import { ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE, adminApiIdentifier, ensureAdminApi } from '../src/apis/admin-api.ts';
import { RoleError } from '../src/apis/roles.ts';
import { AnnouncedCache } from '../src/store/announced-cache.ts';
import { MemoryStore } from '../src/store/index.ts';
import { auditEvents, openTestRuntime, type TestRuntime } from './helpers/runtime.ts';
import { until } from './helpers/wait.ts';

let test_: TestRuntime;
test.before(async () => {
  test_ = await openTestRuntime();
});
test.after.always(async () => {
  await test_?.close();
});

const identifierFor = (name: string) => `https://${name}-${crypto.randomUUID()}.example.com/api`;

test('an API is registered with defaults (JWT, ES256, the configured lifetime), changed and removed, each audited with its actor', async (t) => {
  const { apis, config } = test_.runtime;
  const identifier = identifierFor('orders');
  const actor = { type: 'admin' as const, id: 'cli:ada' };
  const created = await apis.create({ identifier, name: ' Orders ', scopes: [{ name: 'orders:read', description: ' See your orders ' }] }, actor);
  t.like(created, { identifier, name: 'Orders', accessTokenFormat: 'jwt', signingAlg: 'ES256', accessTokenTtl: config.ttl.accessToken });
  t.deepEqual(created.scopes, [{ name: 'orders:read', description: 'See your orders' }]);

  const updated = await apis.update(identifier, { scopes: [{ name: 'orders:write' }], accessTokenTtl: 120 }, actor);
  t.like(updated, { name: 'Orders', accessTokenTtl: 120, scopes: [{ name: 'orders:write' }] });
  t.is(await apis.update(identifierFor('missing'), { name: 'x' }), undefined);

  t.true(await apis.delete(identifier, actor));
  t.false(await apis.delete(identifier, actor));
  t.is(await apis.find(identifier), undefined);

  const audited = async (action: string) => auditEvents(test_.runtime, action, (event) => (event.detail as { identifier?: string }).identifier === identifier);
  for (const action of ['api.created', 'api.updated', 'api.deleted']) {
    const [event] = await audited(action);
    t.like(event, { outcome: 'success', actorType: 'admin', actorId: 'cli:ada' }, action);
  }
});

test('what cannot be an API is refused, saying why', async (t) => {
  const { apis } = test_.runtime;
  const scopes = [{ name: 'orders:read' }];
  const refusals: Array<[input: Parameters<typeof apis.create>[0], message: RegExp]> = [
    [{ identifier: 'http://api.example.com/orders', name: 'A', scopes }, /an API identifier must use https/],
    [{ identifier: 'https://api.example.com/orders#x', name: 'A', scopes }, /must not have a fragment/],
    [{ identifier: 'orders', name: 'A', scopes }, /must be an absolute URL/],
    [{ identifier: identifierFor('a'), name: ' ', scopes }, /needs a name/],
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'openid' }] }, /"openid" is a scope about the person already/],
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'orders read' }] }, /cannot be a scope/],
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'x' }, { name: 'x' }] }, /given twice/],
    // A client allowed admin:write for this API could otherwise ask for it at Gatehouse's admin API.
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'admin:write' }] }, /"admin:write": scopes named admin:… are Gatehouse's admin API's/],
    [{ identifier: identifierFor('a'), name: 'A', scopes, accessTokenTtl: 10 }, /from 60 to 86400 seconds/],
    // The same limits for every door (the admin API, the CLI): what consent pages show is a name, on one line.
    [{ identifier: identifierFor('a'), name: 'Orders\nAPI', scopes }, /an API's name cannot contain line breaks/],
    [{ identifier: identifierFor('a'), name: 'x'.repeat(201), scopes }, /an API's name can have at most 200 characters/],
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'o'.repeat(129) }] }, /a scope's name can have at most 128 characters/],
    [{ identifier: identifierFor('a'), name: 'A', scopes: [{ name: 'orders:read', description: 'd'.repeat(201) }] }, /the description of "orders:read" can have at most 200 characters/],
  ];
  for (const [input, message] of refusals) await t.throwsAsync(apis.create(input), { instanceOf: ApiError, message }, input.identifier);

  const taken = identifierFor('taken');
  await apis.create({ identifier: taken, name: 'Taken', scopes });
  await t.throwsAsync(apis.create({ identifier: taken, name: 'Again', scopes }), { instanceOf: ApiError, message: /registered as .* already/ });
  await t.throwsAsync(apis.update(taken, { scopes: [{ name: 'admin:read' }] }), { instanceOf: ApiError, message: /are Gatehouse's admin API's/ });
  // Loopback http stays possible, for an API in development; never in production.
  const local = () => `http://127.0.0.1:${4000 + Math.floor(Math.random() * 1000)}/${crypto.randomUUID()}`;
  t.truthy(await apis.create({ identifier: local(), name: 'Local', scopes }));
  const { database, auditTrail } = test_.runtime;
  const production = new ApiService(database.prisma, auditTrail, {
    defaultTtlSeconds: 600, signingAlgorithms: new Set(['ES256']), httpsOnly: true, clients: test_.runtime.clients, cache: new AnnouncedCache<Api>(new MemoryStore({ prefix: 'apis-test:' }), { channel: API_CHANGES_CHANNEL, maxAgeMs: 0, maxEntries: 1, maxUnknownKeys: 1 }),
  });
  await t.throwsAsync(production.create({ identifier: local(), name: 'Local', scopes }), { instanceOf: ApiError, message: 'an API identifier must use https in production' });
});

test('a client may only be allowed scopes a registered API defines, and a default API that is registered and has one of them', async (t) => {
  const { apis, clients } = test_.runtime;
  const identifier = identifierFor('billing');
  await apis.create({ identifier, name: 'Billing', scopes: [{ name: 'billing:read' }] });
  await t.throwsAsync(clients.create({ name: 'S', type: 'service', apiScopes: ['billing:raed'] }), { message: 'no registered API defines the scope "billing:raed"' });
  await t.throwsAsync(clients.create({ name: 'S', type: 'service', apiScopes: ['billing:read'], defaultApi: identifierFor('nowhere') }), { message: /no API is registered as/ });
  const created = await clients.create({ name: 'S', type: 'service', apiScopes: ['billing:read'], defaultApi: identifier });
  t.like(created, { api_scopes: 'billing:read', default_resource: identifier });
  const cleared = await clients.update(created.client_id, { apiScopes: [], defaultApi: null });
  t.false('api_scopes' in cleared! || 'default_resource' in cleared!);
});

test('a scope description stored before today\'s limits stays as it is when other scopes change; a new one is held to them', async (t) => {
  const { apis } = test_.runtime;
  const identifier = identifierFor('legacy');
  const long = `${'Read the orders '.repeat(15)}\nand their lines`;
  await apis.create({ identifier, name: 'Legacy', scopes: [{ name: 'orders:read' }, { name: 'orders:write' }] });
  await test_.runtime.database.prisma.api.update({ where: { identifier }, data: { scopes: [{ name: 'orders:read', description: long }, { name: 'orders:write' }] } });
  // Rewording another scope restates them all, as the CLI and a read-modify-write through the admin API do.
  const updated = await apis.update(identifier, { scopes: [{ name: 'orders:read', description: long }, { name: 'orders:write', description: 'Change orders' }] });
  t.deepEqual(updated?.scopes, [{ name: 'orders:read', description: long }, { name: 'orders:write', description: 'Change orders' }]);
  await t.throwsAsync(apis.update(identifier, { scopes: [{ name: 'orders:read', description: `${long}!` }] }), { instanceOf: ApiError, message: /the description of "orders:read"/ });
});

test('a role\'s description is held to the same limits by every door: at most 200 characters, on one line', async (t) => {
  const { roles } = test_.runtime;
  const role = `clerk-${crypto.randomUUID().slice(0, 8)}`;
  await t.throwsAsync(roles.create(role, 'd'.repeat(201)), { instanceOf: RoleError, message: /a role's description can have at most 200 characters/ });
  await t.throwsAsync(roles.create(role, 'one\ntwo'), { instanceOf: RoleError, message: /cannot contain line breaks/ });
  await roles.create(role, '  Keeps the books  ');
  t.is((await roles.find(role))?.description, 'Keeps the books');
  await t.throwsAsync(roles.update(role, { description: 'd'.repeat(201) }), { instanceOf: RoleError });
});

test('a scope an API no longer defines is permitted by no role: defined again, it is not granted unasked; each role that lost one is a new version', async (t) => {
  const { apis, roles } = test_.runtime;
  const identifier = identifierFor('inventory');
  const role = `stock-keeper-${crypto.randomUUID().slice(0, 8)}`;
  await apis.create({ identifier, name: 'Inventory', scopes: [{ name: 'stock:read' }, { name: 'stock:write' }] });
  await roles.create(role, undefined);
  await roles.grant(role, identifier, ['stock:read', 'stock:write']);
  t.deepEqual([...await roles.permittedScopes([role], identifier)].sort(), ['stock:read', 'stock:write']);
  const version = async () => (await roles.find(role))!.updatedAt.getTime();
  // A version is a millisecond: each change below comes in a later one.
  const nextMillisecond = (after: number) => until(() => Date.now() > after, 'the clock to move on');
  const granted = await version();
  await nextMillisecond(granted);
  await apis.update(identifier, { scopes: [{ name: 'stock:read' }] });
  const narrowed = await version();
  t.true(narrowed > granted, 'the role is a new version: it permits less');
  await apis.update(identifier, { scopes: [{ name: 'stock:read' }, { name: 'stock:write' }] });
  t.deepEqual([...await roles.permittedScopes([role], identifier)], ['stock:read']);
  t.is(await version(), narrowed, 'what it permits did not change');
  await nextMillisecond(narrowed);
  await apis.delete(identifier);
  t.deepEqual((await roles.find(role))!.permissions, []);
  t.true(await version() > narrowed, 'nor does it permit anything there once the API is gone');
});

test('a change to an API takes from clients what it took away: scopes no API defines any more, and once deleted, the API as default or resource server; each client stays changeable', async (t) => {
  const { apis, clients } = test_.runtime;
  const orders = identifierFor('orders');
  const shop = identifierFor('shop');
  const tag = crypto.randomUUID().slice(0, 8);
  const [read, write, shared, readers] = [`o${tag}:read`, `o${tag}:write`, `o${tag}:shared`, `o${tag}:read.all`] as const;
  await apis.create({ identifier: orders, name: 'Orders', scopes: [{ name: read }, { name: write }, { name: shared }] });
  // Its scope names begin as one of the orders API's does: a client allowed it keeps it whatever that API does.
  await apis.create({ identifier: shop, name: 'Shop', scopes: [{ name: shared }, { name: readers }] });
  const defaulted = await clients.create({ name: 'Defaulted', type: 'service', apiScopes: [read, shared, readers], defaultApi: orders });
  const readOnly = await clients.create({ name: 'Read only', type: 'service', apiScopes: [read], defaultApi: orders });
  const resourceServer = await clients.create({ name: 'Orders API', type: 'service', resourceServer: orders, apiScopes: [readers] });
  const untouched = await clients.create({ name: 'Shop only', type: 'service', apiScopes: [readers], defaultApi: shop });
  const stored = async (clientId: string) => (await clients.record(clientId))!.metadata;
  const actor = { type: 'admin' as const, id: `cli:${tag}` };

  await apis.update(orders, { scopes: [{ name: write }, { name: shared }] }, actor);
  t.like(await stored(defaulted.client_id), { api_scopes: `${shared} ${readers}`, default_resource: orders }, 'the default API still has one of its scopes');
  const readOnlyNow = await stored(readOnly.client_id);
  t.false('api_scopes' in readOnlyNow || 'default_resource' in readOnlyNow, 'nothing left to ask of its default API');
  t.deepEqual(await stored(untouched.client_id), untouched);

  t.true(await apis.delete(orders, actor));
  const defaultedNow = await stored(defaulted.client_id);
  t.is(defaultedNow.api_scopes, `${shared} ${readers}`, 'the shop API defines them still');
  t.false('default_resource' in defaultedNow);
  t.false('resource_server' in await stored(resourceServer.client_id));
  t.deepEqual(await stored(untouched.client_id), untouched);
  // Every door accepts each of them again as it is.
  for (const client of [defaulted, readOnly, resourceServer]) t.truthy(await clients.update(client.client_id, { name: 'Renamed' }));

  const changes = await auditEvents(test_.runtime, 'client.updated', (event) => event.actorId === actor.id);
  const detail = (changed: string[], because: string) => ({ changed, because, api: orders });
  t.is(changes.length, 4);
  t.deepEqual(Object.fromEntries(changes.map((event) => [`${event.clientId} ${(event.detail as { because: string }).because}`, event.detail])), {
    [`${defaulted.client_id} api.updated`]: detail(['apiScopes'], 'api.updated'),
    [`${defaulted.client_id} api.deleted`]: detail(['defaultApi'], 'api.deleted'),
    [`${readOnly.client_id} api.updated`]: detail(['apiScopes', 'defaultApi'], 'api.updated'),
    [`${resourceServer.client_id} api.deleted`]: detail(['resourceServer'], 'api.deleted'),
  });
});

test('instances starting at once each make sure of the admin API: one that remembers it missing, when another made it meanwhile, starts all the same', async (t) => {
  const { database, auditTrail, clients, roles } = test_.runtime;
  // Each as another process: a cache of its own, announcements on a store of its own (so none reaches the other).
  const issuer = `https://id-${crypto.randomUUID()}.example.com`;
  const identifier = adminApiIdentifier(issuer);
  const instance = () => new ApiService(database.prisma, auditTrail, {
    defaultTtlSeconds: 600, signingAlgorithms: new Set(['ES256']), builtIn: identifier, clients,
    cache: new AnnouncedCache<Api>(new MemoryStore({ prefix: 'apis-test:' }), { channel: API_CHANGES_CHANNEL, maxAgeMs: 60_000, maxEntries: 10, maxUnknownKeys: 10 }),
  });
  const [first, second] = [instance(), instance()];
  t.is(await second.find(identifier), undefined, 'the second has looked, and remembers it missing');
  await ensureAdminApi(issuer, first, roles);
  await t.notThrowsAsync(ensureAdminApi(issuer, second, roles));
  t.like(await second.stored(identifier), { identifier, scopes: [{ name: ADMIN_READ_SCOPE }, { name: ADMIN_WRITE_SCOPE }] });
});
