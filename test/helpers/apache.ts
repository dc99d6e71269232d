// Apache httpd with mod_auth_openidc (Debian's apache2-bin and libapache2-mod-auth-openidc), on a loopback port,
// as a relying party of a test Gatehouse: what the configuration protects needs an OpenID Connect sign-in.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findFreePort } from './redis.ts';

const APACHE = '/usr/sbin/apache2';
const MODULES = '/usr/lib/apache2/modules';

/** Why Apache with mod_auth_openidc cannot run here, or undefined when it can. */
export function apacheUnavailable(): string | undefined {
  if (!existsSync(APACHE)) return `${APACHE} is missing (Debian package apache2-bin)`;
  if (!existsSync(path.join(MODULES, 'mod_auth_openidc.so'))) return 'mod_auth_openidc is missing (Debian package libapache2-mod-auth-openidc)';
  return undefined;
}

export interface RelyingParty {
  origin: string;
  /** The redirect URI mod_auth_openidc handles (register it with the client). */
  redirectUri: string;
  close(): Promise<void>;
  errorLog(): Promise<string>;
}

/** `directives`: the configuration under test (the README's mod_auth_openidc block). Starts Apache in the foreground. */
export async function startApache(port: number, directives: string): Promise<RelyingParty> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-apache-'));
  await mkdir(path.join(root, 'htdocs', 'protected'), { recursive: true });
  await writeFile(path.join(root, 'htdocs', 'protected', 'hello.txt'), 'hello from the protected area\n');
  // Asked by the browser of every page: an empty one rather than a 404 in its console.
  await writeFile(path.join(root, 'htdocs', 'favicon.ico'), '');
  // Apache started as root serves as www-data: it must read the pages and write its cache.
  await chmod(root, 0o755);
  const config = `ServerRoot ${root}
Listen 127.0.0.1:${port}
ServerName 127.0.0.1
PidFile ${root}/httpd.pid
ErrorLog ${root}/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authn_core_module ${MODULES}/mod_authn_core.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule authz_user_module ${MODULES}/mod_authz_user.so
LoadModule auth_openidc_module ${MODULES}/mod_auth_openidc.so
DocumentRoot ${root}/htdocs
<Directory ${root}/htdocs>
  Require all granted
</Directory>
${directives}
`;
  await writeFile(path.join(root, 'httpd.conf'), config);
  const child = spawn(APACHE, ['-X', '-f', path.join(root, 'httpd.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
  const origin = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`apache exited: ${output}${await readFile(path.join(root, 'error.log'), 'utf8').catch(() => '')}`);
    if (await fetch(`${origin}/`).then(() => true, () => false)) break;
    if (attempt > 100) throw new Error(`apache did not start: ${output}`);
    await sleep(50); // polling the port: Apache says nothing when it is ready
  }
  return {
    origin,
    redirectUri: `${origin}/protected/redirect_uri`,
    errorLog: () => readFile(path.join(root, 'error.log'), 'utf8').catch(() => ''),
    async close() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
      await rm(root, { recursive: true, force: true });
    },
  };
}

export { findFreePort };
