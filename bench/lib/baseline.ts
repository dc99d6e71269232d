// The baseline as a target: bench/baseline-server.ts started in a process of its own, its tokens minted through
// its setup door (POST /bench/mint), which the scenarios never use.
import path from 'node:path';
import type { BackingServices } from './backing-services.ts';
import type { Cleanup } from './cleanup.ts';
import { BASELINE_PUBLIC_CLIENT_ID, BASELINE_SERVICE_CLIENT, type Target } from './fixtures.ts';
import { freePort, startServer } from './processes.ts';

export async function startBaseline(backing: BackingServices, cleanup: Cleanup): Promise<Target> {
  const port = await freePort();
  const server = await startServer({
    name: 'baseline', script: 'bench/baseline-server.ts', port, readyPath: '/.well-known/openid-configuration',
    environment: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(port) },
    errorLog: path.join(backing.folder, 'baseline.stderr.log'),
  }, cleanup);
  const mint = async (kind: 'refresh' | 'code', count: number): Promise<string[]> => {
    const response = await fetch(`${server.origin}/bench/mint?kind=${kind}&count=${count}`, { method: 'POST' });
    if (!response.ok) throw new Error(`baseline: minting ${count} ${kind} answered ${response.status} ${await response.text()}`);
    return await response.json() as string[];
  };
  return {
    name: 'baseline',
    origin: server.origin,
    pid: server.pid,
    serviceClient: BASELINE_SERVICE_CLIENT,
    publicClientId: BASELINE_PUBLIC_CLIENT_ID,
    mintRefreshTokens: (count) => mint('refresh', count),
    mintAuthorizationCodes: (count) => mint('code', count),
  };
}
