// A person's signed-in sessions across browsers, and the grants behind them: listing them for the
// sessions page, and ending one or all (which revokes their grants and every token issued under them).
import Bowser from 'bowser';
import { errors, type AdapterPayload } from 'oidc-provider';
import type { AuditActor, AuditTrail } from '../audit/audit.ts';
import type { UserService } from '../accounts/users.ts';
import { applicationsOf, requestBeingServed, type Engine, type EngineSession } from './engine-internals.ts';
import type { LogoutNotices } from './logout-notices.ts';
import type { Store } from '../store/store.ts';

export interface SessionSummary {
  /** The session's stable uid (the engine rotates its id at login; the uid names it for the person). */
  uid: string;
  /** Epoch seconds of the login. */
  loginTs: number | undefined;
  /** How the person signed in (pwd, otp). */
  amr: string[];
  /** "Firefox on Linux", from the browser that signed in, when known. */
  device: string | undefined;
  ip: string | undefined;
  /** Ids of the applications signed in through this session. */
  clientIds: string[];
  /** The same applications with the names people know them by (applications since deleted are left out). */
  applications: Array<{ clientId: string; name: string }>;
}

/** Why sessions are ended or grants revoked; it goes into the audit trail. */
export type EndReason =
  | 'session_ended' // the person ended another session from the sessions page
  | 'signed_out' // the person signed out of this browser
  | 'signed_out_of_application' // the person signed out of one application only, and stays signed in
  | 'signed_out_everywhere'
  | 'password_reset'
  | 'password_changed'
  | 'email_restored' // the previous address undid a change of email
  | 'account_disabled'
  | 'account_deleted'
  | 'ended_by_administrator' // an administrator ended the session (the admin API)
  | 'access_withdrawn'; // the person removed an application's access

/** Where the request asking for it came from, for the audit trail. */
export interface RequestOrigin {
  ip?: string | undefined;
  userAgent?: string | undefined;
}

export interface EndOptions {
  /** Default: 'session_ended'. */
  reason?: EndReason;
  request?: RequestOrigin;
  /** Who ended it, for the audit trail: the person by default, an administrator when one did. */
  actor?: AuditActor | undefined;
}

export interface EndAllOptions {
  /** A session uid to leave signed in (the one changing the password), with its grants. */
  keep?: string | undefined;
  /** Default: 'signed_out_everywhere'. */
  reason?: EndReason;
  request?: RequestOrigin;
  actor?: AuditActor | undefined;
}

/** A session ended: `frontChannel`, the URLs its browser loads to sign its applications out (front-channel logout). */
export interface EndedSession {
  frontChannel: string[];
}

/** An ended session's marker outlives any request still holding it in memory. */
const ENDED_MARKER_MIN_SECONDS = 3600;
const USER_AGENT_MAX = 512;

export class AccountSessions {
  readonly #engine: Engine;
  readonly #store: Store;
  readonly #auditTrail: AuditTrail;
  readonly #users: Pick<UserService, 'endPausedSignIns'>;
  readonly #logoutNotices: Pick<LogoutNotices, 'sessionEnded'>;

  /** Every session ended here is told to its applications (logoutNotices). */
  constructor(engine: Engine, store: Store, auditTrail: AuditTrail, users: Pick<UserService, 'endPausedSignIns'>, logoutNotices: Pick<LogoutNotices, 'sessionEnded'>) {
    this.#engine = engine;
    this.#store = store;
    this.#auditTrail = auditTrail;
    this.#users = users;
    this.#logoutNotices = logoutNotices;
  }

