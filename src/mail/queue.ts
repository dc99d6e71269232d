// Mail that must reach the person even if the mail server is down right now (links, security notices): kept in
// the store's durable queue (src/store/durable-queue.ts) until sent; one whose link has expired is dropped.
import type { Logger } from 'pino';
import type { Clock } from '../clock.ts';
import { DependencyUnavailable } from '../errors.ts';
import { DurableQueue, type Delivered, type MessageKind, type MessageSealer, type QueueTimings } from '../store/durable-queue.ts';
import type { Store } from '../store/store.ts';
import type { MailMessage, Mailer } from './mailer.ts';
import type { TemplateName } from './templates.ts';

export type MailQueueTimings = QueueTimings;
export type { Delivered };

export const DEFAULT_MAIL_QUEUE_TIMINGS: MailQueueTimings = {
  firstRetryDelayMs: 30_000,
  maxRetryDelayMs: 15 * 60_000,
  maxAgeMs: 24 * 3600_000,
  pollIntervalMs: 10_000,
  claimLeaseMs: 10 * 60_000,
};

export interface MailQueueOptions {
  store: Store;
  /** Queued mail holds links into accounts: kept sealed (ENCRYPTION_KEYS). */
  sealer: MessageSealer;
  mailer: Mailer;
  logger: Logger;
  timings?: Partial<MailQueueTimings>;
  /** When messages are due and too old (default: the system clock); a test moves one by hand. */
  clock?: Clock;
}

type QueuedMail = MailMessage<TemplateName>;

/** The durable queue (src/store/durable-queue.ts) of mail: deliver(message), and the queue's passes, idle() and close(). */
export class MailQueue extends DurableQueue<QueuedMail> {
  readonly #mailer: Mailer;

  constructor(options: MailQueueOptions) {
    super({
      store: options.store,
      sealer: options.sealer,
      logger: options.logger,
      kind: mailKind(options.mailer),
      timings: { ...DEFAULT_MAIL_QUEUE_TIMINGS, ...options.timings },
      clock: options.clock,
    });
    this.#mailer = options.mailer;
  }

  /**
   * Sends the message now, or, when the mail server cannot take it now, keeps it and sends it when it can.
   * Throws when the mail server refuses it for good (MailRejected, any 5xx reply): retrying cannot help. Also
   * throws the mail server's error when the store is down too, as nothing could keep the message.
   */
  override async deliver<Name extends TemplateName>(message: MailMessage<Name>): Promise<Delivered> {
    // Nothing to wait for without a mail server (production refuses to start so), nor after close.
    if (this.#mailer.delivery === 'none' || this.closed) {
      await this.#mailer.send(message);
      return 'sent';
    }
    return super.deliver(message as QueuedMail);
  }
}

function mailKind(mailer: Mailer): MessageKind<QueuedMail> {
  return {
    keyPrefix: 'mail-queue',
    noun: 'mail',
    receiver: 'the mail server',
    perform: async (message) => { await mailer.send(message); },
    isTransient,
    failureReason,
    // Never the address.
    describe: (message) => ({ template: message.template }),
    isMessage: (value): value is QueuedMail => typeof (value as { template?: unknown } | null)?.template === 'string',
    usefulUntil,
  };
}

/** A message with a link is of no use once the link has expired. */
function usefulUntil(message: QueuedMail, queuedAt: number): { at: number; words: string } | undefined {
  const data = message.data as { expiresInMinutes?: unknown };
  return typeof data.expiresInMinutes === 'number'
    ? { at: queuedAt + data.expiresInMinutes * 60_000, words: 'while the link in it was valid' }
    : undefined;
}

/** Unreachable, timed out, or a 4xx reply: worth trying again. A 5xx is the server's final word. */
function isTransient(error: unknown): boolean {
  if (!(error instanceof DependencyUnavailable) || error.dependency !== 'mail') return false;
  const responseCode = (error.cause as { responseCode?: unknown } | undefined)?.responseCode;
  return !(typeof responseCode === 'number' && responseCode >= 500);
}

/** What went wrong, safe for a log line: a reply code or an error code, never a message that could quote the address. */
function failureReason(error: unknown): string {
  const cause = (error instanceof Error && error.cause !== undefined ? error.cause : error) as { code?: unknown; responseCode?: unknown } | null;
  if (typeof cause?.responseCode === 'number') return `SMTP ${cause.responseCode}`;
  if (typeof cause?.code === 'string' && /^[A-Z][A-Z_]*$/.test(cause.code)) return cause.code;
  return error instanceof Error ? error.name : 'Error';
}
