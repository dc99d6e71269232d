// Telling applications that a person's session ended, so that those keeping a session of their own end it too:
// back-channel (OpenID Connect Back-Channel Logout 1.0), a signed logout token POSTed to the application's
// server, queued in the store and retried, each delivery made once across instances and audited; and
// front-channel (Front-Channel Logout 1.0), URLs the browser that signed out loads in hidden frames.
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Logger } from 'pino';
import { errors } from 'oidc-provider';
import type { AuditTrail } from '../audit/audit.ts';
import { registeredItself } from '../clients/clients.ts';
import { NonPublicAddress, publicAddressesOnly, refuseNonPublicAddressLiteral } from '../clients/public-hosts.ts';
import type { Clock } from '../clock.ts';
import { DurableQueue, type MessageKind, type MessageSealer, type QueueTimings } from '../store/durable-queue.ts';
import type { Store } from '../store/store.ts';
import type { EndReason } from './account-sessions.ts';
import type { Engine, EngineClient, SessionApplication } from './engine-internals.ts';

/** Client metadata (extraClientMetadata) of front-channel logout; back-channel's is the engine's own. */
export const FRONTCHANNEL_LOGOUT_URI = 'frontchannel_logout_uri';
export const FRONTCHANNEL_LOGOUT_SESSION_REQUIRED = 'frontchannel_logout_session_required';

export const DEFAULT_LOGOUT_NOTICE_TIMINGS: QueueTimings = {
  firstRetryDelayMs: 10_000,
  maxRetryDelayMs: 10 * 60_000,
  // An application that was down all day still ends the session it keeps when it comes back.
  maxAgeMs: 24 * 3600_000,
  pollIntervalMs: 5_000,
  claimLeaseMs: 60_000,
};

/** An application's server has this long to answer; a slower one is tried again later. */
const DELIVERY_TIMEOUT_MS = 5_000;

/**
 * Connections to applications that registered themselves: each made to a public address only (the URI's name is
 * resolved and checked as it connects). Apart from the default agents, so that none of them reuses a connection
 * opened unchecked for an administrator's client, which may be inside the network.
 */
const PUBLIC_ONLY_AGENTS = { http: new HttpAgent({ lookup: publicAddressesOnly }), https: new HttpsAgent({ lookup: publicAddressesOnly }) };

/** One application to tell that one session ended. */
interface LogoutNotice {
  clientId: string;
  accountId: string;
  sid: string | undefined;
  reason: EndReason;
}

export interface SessionEnded {
  accountId: string;
  applications: readonly SessionApplication[];
  reason: EndReason;
}

export interface LogoutNoticesOptions {
  /** Gatehouse's issuer, named in front-channel logout URLs (iss). */
  issuer: string;
  engine: Pick<Engine, 'findClient' | 'logoutToken'>;
  store: Store;
  /** Queued notices are kept sealed (ENCRYPTION_KEYS), as all queued messages are. */
  sealer: MessageSealer;
  auditTrail: AuditTrail;
  logger: Logger;
  timings?: Partial<QueueTimings> | undefined;
  clock?: Clock | undefined;
}

/** The application answered other than 200/204; `status` says how. */
class LogoutRefused extends Error {
  override name = 'LogoutRefused';
  readonly status: number;

  constructor(status: number) {
    super(`the application answered ${status}`);
    this.status = status;
  }
}

/** The application is no longer registered, or no longer takes back-channel logout: nobody to tell. */
class NoLongerListening extends Error {
  override name = 'NoLongerListening';
}

export class LogoutNotices {
  readonly #issuer: string;
  readonly #engine: LogoutNoticesOptions['engine'];
  /** The back-channel deliveries, kept in the store until the applications take them: its passes, idle() and close(). */
  readonly deliveries: DurableQueue<LogoutNotice>;

  constructor(options: LogoutNoticesOptions) {
    this.#issuer = options.issuer;
    this.#engine = options.engine;
    this.deliveries = new DurableQueue({
      store: options.store,
      sealer: options.sealer,
      logger: options.logger,
      kind: this.#kind(options.auditTrail),
      timings: { ...DEFAULT_LOGOUT_NOTICE_TIMINGS, ...options.timings },
      clock: options.clock,
    });
  }

  /**
   * A session ended: each of its applications that registered a back-channel logout URI is told, queued (the
   * caller does not wait for the applications). The front-channel logout URLs of its applications come back,
   * for the page the browser that ended it shows next, if it was that browser.
   */
  async sessionEnded({ accountId, applications, reason }: SessionEnded): Promise<string[]> {
    const frontChannel: string[] = [];
    for (const { clientId, sid } of applications) {
      const client = await this.#client(clientId);
      if (!client) continue;
      if (client.backchannelLogoutUri) await this.deliveries.submit({ clientId, accountId, sid, reason });
      const url = frontChannelLogoutUrl(client, this.#issuer, sid);
      if (url) frontChannel.push(url);
    }
    return frontChannel;
  }

  async #client(clientId: string): Promise<EngineClient | undefined> {
    try {
      return await this.#engine.findClient(clientId);
    } catch (error) {
      // A registration the engine no longer accepts cannot be told anything.
      if (error instanceof errors.InvalidClientMetadata) return undefined;
      throw error;
    }
  }