  /** The account's live sessions, newest first. */
  async list(accountId: string): Promise<SessionSummary[]> {
    const sessions = await this.#liveSessions(accountId);
    const names = new Map<string, Promise<string | undefined>>();
    const nameOf = (clientId: string) => {
      if (!names.has(clientId)) names.set(clientId, this.#clientName(clientId));
      return names.get(clientId)!;
    };
    const summaries = await Promise.all(sessions.map(async (session): Promise<SessionSummary> => {
      const clientIds = Object.keys(session.authorizations ?? {});
      const device = await readDevice(this.#store, session.uid);
      const applications = (await Promise.all(clientIds.map(async (clientId) => ({ clientId, name: await nameOf(clientId) }))))
        .filter((application): application is { clientId: string; name: string } => application.name !== undefined);
      return {
        uid: session.uid,
        loginTs: session.loginTs,
        amr: session.amr ?? [],
        device: device?.userAgent ? describeDevice(device.userAgent) : undefined,
        ip: device?.ip,
        clientIds,
        applications,
      };
    }));
    return summaries.sort((a, b) => (b.loginTs ?? 0) - (a.loginTs ?? 0));
  }

  /**
   * Ends one of the account's sessions and revokes the grants made through it, and tells its applications;
   * undefined when it is not theirs or gone.
   */
  async end(accountId: string, sessionUid: string, options: EndOptions = {}): Promise<EndedSession | undefined> {
    const reason = options.reason ?? 'session_ended';
    const session = await this.#engine.sessionByUid(sessionUid);
    if (!session || session.accountId !== accountId) return undefined;
    await this.#destroy(session);
    // Every grant made in it, offline access included (unlike the engine's own logout, which keeps those):
    // a session ended from the sessions page may be an intruder's, and a refresh token it obtained must
    // not outlive it, as the page promises.
    const grantIds = Object.values(session.authorizations ?? {})
      .map((authorization) => authorization.grantId)
      .filter((grantId): grantId is string => typeof grantId === 'string');
    const revoked = await this.#revokeGrants(accountId, new Set(grantIds));
    // Told once nothing of the session works any more.
    const frontChannel = await this.#logoutNotices.sessionEnded({ accountId, applications: applicationsOf(session), reason });
    await Promise.all([
      this.#audit({ action: 'session.ended', accountId, request: options.request, actor: options.actor, detail: { sessionUid, reason } }),
      ...revoked.map((grant) => this.#audit({ action: 'grant.revoked', accountId, clientId: grant.clientId, request: options.request, actor: options.actor, detail: { grantId: grant.id, reason } })),
    ]);
    return { frontChannel };
  }

  /**
   * Ends every session of the account and revokes every grant of the account (refresh tokens of
   * applications that outlive any session included), except the session named in `keep` and its grants.
   * Sign-ins paused between the password and the second factor end too, in every browser. Each ended session's
   * applications are told; `frontChannel` has the URLs for each ended session's browser, by session uid.
   */
  async endAll(accountId: string, options: EndAllOptions = {}): Promise<{ sessions: number; grants: number; frontChannel: Map<string, string[]> }> {
    const reason = options.reason ?? 'signed_out_everywhere';
    await this.#users.endPausedSignIns(accountId);
    const sessions = await this.#liveSessions(accountId);
    const kept = sessions.find((session) => session.uid === options.keep);
    const keptGrantIds = new Set(Object.values(kept?.authorizations ?? {}).map((authorization) => authorization.grantId));
    const ending = sessions.filter((session) => session !== kept);
    await Promise.all(ending.map((session) => this.#destroy(session)));
    // A session being saved under a new id right now (a login rotates it) is briefly not found: every
    // other uid the account's index names is marked ended too, so no such session can come back.
    const found = new Set(sessions.map((session) => session.uid));
    const unseen = (await this.#store.indexMembers(accountSessionsKey(accountId))).filter((uid) => uid !== options.keep && !found.has(uid));
    await Promise.all(unseen.map((uid) => this.#markEnded(uid, ENDED_MARKER_MIN_SECONDS)));
    // Every grant the account holds, including those of sessions already gone (offline access).
    const grantIds = new Set(await this.#store.indexMembers(accountGrantsKey(accountId)));
    for (const session of ending) {
      for (const { grantId } of Object.values(session.authorizations ?? {})) if (grantId) grantIds.add(grantId);
    }
    for (const grantId of keptGrantIds) if (grantId) grantIds.delete(grantId);
    const revoked = await this.#revokeGrants(accountId, grantIds);
    // Revoked now or gone before: none of them is the account's any more.
    await this.#store.removeFromIndex(accountGrantsKey(accountId), [...grantIds]);
    // Told once nothing of the sessions works any more.
    const frontChannel = new Map(await Promise.all(ending.map(async (session) => [
      session.uid,
      await this.#logoutNotices.sessionEnded({ accountId, applications: applicationsOf(session), reason }),
    ] as const)));
    const { request, actor } = options;
    await Promise.all([
      ...ending.map((session) => this.#audit({ action: 'session.ended', accountId, request, actor, detail: { sessionUid: session.uid, reason } })),
      ...revoked.map((grant) => this.#audit({ action: 'grant.revoked', accountId, clientId: grant.clientId, request, actor, detail: { grantId: grant.id, reason } })),
      this.#audit({
        action: 'sessions.ended_all', accountId, request, actor,
        detail: { reason, sessions: ending.length, grants: revoked.length, keptOne: kept !== undefined },
      }),
    ]);
    return { sessions: ending.length, grants: revoked.length, frontChannel };
  }

  /**
   * Revokes every grant the account holds for one application, and the tokens issued under them: its access
   * ends in every session and offline, while the sessions stay signed in (to Gatehouse and other apps).
   */
  async revokeApplication(accountId: string, clientId: string, options: EndOptions = {}): Promise<number> {
    const reason = options.reason ?? 'access_withdrawn';
    const grantIds = await this.#store.indexMembers(accountGrantsKey(accountId));
    const grants = await Promise.all(grantIds.map((grantId) => this.#engine.findGrant(grantId)));
    const ofClient = new Set(grantIds.filter((_, index) => grants[index]?.clientId === clientId && grants[index]?.accountId === accountId));
    const revoked = await this.#revokeGrants(accountId, ofClient);
    await this.#store.removeFromIndex(accountGrantsKey(accountId), [...ofClient]);
    // The application's own sessions end too (as Keycloak does when consent is revoked): it is told of each
    // session it was signed in through, by back-channel.
    const sessions = await this.#liveSessions(accountId);
    await Promise.all(sessions.map((session) => this.#logoutNotices.sessionEnded({
      accountId, applications: applicationsOf(session).filter((application) => application.clientId === clientId), reason,
    })));
    await Promise.all(revoked.map((grant) => this.#audit({ action: 'grant.revoked', accountId, clientId, request: options.request, actor: options.actor, detail: { grantId: grant.id, reason } })));
    return revoked.length;
  }

  /**
   * The account's sessions that still exist. The index may name sessions long gone (expired, ended):
   * those are dropped from it here, or an account signing in every day would grow it without end. A
   * session not found whose device record lives on is being saved under a new id (a login): it stays.
   */
  async #liveSessions(accountId: string) {
    const uids = await this.#store.indexMembers(accountSessionsKey(accountId));
    const sessions = await Promise.all(uids.map((uid) => this.#engine.sessionByUid(uid)));
    const gone = (await Promise.all(uids.map(async (uid, index) => {
      if (sessions[index] !== undefined) return undefined;
      const device = await readDevice(this.#store, uid);
      return !device || device.ended ? uid : undefined;
    }))).filter((uid) => uid !== undefined);
    await this.#store.removeFromIndex(accountSessionsKey(accountId), gone);
    return sessions.filter((session) => session !== undefined && session.accountId === accountId).map((session) => session!);
  }

  /** Marks a session uid ended for good: the adapter refuses to save it again. */
  async #markEnded(sessionUid: string, ttlSeconds: number): Promise<void> {
    await this.#store.put(deviceKey(sessionUid), JSON.stringify({ ended: true } satisfies DeviceRecord), ttlSeconds);
  }

  /**
   * Destroys a session for good. The marker first, so a request of that browser still in flight cannot
   * save it back; then the session, and once more in case its id was being rotated (a login) meanwhile.
   */
  async #destroy(session: EngineSession): Promise<void> {
    await this.#markEnded(session.uid, Math.max((session.exp ?? 0) - epochSeconds(), ENDED_MARKER_MIN_SECONDS));
    await this.#engine.destroySession(session);
  }

  /** Revokes the account's grants among these ids and every token issued under them (engine-internals.ts). */
  async #revokeGrants(accountId: string, grantIds: Set<string>): Promise<Array<{ id: string; clientId: string | undefined }>> {
    const revoked = await Promise.all([...grantIds].map((grantId) => this.#engine.revokeGrant(grantId, accountId)));
    return revoked.filter((grant) => grant !== undefined);
  }

  async #clientName(clientId: string): Promise<string | undefined> {
    try {
      const client = await this.#engine.findClient(clientId);
      return client ? (client.clientName ?? clientId) : undefined;
    } catch (error) {
      // A registration the engine no longer accepts: name it by its id rather than fail the page.
      if (error instanceof errors.InvalidClientMetadata) return clientId;
      throw error;
    }
  }

  #audit(event: {
    action: 'session.ended' | 'sessions.ended_all' | 'grant.revoked'; accountId: string; clientId?: string | undefined; request?: RequestOrigin | undefined;
    actor?: AuditActor | undefined; detail: Record<string, string | number | boolean>;
  }): Promise<void> {
    return this.#auditTrail.record({
      action: event.action, outcome: 'success', actor: event.actor, subjectUserId: event.accountId, clientId: event.clientId,
      ip: event.request?.ip, userAgent: event.request?.userAgent, detail: event.detail,
    });
  }
}

/** "Chrome on Linux" from a User-Agent header; undefined when it names neither a browser nor a system. */
export function describeDevice(userAgent: string): string | undefined {
  if (!userAgent.trim()) return undefined;
  const { browser, os } = Bowser.parse(userAgent);
  if (browser.name && os.name) return `${browser.name} on ${os.name}`;
  return browser.name || os.name || undefined;
}

// ---------------------------------------------------------------------------------------------------
// The store's side: the adapter calls these when the engine saves a Session or a Grant, to keep the
// per-account indexes and to remember the device each session was signed in from.

/** The uids of an account's sessions (stale members tolerated: sessions expire on their own). */
function accountSessionsKey(accountId: string): string {
  return `account:${accountId}:sessions`;
}

/** The ids of an account's grants, so signing out everywhere also reaches grants no session holds. */
function accountGrantsKey(accountId: string): string {
  return `account:${accountId}:grants`;
}

function deviceKey(sessionUid: string): string {
  return `Session:device:${sessionUid}`;
}

/** What is known of the browser a session was signed in from; `ended` marks a session ended for good. */
interface DeviceRecord {
  ended?: true;
  accountId?: string;
  loginTs?: number | undefined;
  userAgent?: string | undefined;
  ip?: string | undefined;
  firstSeen?: number;
}

async function readDevice(store: Store, sessionUid: string): Promise<DeviceRecord | undefined> {
  const record = await store.get(deviceKey(sessionUid));
  return record ? JSON.parse(record.value) as DeviceRecord : undefined;
}

export class AccountIndexes {
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /**
   * Before the engine writes a Session: false when that session was ended (it must stay ended).
   * For a signed-in session, indexes it under its account and records its device at login. The
   * adapter has no request, but the engine runs each request inside AsyncLocalStorage (requestBeingServed):
   * when a login (a new account or a new loginTs) is being saved, that request is the browser signing
   * in. Later saves keep the record and only stretch its life to the session's.
   */
  async mayStoreSession(payload: AdapterPayload, ttl: number): Promise<boolean> {
    const { uid, accountId, loginTs } = payload;
    if (typeof uid !== 'string') return true;
    const existing = await readDevice(this.#store, uid);
    if (existing?.ended) return false;
    if (typeof accountId !== 'string') return true;
    let device = existing?.accountId === accountId && existing.loginTs === loginTs ? existing : undefined;
    if (!device) {
      const request = requestBeingServed();
      device = {
        accountId,
        loginTs,
        userAgent: request?.get('user-agent').slice(0, USER_AGENT_MAX) || undefined,
        ip: request?.ip || undefined,
        firstSeen: epochSeconds(),
      };
    }
    await Promise.all([
      this.#store.addToIndex(accountSessionsKey(accountId), uid, ttl),
      this.#store.put(deviceKey(uid), JSON.stringify(device), ttl),
    ]);
    return true;
  }

  async grantSaved(grantId: string, payload: AdapterPayload, ttl: number): Promise<void> {
    if (typeof payload.accountId === 'string') await this.#store.addToIndex(accountGrantsKey(payload.accountId), grantId, ttl);
  }
}

function epochSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
