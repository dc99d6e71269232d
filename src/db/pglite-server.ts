// Serves one PGlite database to many PostgreSQL clients over a Unix socket, so ordinary `pg` (and
// Prisma through it) can use the embedded database from several connections and processes.
// Replaces @electric-sql/pglite-socket's server, which interleaves clients' messages (see below).
import net from 'node:net';
import type { PGlite } from '@electric-sql/pglite';

/*
 * PGlite is ONE PostgreSQL backend session. Every client connection shares it: the unnamed prepared
 * statement and portal, the transaction, the "skip until Sync" state after an error. So a client must
 * own the session from its first message until the backend says it is idle again (ReadyForQuery with
 * status 'I'); only then may another client's messages run. An open transaction (status 'T' or 'E')
 * keeps the session owned across the client's round trips, like a row lock would on a real server.
 *
 * @electric-sql/pglite-socket 0.2.17 queues single wire messages and only keeps a client exclusive
 * while `isInTransaction()`, which is false between Parse and Sync of an extended-protocol query.
 * Whenever a client's query spans several socket reads (large parameters), another client's Parse
 * lands in between and the first client's Bind runs against the wrong statement: wrong results and
 * bogus errors (reproduced with a pool of 5 and a 2 MB parameter). Hence this server.
 *
 * Limits that follow from the single session: session-level state (SET, named prepared statements,
 * LISTEN, temporary tables) is shared by all clients. `pg` and Prisma's adapter use none of it.
 */

export interface PGliteServerOptions {
  socketPath: string;
  /** Further connections are refused with PostgreSQL's "too many clients" error. */
  maxConnections?: number;
  /**
   * A client that leaves a transaction open this long without sending anything is disconnected
   * (its transaction rolled back), as PostgreSQL's idle_in_transaction_session_timeout does:
   * while it owns the session, every other client waits.
   */
  idleInTransactionTimeoutMs?: number;
  /** Told about failures that concern no client any more (for example resetting after a disconnect). */
  onError?: (error: unknown) => void;
}

export interface PGliteServer {
  readonly connectionCount: number;
  /** Stops accepting, disconnects every client (rolling back what they left open) and waits for it. */
  close(): Promise<void>;
}

const SSL_REQUEST_CODE = 80877103;
const GSS_ENCRYPTION_REQUEST_CODE = 80877104;
const CANCEL_REQUEST_CODE = 80877102;
const PROTOCOL_VERSION_3 = 196608;
/** PostgreSQL's own limit for the startup packet. */
const MAX_STARTUP_PACKET_LENGTH = 10_000;
const TERMINATE_MESSAGE = 0x58; // 'X'
const READY_FOR_QUERY_MESSAGE = 0x5a; // 'Z'
const SYNC_MESSAGE = Buffer.from([0x53, 0, 0, 0, 4]); // 'S'