  async #deliver(notice: LogoutNotice): Promise<void> {
    const client = await this.#client(notice.clientId);
    const uri = client?.backchannelLogoutUri;
    if (!client || !uri) throw new NoLongerListening();
    // An administrator's client may be inside the network; one that registered itself may not make Gatehouse call there.
    const publicOnly = registeredItself(client.metadata());
    if (publicOnly) refuseNonPublicAddressLiteral(new URL(uri).hostname);
    const logoutToken = await this.#engine.logoutToken(client, notice.accountId, notice.sid);
    const status = await postForm(uri, { logout_token: logoutToken }, publicOnly);
    if (status !== 200 && status !== 204) throw new LogoutRefused(status);
  }

  #kind(auditTrail: AuditTrail): MessageKind<LogoutNotice> {
    const audit = (notice: LogoutNotice, outcome: 'success' | 'failure', detail: Record<string, string | number>) => auditTrail.record({
      action: outcome === 'success' ? 'logout.delivered' : 'logout.failed', outcome, actor: { type: 'system' },
      subjectUserId: notice.accountId, clientId: notice.clientId, detail: { reason: notice.reason, ...detail },
    });
    return {
      keyPrefix: 'logout-notices',
      noun: 'logout notice',
      receiver: 'the application',
      perform: (notice) => this.#deliver(notice),
      isTransient,
      failureReason,
      receiverOf: (notice) => notice.clientId,
      describe: (notice) => ({ clientId: notice.clientId }),
      isMessage: (value): value is LogoutNotice => typeof (value as Partial<LogoutNotice> | null)?.clientId === 'string'
        && typeof (value as Partial<LogoutNotice>).accountId === 'string',
      done: (notice, { attempts }) => audit(notice, 'success', { attempts }),
      givenUp: (notice, { attempts, reason }) => audit(notice, 'failure', { attempts, failure: reason }),
    };
  }
}

/** The URL a browser loads to sign the session out of an application, with iss and sid when it asks for them. */
function frontChannelLogoutUrl(client: EngineClient, issuer: string, sid: string | undefined): string | undefined {
  const metadata = client as unknown as Record<string, unknown>;
  const uri = metadata[FRONTCHANNEL_LOGOUT_URI];
  if (typeof uri !== 'string') return undefined;
  const url = new URL(uri);
  if (metadata[FRONTCHANNEL_LOGOUT_SESSION_REQUIRED] === true && sid) {
    url.searchParams.set('iss', issuer);
    url.searchParams.set('sid', sid);
  }
  return url.href;
}

/**
 * POSTs a form and resolves with the answer's status, within DELIVERY_TIMEOUT_MS. A redirect is an answer, not
 * somewhere to send a token (node:http follows none). `publicOnly`: connect to a public address only.
 */
function postForm(uri: string, form: Record<string, string>, publicOnly: boolean): Promise<number> {
  const url = new URL(uri);
  const body = new URLSearchParams(form).toString();
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const request = (secure ? httpsRequest : httpRequest)(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) },
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      ...(publicOnly ? { agent: secure ? PUBLIC_ONLY_AGENTS.https : PUBLIC_ONLY_AGENTS.http } : {}),
    }, (response) => {
      resolve(response.statusCode ?? 0);
      // The body is of no interest.
      response.destroy();
    });
    request.on('error', reject);
    request.end(body);
  });
}

/** Unreachable, too slow, or a server error or throttling: worth trying again. Any other answer is final. */
function isTransient(error: unknown): boolean {
  // An address Gatehouse may not call stays one: no retry is to reach it.
  if (error instanceof NoLongerListening || error instanceof NonPublicAddress) return false;
  if (error instanceof LogoutRefused) return error.status >= 500 || error.status === 429 || error.status === 408;
  return true;
}

/** What went wrong, for a log line and the audit trail: an HTTP status, a connection error's code, or a timeout. */
function failureReason(error: unknown): string {
  if (error instanceof LogoutRefused) return `HTTP ${error.status}`;
  if (error instanceof NoLongerListening) return 'no back-channel logout URI';
  if (error instanceof NonPublicAddress) return `refused: ${error.message}`;
  if (!(error instanceof Error)) return 'Error';
  // The timeout aborts the request: the abort's cause says it was the timeout.
  if (error.name === 'TimeoutError' || (error.cause as Error | undefined)?.name === 'TimeoutError') return 'timeout';
  const code = (error as { code?: unknown }).code ?? (error.cause as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^[A-Z][A-Z_]*$/.test(code)) return code;
  return error.name;
}
