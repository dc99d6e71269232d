// A TCP proxy for outage tests: sits between Gatehouse and a real service (PostgreSQL on TCP, or the
// embedded database's Unix socket) and can be cut — listener closed, every connection dropped — and restored,
// or frozen — connections stay open (new ones are still accepted) but no byte moves either way — and thawed.
import { once } from 'node:events';
import net from 'node:net';

/** Where the proxy forwards to: a TCP host and port, or a Unix socket path. */
export type ProxyTarget = { host: string; port: number } | { path: string };

export class CuttableProxy {
  readonly #target: ProxyTarget;
  readonly #sockets = new Set<net.Socket>();
  /** Sockets that stopped forwarding; thaw() lets them move again. */
  readonly #frozen = new Set<net.Socket>();
  /** Whether connections opened from now on start frozen. */
  #freezeNewConnections = false;
  #server: net.Server | undefined;
  #port = 0;
  /** What a client sends that, once answered, cuts the service (cutAfterReplyTo). */
  #cutAfterReplyTo: ((request: string) => boolean) | undefined;
  /** What a client sends that is held back, with what follows it on its connection (holdBack). */
  #holdBack: ((request: string) => boolean) | undefined;
  readonly #holding = new Set<net.Socket>();
  #held: Array<() => void> = [];

  constructor(target: ProxyTarget) {
    this.#target = target;
  }

  /** The 127.0.0.1 port the proxy listens on (stays the same across cut and restore). */
  get port(): number {
    return this.#port;
  }

  get connectionCount(): number {
    return this.#sockets.size / 2;
  }

  /** Starts listening: on a free port the first time, on the same port after a cut. */
  async start(): Promise<void> {
    if (this.#server) throw new Error('the proxy is already listening');
    const server = net.createServer((incoming) => this.#forward(incoming));
    server.listen(this.#port, '127.0.0.1');
    await once(server, 'listening');
    this.#port = (server.address() as net.AddressInfo).port;
    this.#server = server;
  }

  /** The service "goes down": new connections are refused and open ones break. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The service "comes back" on the same address. */
  async restore(): Promise<void> {
    await this.start();
  }

  /**
   * The service "hangs": open connections stay open but no byte is forwarded either way (a closed
   * peer is only noticed after the thaw). New connections are still accepted and frozen too, unless
   * `onlyOpenConnections` — then only the connections open now hang, as after a broken network path.
   */
  freeze(options: { onlyOpenConnections?: boolean } = {}): void {
    this.#freezeNewConnections = !options.onlyOpenConnections;
    for (const socket of this.#sockets) this.#freezeSocket(socket);
  }

  /** Forwarding resumes, bytes held back included, on every frozen connection. */
  thaw(): void {
    this.#freezeNewConnections = false;
    for (const socket of this.#frozen) socket.resume();
    this.#frozen.clear();
  }

  /**
   * The service goes down right after answering the next request that `matches` (its bytes, as Latin-1 text):
   * the caller gets that one answer, then the connection breaks with everything else under way.
   */
  cutAfterReplyTo(matches: (request: string) => boolean): void {
    this.#cutAfterReplyTo = matches;
  }

  /**
   * The next request that `matches`, and all that follow it on its connection, reach the service only at release():
   * a slow network path, where the client gives up waiting but what it sent arrives later all the same.
   */
  holdBack(matches: (request: string) => boolean): void {
    this.#holdBack = matches;
  }

  release(): void {
    for (const send of this.#held) send();
    this.#held = [];
    this.#holding.clear();
  }

  async close(): Promise<void> {
    this.thaw();
    await this.cut();
  }

  #freezeSocket(socket: net.Socket): void {
    // A paused socket reads nothing, so nothing reaches the other side; what it was sent waits in
    // the kernel's buffers until the thaw.
    socket.pause();
    this.#frozen.add(socket);
  }

  #forward(incoming: net.Socket): void {
    const outgoing = 'path' in this.#target
      ? net.connect(this.#target.path)
      : net.connect(this.#target.port, this.#target.host);
    for (const socket of [incoming, outgoing]) {
      this.#sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        this.#sockets.delete(socket);
        this.#frozen.delete(socket);
        // Either side closing ends the pair, as a real connection would end.
        incoming.destroy();
        outgoing.destroy();
      });
    }
    this.#relay(incoming, outgoing, { fromClient: true });
    this.#relay(outgoing, incoming, { fromClient: false });
    // After the relays' own listeners: the answer is written on before the cut.
    let cutAfterReply = false;
    incoming.on('data', (chunk: Buffer) => {
      if (this.#cutAfterReplyTo?.(chunk.toString('latin1'))) {
        this.#cutAfterReplyTo = undefined;
        cutAfterReply = true;
      }
    });
    outgoing.on('data', () => {
      if (cutAfterReply) incoming.write('', () => void this.cut());
    });
    if (this.#freezeNewConnections) {
      this.#freezeSocket(incoming);
      this.#freezeSocket(outgoing);
    }
  }

  /** Forwards by hand rather than pipe(), whose backpressure handling could resume a frozen socket. */
  #relay(from: net.Socket, to: net.Socket, { fromClient }: { fromClient: boolean }): void {
    from.on('data', (chunk: Buffer) => {
      if (fromClient && !this.#holding.has(from) && this.#holdBack?.(chunk.toString('latin1'))) {
        this.#holdBack = undefined;
        this.#holding.add(from);
      }
      if (this.#holding.has(from)) {
        this.#held.push(() => to.write(chunk));
        return;
      }
      if (to.write(chunk)) return;
      from.pause();
      to.once('drain', () => {
        if (!this.#frozen.has(from)) from.resume();
      });
    });
    from.on('end', () => to.end());
  }
}