/** Starts serving `database` on `options.socketPath` (which must not exist). */
export async function servePGlite(database: PGlite, options: PGliteServerOptions): Promise<PGliteServer> {
  await database.waitReady;
  const maxConnections = options.maxConnections ?? 100;
  const idleInTransactionTimeoutMs = options.idleInTransactionTimeoutMs ?? 60_000;
  const reportError = options.onError ?? ((error: unknown) => process.emitWarning(describeError(error)));
  const session = new SessionQueue();
  const connections = new Set<ClientConnection>();

  const server = net.createServer((socket) => {
    if (connections.size >= maxConnections) {
      socket.end(fatalErrorResponse('53300', 'sorry, too many clients already'));
      return;
    }
    const connection = new ClientConnection(socket, database, session, idleInTransactionTimeoutMs, reportError);
    connections.add(connection);
    void connection.finished.then(() => connections.delete(connection));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', reportError);

  return {
    get connectionCount() {
      return connections.size;
    },
    async close() {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      const finished = [...connections].map((connection) => {
        connection.disconnect();
        return connection.finished;
      });
      await Promise.all([stopped, ...finished]);
    },
  };
}

/** First come, first served ownership of the one backend session. */
class SessionQueue {
  private owned = false;
  private readonly waiting: Array<() => void> = [];

  acquire(): Promise<void> {
    if (!this.owned) {
      this.owned = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.owned = false;
  }
}

/** One client socket: frames its messages and runs them while it owns the session. */
class ClientConnection {
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  private buffered: Buffer = Buffer.alloc(0);
  private startedUp = false;
  private ownsSession = false;
  private draining = false;
  private closed = false;
  private finishing = false;
  private readonly replies = new ReadyForQueryTracker();
  private idleInTransactionTimer: NodeJS.Timeout | undefined;
  private readonly socket: net.Socket;
  private readonly database: PGlite;
  private readonly session: SessionQueue;
  private readonly idleInTransactionTimeoutMs: number;
  private readonly reportError: (error: unknown) => void;

  constructor(
    socket: net.Socket,
    database: PGlite,
    session: SessionQueue,
    idleInTransactionTimeoutMs: number,
    reportError: (error: unknown) => void,
  ) {
    this.socket = socket;
    this.database = database;
    this.session = session;
    this.idleInTransactionTimeoutMs = idleInTransactionTimeoutMs;
    this.reportError = reportError;
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      void this.drain();
    });
    // A client vanishing is normal (pool shrinking, process exiting); 'close' follows and cleans up.
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      if (!this.draining) void this.finish();
    });
  }

  disconnect(): void {
    this.socket.destroy();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      for (;;) {
        if (this.closed) break;
        const message = this.startedUp ? this.takeTypedMessage() : this.takeStartupPacket();
        if (!message) break;
        if (message === 'handled') continue;
        await this.run(message);
      }
    } catch (error) {
      // PGlite itself failed (not an SQL error, which is an ordinary reply): this client is done.
      this.reportError(error);
      this.socket.destroy();
    } finally {
      this.draining = false;
    }
    if (this.closed) await this.finish();
    else if (this.ownsSession) this.startIdleInTransactionTimer();
  }

  /** Before startup a packet has no type byte; SSL and encryption requests are declined here. */
  private takeStartupPacket(): Buffer | 'handled' | undefined {
    if (this.buffered.length < 8) return undefined;
    const length = this.buffered.readInt32BE(0);
    if (length < 8 || length > MAX_STARTUP_PACKET_LENGTH) return this.refuse('08P01', 'invalid startup packet length');
    if (this.buffered.length < length) return undefined;
    const packet = this.take(length);
    const code = packet.readInt32BE(4);
    if (code === SSL_REQUEST_CODE || code === GSS_ENCRYPTION_REQUEST_CODE) {
      this.socket.write('N');
      return 'handled';
    }
    if (code === CANCEL_REQUEST_CODE) {
      // There is no separate backend to interrupt: the running statement cannot be cancelled.
      this.socket.end();
      return 'handled';
    }
    if (code !== PROTOCOL_VERSION_3) return this.refuse('0A000', 'unsupported frontend protocol');
    this.startedUp = true;
    return packet;
  }

  private takeTypedMessage(): Buffer | 'handled' | undefined {
    if (this.buffered.length < 5) return undefined;
    const declaredLength = this.buffered.readInt32BE(1);
    if (declaredLength < 4) return this.refuse('08P01', 'invalid message length');
    const length = 1 + declaredLength;
    if (this.buffered.length < length) return undefined;
    const message = this.take(length);
    if (message[0] === TERMINATE_MESSAGE) {
      // Never passed on: it would end the one backend every client shares.
      this.socket.end();
      return 'handled';
    }
    return message;
  }

  /** A client that breaks the protocol is told why and disconnected; nothing it sent runs. */
  private refuse(sqlState: string, text: string): 'handled' {
    this.buffered = Buffer.alloc(0);
    this.socket.end(fatalErrorResponse(sqlState, text));
    this.closed = true;
    return 'handled';
  }

  private take(length: number): Buffer {
    const taken = this.buffered.subarray(0, length);
    this.buffered = this.buffered.subarray(length);
    return taken;
  }

  private async run(message: Buffer): Promise<void> {
    this.stopIdleInTransactionTimer();
    if (!this.ownsSession) {
      await this.session.acquire();
      this.ownsSession = true;
      if (this.closed) return;
    }
    this.replies.reset();
    await this.database.runExclusive(() =>
      this.database.execProtocolRawStream(new Uint8Array(message), {
        onRawData: (reply) => {
          this.replies.feed(reply);
          // PGlite reuses its output buffer: copy before handing it to the socket.
          if (!this.socket.destroyed) this.socket.write(Buffer.from(reply));
        },
      }),
    );
    if (this.replies.lastStatus === 'I') this.releaseSession();
  }

  private releaseSession(): void {
    this.ownsSession = false;
    this.session.release();
  }

  /** Leaves the shared session as a new client expects it: no half-sent query, no open transaction. */
  private async finish(): Promise<void> {
    if (this.finishing) return;
    this.finishing = true;
    this.stopIdleInTransactionTimer();
    if (this.ownsSession) {
      try {
        await this.database.runExclusive(async () => {
          if (this.replies.lastStatus === undefined) await this.database.execProtocolRaw(SYNC_MESSAGE);
          if (this.database.isInTransaction()) await this.database.execProtocolRaw(simpleQuery('ROLLBACK'));
        });
      } catch (error) {
        this.reportError(error);
      }
      this.releaseSession();
    }
    this.resolveFinished();
  }

  private startIdleInTransactionTimer(): void {
    if (this.idleInTransactionTimeoutMs <= 0 || this.replies.lastStatus === undefined) return;
    this.idleInTransactionTimer = setTimeout(() => {
      this.socket.write(fatalErrorResponse('25P03', 'terminating connection due to idle-in-transaction timeout'));
      this.socket.destroySoon();
    }, this.idleInTransactionTimeoutMs);
    this.idleInTransactionTimer.unref();
  }

  private stopIdleInTransactionTimer(): void {
    clearTimeout(this.idleInTransactionTimer);
    this.idleInTransactionTimer = undefined;
  }
}

