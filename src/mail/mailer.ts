// Sends Gatehouse's email: renders a template into a text and an HTML part and hands the message to SMTP,
// or, in development without SMTP_URL, writes it to the outbox folder and the log so its link can be followed.
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createTransport, type Mail } from 'nodemailer';
import type { Logger } from 'pino';
import type { Config, Mode } from '../config/index.ts';
import { DependencyUnavailable } from '../errors.ts';
import { createMailTemplates, type MailTemplates, type TemplateData, type TemplateName } from './templates.ts';

/** The mail server refused the recipient for good (a 5xx reply), or the address cannot be written to an envelope. */
export class MailRejected extends Error {
  override name = 'MailRejected';
}

export interface MailMessage<Name extends TemplateName> {
  /** One email address; never a list, and never a display name that could carry more addresses. */
  to: string;
  template: Name;
  data: TemplateData[Name];
}

export interface SentMail {
  messageId: string;
  /** Development only: the .eml file the message was written to instead of being sent. */
  outboxFile?: string;
}

/** How a Mailer delivers: a real SMTP server, the development outbox, or nowhere (production without SMTP_URL). */
export type Delivery = 'smtp' | 'outbox' | 'none';

export interface Mailer {
  readonly delivery: Delivery;
  send<Name extends TemplateName>(message: MailMessage<Name>): Promise<SentMail>;
  close(): Promise<void>;
}

export interface MailerOptions {
  mode: Mode;
  smtpUrl: string | undefined;
  from: { name: string | undefined; address: string };
  outboxDir: string;
  /** The server's public URL: messages name its host so people can tell them from phishing. */
  issuer: string;
  logger: Logger;
  cacheTemplates: boolean;
  /** Longest wait, in milliseconds, for each step with the mail server: connecting, its greeting, each reply. */
  timeoutMs?: number;
}

// Long enough for a slow relay, short enough that a person waiting on a page gets an answer.
const DEFAULT_TIMEOUT_MS = 10_000;
// Deliberately strict: one mailbox, no display name, no comments, no list separators.
const SINGLE_ADDRESS = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"]+$/;

export function createMailer(config: Config, logger: Logger): Mailer {
  return new NodemailerMailer({
    mode: config.mode, smtpUrl: config.mail.smtpUrl, from: config.mail.from, outboxDir: config.mail.outboxDir,
    issuer: config.issuer, logger, cacheTemplates: config.mode === 'production',
  });
}

export class NodemailerMailer implements Mailer {
  readonly delivery: Delivery;
  readonly #options: MailerOptions;
  readonly #templates: MailTemplates;
  readonly #transport: Mail | undefined;
  readonly #messageIdDomain: string;

  constructor(options: MailerOptions) {
    this.#options = options;
    this.#templates = createMailTemplates({ cache: options.cacheTemplates, site: new URL(options.issuer).host });
    this.#messageIdDomain = options.from.address.slice(options.from.address.lastIndexOf('@') + 1);
    // Messages are built only from our templates: nodemailer may never read a file or fetch a URL for them.
    const safety = { disableFileAccess: true, disableUrlAccess: true };
    if (options.smtpUrl) {
      const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      this.delivery = 'smtp';
      this.#transport = createTransport({
        url: options.smtpUrl, ...safety,
        connectionTimeout: timeout, greetingTimeout: timeout, socketTimeout: timeout, dnsTimeout: timeout,
      });
    } else if (options.mode !== 'production') {
      this.delivery = 'outbox';
      // Builds the raw message exactly as SMTP would carry it, CRLF line ends included, and sends it nowhere.
      this.#transport = createTransport({ streamTransport: true, buffer: true, newline: 'windows', ...safety });
    } else {
      this.delivery = 'none';
    }
  }

  async send<Name extends TemplateName>({ to, template, data }: MailMessage<Name>): Promise<SentMail> {
    const recipient = to.trim();
    if (!SINGLE_ADDRESS.test(recipient) || recipient.length > 254) {
      throw new MailRejected('the recipient is not a single email address');
    }
    const rendered = this.#templates.render(template, data);
    if (!this.#transport) {
      // Production without SMTP_URL: never fall back to writing messages (and their links) anywhere.
      throw new DependencyUnavailable('mail', { cause: new Error('SMTP_URL is not set') });
    }
    const messageId = `<${randomUUID()}@${this.#messageIdDomain}>`;
    const message = {
      from: this.#options.from,
      to: recipient,
      subject: rendered.subject,
      text: rendered.text,
      html: rendered.html,
      messageId,
      date: new Date(),
      // RFC 3834: an automatic message; vacation responders and the like should not answer it.
      headers: { 'Auto-Submitted': 'auto-generated' },
    };
    let info: { messageId: string; message?: unknown };
    try {
      info = await this.#transport.sendMail(message);
    } catch (error) {
      throw deliveryError(error);
    }
    if (this.delivery === 'outbox') {
      const outboxFile = await this.#writeToOutbox(template, info.message as Buffer);
      // Development only: the message, link and all, goes to the log so the person at the terminal can follow it.
      this.#options.logger.info(
        { mail: { to: recipient, subject: rendered.subject, template, outboxFile }, text: rendered.text },
        'mail not sent (no SMTP_URL): written to the outbox and this log',
      );
      return { messageId, outboxFile };
    }
    // Never the recipient, the subject's data or the body: links in messages carry secrets.
    this.#options.logger.debug({ template, messageId }, 'mail sent');
    return { messageId };
  }

  async #writeToOutbox(template: string, raw: Buffer): Promise<string> {
    await mkdir(this.#options.outboxDir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const file = path.join(this.#options.outboxDir, `${stamp}-${template}-${randomUUID().slice(0, 8)}.eml`);
    // The links inside are live credentials: readable by this user only.
    await writeFile(file, raw, { mode: 0o600 });
    return file;
  }

  async close(): Promise<void> {
    this.#transport?.close();
  }
}

/** A refused recipient is the address's problem; every other failure means the mail server cannot take mail now. */
function deliveryError(error: unknown): Error {
  const failure = error as { code?: unknown; responseCode?: unknown; command?: unknown } | null;
  const permanent = typeof failure?.responseCode === 'number' && failure.responseCode >= 500;
  if (failure?.code === 'EENVELOPE' && permanent && String(failure.command ?? '').startsWith('RCPT')) {
    return new MailRejected('the mail server refused the recipient', { cause: error });
  }
  return new DependencyUnavailable('mail', { cause: error });
}
