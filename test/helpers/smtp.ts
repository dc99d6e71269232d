// A real SMTP server on loopback (smtp-server) that keeps every message it receives, parsed with postal-mime,
// plus two ways for a mail server to be down: a port nobody listens on, and one that accepts but never speaks.
// It can refuse recipients for good (550) or for now (451), refuse the sender (550), and listen on a given port
// (to stop it and start it again where Gatehouse expects it).
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import PostalMime, { type Email } from 'postal-mime';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  envelope: { from: string; to: string[] };
  /** The message exactly as it arrived. */
  raw: string;
  email: Email;
}

export interface TestSmtpServer {
  url: string;
  received: ReceivedMail[];
  /** The next message to arrive (or one that already did and was not yet taken); fails after timeoutMs. */
  nextMail(timeoutMs?: number): Promise<ReceivedMail>;
  /**
   * The first message to this address (with this subject) not yet taken, arrived or still to come: checks that
   * run at once each take their own message.
   */
  mailTo(address: string, subject?: string, timeoutMs?: number): Promise<ReceivedMail>;
  /** Every message to this address, taken or not. */
  receivedBy(address: string): ReceivedMail[];
  /** Waits until `check` holds, looking again as each message arrives (not by polling); fails after timeoutMs. */
  until(check: () => boolean, what: string, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export interface SmtpServerOptions {
  /** Answer 550 to RCPT TO for these addresses. */
  refuseRecipient?: (address: string) => boolean;
  /** Answer 451 (try again later) to RCPT TO for these addresses, while it returns true. */
  deferRecipient?: (address: string) => boolean;
  /** Answer 550 to MAIL FROM for these senders: a 5xx that is not about the recipient. */
  refuseSender?: (address: string) => boolean;
  /** Listen here instead of on a port the system picks. */
  port?: number;
}

export async function startSmtpServer(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  const received: ReceivedMail[] = [];
  const taken = new WeakSet<ReceivedMail>();
  const waiting: Array<() => void> = [];
  const server = new SMTPServer({
    // Plain SMTP on loopback: no STARTTLS (its certificate would be self-signed) and no login.
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onMailFrom(address, _session, callback) {
      if (options.refuseSender?.(address.address)) callback(Object.assign(new Error('5.7.1 sender refused'), { responseCode: 550 }));
      else callback();
    },
    onRcptTo(address, _session, callback) {
      if (options.refuseRecipient?.(address.address)) {
        callback(Object.assign(new Error('5.1.1 mailbox unavailable'), { responseCode: 550 }));
      } else if (options.deferRecipient?.(address.address)) {
        callback(Object.assign(new Error('4.7.1 greylisted, try again later'), { responseCode: 451 }));
      } else {
        callback();
      }
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', callback);
      stream.on('end', async () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const mailFrom = session.envelope.mailFrom;
        // Kept before callback() answers 250 to the data: a sender whose send resolved finds its message here
        // (so awaiting the server's after-response work, then reading `received`, misses nothing).
        received.push({
          envelope: { from: mailFrom ? mailFrom.address : '', to: session.envelope.rcptTo.map((recipient) => recipient.address) },
          raw,
          email: await parseMail(raw),
        });
        for (const wake of waiting.splice(0)) wake();
        callback();
      });
    },
  });

  /** Waits until the check holds, checking again as each message arrives, until the time is up. */
  async function until(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        waiting.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  /** The first message not taken yet that matches, waiting for one to arrive until the time is up. */
  async function take(matches: (mail: ReceivedMail) => boolean, what: string, timeoutMs: number): Promise<ReceivedMail> {
    const untaken = () => received.find((candidate) => !taken.has(candidate) && matches(candidate));
    await until(() => untaken() !== undefined, `${what} to arrive`, timeoutMs);
    const mail = untaken()!;
    taken.add(mail);
    return mail;
  }

  server.listen(options.port ?? 0, '127.0.0.1');
  await once(server.server, 'listening');
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    nextMail: (timeoutMs = 5000) => take(() => true, 'mail', timeoutMs),
    mailTo: (address, subject, timeoutMs = 20_000) => take(
      (mail) => mail.envelope.to.includes(address) && (subject === undefined || mail.email.subject === subject),
      `mail ${subject ? `"${subject}" ` : ''}for ${address}`, timeoutMs,
    ),
    receivedBy: (address) => received.filter((mail) => mail.envelope.to.includes(address)),
    until: (check, what, timeoutMs = 20_000) => until(check, what, timeoutMs),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The one link of a message's text part. */
export function linkIn(mail: ReceivedMail): string {
  const links = [...(mail.email.text ?? '').matchAll(/https?:\/\/\S+/g)].map((match) => match[0]);
  if (links.length !== 1) throw new Error(`expected one link, got ${links.length}`);
  return links[0]!;
}

export function parseMail(raw: string | Buffer): Promise<Email> {
  return PostalMime.parse(raw);
}

/** An smtp:// URL where nothing listens: connections are refused at once. */
export async function unusedSmtpUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `smtp://127.0.0.1:${port}`;
}

/** A server that accepts connections and never says a word: a client without timeouts would wait forever. */
export async function startSilentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
}
