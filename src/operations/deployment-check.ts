// What `gatehouse check` reports without starting a server, and what a production start refuses: every
// unsafe or unreadable setting at once, whether the database and the store answer, and whether the store
// keeps what it holds.
import { ConfigError, readConfig, type Config } from '../config/index.ts';
import { openDatabase } from '../db/index.ts';
import { DependencyUnavailable } from '../errors.ts';
import { createStore, type Store } from '../store/index.ts';

export interface Finding {
  subject: 'configuration' | 'database' | 'store';
  /** What must change, each with its remedy; empty when the subject is fine. */
  problems: string[];
  /** What is fine about it, for the operator's eyes (e.g. "production", "Redis, append-only, noeviction"). */
  summary?: string;
}

/**
 * `secretProblems`: what the configured secrets' own checks refuse (src/keys/secrets.ts, whose key ring depends on
 * this folder's request context: handed in, so that the folders do not depend on each other in a circle).
 */
export async function checkDeployment(secretProblems: (config: Config) => Promise<string[]>, environment?: NodeJS.ProcessEnv): Promise<Finding[]> {
  let read: ReturnType<typeof readConfig>;
  try {
    read = readConfig(environment);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return [{ subject: 'configuration', problems: [...error.problems] }];
  }
  const { config, refused } = read;
  // Production's refusals hide nothing: the secrets and the dependencies are checked too, all but the embedded
  // database and the in-process store that production refuses already.
  const development = config.mode !== 'production';
  return [
    { subject: 'configuration', problems: [...refused, ...await secretProblems(config)], summary: config.mode },
    ...(config.databaseUrl || development ? [await checkDatabase(config)] : []),
    ...(config.redis || development ? [await checkStore(config)] : []),
  ];
}

/**
 * In production the store is where grants, refresh tokens, "used" markers and revocation lists live: a
 * Redis that loses writes on restart or evicts keys under memory pressure would bring dead tokens back.
 */
export async function refuseForgetfulStore(config: Config, store: Store): Promise<void> {
  if (config.mode !== 'production') return;
  const problems = await store.durabilityProblems();
  if (problems.length) throw new ConfigError(problems);
}

async function checkDatabase(config: Config): Promise<Finding> {
  try {
    const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, poolSize: 1 });
    try {
      await database.ping();
    } finally {
      await database.close();
    }
    return { subject: 'database', problems: [], summary: config.databaseUrl ? 'PostgreSQL answers' : `embedded PGlite in ${config.dataDir}` };
  } catch (error) {
    if (!(error instanceof DependencyUnavailable)) throw error;
    return { subject: 'database', problems: [error.describe()] };
  }
}

async function checkStore(config: Config): Promise<Finding> {
  const store = createStore({ redis: config.redis, prefix: config.storePrefix });
  try {
    await store.ping();
    if (config.mode === 'production') {
      return { subject: 'store', problems: await store.durabilityProblems(), summary: 'Redis persists (append-only) and never evicts' };
    }
    return { subject: 'store', problems: [], summary: config.redis ? 'Redis answers' : 'in-process (lost on restart)' };
  } catch (error) {
    if (!(error instanceof DependencyUnavailable)) throw error;
    return { subject: 'store', problems: [error.describe()] };
  } finally {
    await store.close();
  }
}
