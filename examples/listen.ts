// Starting and stopping the examples' plain Node HTTP servers: listen on a port and say the origin,
// close without waiting for a browser's idle keep-alive connections.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Listens on host:port (0 picks a free port) and resolves with the origin browsers should use. */
export async function listen(server: Server, port: number, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return `http://${host}:${(server.address() as AddressInfo).port}`;
}

export async function closeServer(server: Server): Promise<void> {
  // A browser keeps idle connections open; without this, close() waits for them to time out.
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}
