// The person as token requests read them (UserService.findForTokens) is kept in memory when the store is shared
// (Redis): every change made through Gatehouse is seen by the next read at once, on the server that made it (other
// servers: client-cache.test.ts). On the in-process store it is read each time: the CLI's changes could not be heard.
import test from 'ava';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { createUser } from './helpers/oauth.ts';
import { until } from './helpers/wait.ts';
import type { TokenHolder } from '../src/accounts/users.ts';

let server: TestServer;

test.before(async () => {
  server = await startTestServer();
  if (server.runtime.config.redis) await until(() => server.runtime.users.cacheActive, 'the cache of token holders to listen for changes');
});
test.after.always(async () => {
  await server?.close();
});

/** A person whose token-holder record this server has just read (and so keeps). */
async function readPerson(): Promise<TokenHolder> {
  const { id } = await createUser(server);
  const holder = await server.runtime.users.findForTokens(id);
  if (!holder) throw new Error('the person just made was not found');
  return holder;
}

test.serial('on a shared store it is kept (a change made straight in the database is not seen), else read each time', async (t) => {
  const person = await readPerson();
  await server.runtime.database.prisma.user.update({ where: { id: person.id }, data: { name: 'Changed behind its back' } });
  const kept = server.runtime.users.cacheActive;
  t.is(kept, server.runtime.config.redis !== undefined);
  t.is((await server.runtime.users.findForTokens(person.id))?.name, kept ? person.name : 'Changed behind its back');
  t.is((await server.runtime.users.findById(person.id))?.name, 'Changed behind its back', 'the database has the change');
});

test.serial('every change through the account service is seen at once: roles, disabling, profile, email, password, deletion', async (t) => {
  const { users, flows } = server.runtime;
  const person = await readPerson();
  const current = async () => users.findForTokens(person.id);

  // A role is given only while it exists.
  const auditor = `auditor-${crypto.randomUUID().slice(0, 8)}`;
  await users.setRole(person.id, auditor, true);
  t.deepEqual((await current())?.roles, [], 'no such role');
  await server.runtime.roles.create(auditor, undefined);
  await users.setRole(person.id, auditor, true);
  t.deepEqual((await current())?.roles, [auditor], 'role given');
  await users.setRole(person.id, auditor, false);
  t.deepEqual((await current())?.roles, [], 'role taken');
  await users.setDisabled(person.id, true);
  t.true((await current())?.disabled, 'disabled');
  await users.setDisabled(person.id, false);
  t.false((await current())?.disabled, 'enabled');
  await users.updateProfile(person.id, { name: 'Grace Hopper', emailVerified: false });
  t.like(await current(), { name: 'Grace Hopper', emailVerified: false }, 'profile');
  t.true((await users.markEmailVerified(person.id, person.email))?.emailVerified);
  t.true((await current())?.emailVerified, 'email verified');
  await users.updateProfile(person.id, { emailVerified: false });
  await current();
  await users.setPassword(person.id, 'a brand new passphrase for tests', { confirmedEmail: person.email });
  t.true((await current())?.emailVerified, 'a password set through an emailed link verifies the address');
  const moved = `moved-${crypto.randomUUID()}@example.com`;
  await users.changeEmail(person.id, moved);
  t.is((await current())?.email, moved, 'email changed');

  // A role deleted is taken from everyone who had it, in one statement: everyone's kept record is forgotten.
  const role = `temporary-${crypto.randomUUID().slice(0, 8)}`;
  await server.runtime.roles.create(role, undefined);
  const other = await readPerson();
  await users.setRole(person.id, role, true);
  await users.setRole(other.id, role, true);
  for (const holder of [person, other]) t.deepEqual((await users.findForTokens(holder.id))?.roles, [role]);
  t.like(await flows.roleAssignment.deleteRole(role, { type: 'admin' }), { ok: true, peopleWhoHadIt: 2 });
  for (const holder of [person, other]) t.deepEqual((await users.findForTokens(holder.id))?.roles, [], 'role deleted');

  t.true(await users.delete(person.id));
  t.is(await current(), null, 'deleted');
});

test.serial('what cannot be an account id is looked up nowhere', async (t) => {
  t.is(await server.runtime.users.findForTokens('not-a-uuid'), null);
  t.is(await server.runtime.users.findForTokens(crypto.randomUUID()), null);
});
