// A TCP proxy for outage tests: sits between Gatehouse and a real service (PostgreSQL on TCP, or the
// embedded database's Unix socket) and can be cut — listener closed, every connection dropped — and restored.
import { once } from 'node:events';
import net from 'node:net';

/** Where the proxy forwards to: a TCP host and port, or a Unix socket path. */
export type ProxyTarget = { host: string; port: number } | { path: string };

export class CuttableProxy {
  readonly #target: ProxyTarget;
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | undefined;
  #port = 0;

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

  async close(): Promise<void> {
    await this.cut();
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
        // Either side closing ends the pair, as a real connection would end.
        incoming.destroy();
        outgoing.destroy();
      });
    }
    incoming.pipe(outgoing);
    outgoing.pipe(incoming);
  }
}