/**
 * Follows the backend's reply stream across chunks and remembers whether the latest complete
 * message is ReadyForQuery, and with which transaction status.
 */
class ReadyForQueryTracker {
  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction; undefined: not ready for a query. */
  lastStatus: 'I' | 'T' | 'E' | undefined;
  private readonly header = Buffer.alloc(5);
  private headerBytes = 0;
  private bodyBytesLeft = 0;
  private readingReadyStatus = false;

  reset(): void {
    this.lastStatus = undefined;
  }

  feed(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.bodyBytesLeft > 0) {
        if (this.readingReadyStatus) {
          const status = String.fromCharCode(chunk[offset]!);
          this.lastStatus = status === 'I' || status === 'T' || status === 'E' ? status : undefined;
          this.readingReadyStatus = false;
        }
        const skipped = Math.min(this.bodyBytesLeft, chunk.length - offset);
        offset += skipped;
        this.bodyBytesLeft -= skipped;
        continue;
      }
      this.header[this.headerBytes++] = chunk[offset++]!;
      if (this.headerBytes === 5) {
        this.headerBytes = 0;
        this.bodyBytesLeft = this.header.readInt32BE(1) - 4;
        this.lastStatus = undefined;
        this.readingReadyStatus = this.header[0] === READY_FOR_QUERY_MESSAGE && this.bodyBytesLeft === 1;
      }
    }
  }
}

function simpleQuery(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`);
  const message = Buffer.alloc(5 + text.length);
  message.write('Q', 0);
  message.writeInt32BE(4 + text.length, 1);
  text.copy(message, 5);
  return message;
}

/** An ErrorResponse that `pg` reports with its SQLSTATE, sent before closing a connection. */
function fatalErrorResponse(sqlState: string, text: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${sqlState}\0M${text}\0\0`);
  const message = Buffer.alloc(5 + fields.length);
  message.write('E', 0);
  message.writeInt32BE(4 + fields.length, 1);
  fields.copy(message, 5);
  return message;
}

function describeError(error: unknown): string {
  return `embedded database server: ${error instanceof Error ? error.message : String(error)}`;
}
