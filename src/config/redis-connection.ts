// REDIS_URL and its companions read into where Redis is: one server, the Sentinels to ask for a master, or
// nodes of a Redis Cluster to start from (src/store/redis-connection.ts connects to it).

export const DEFAULT_SENTINEL_PORT = 26379;
export const DEFAULT_REDIS_PORT = 6379;

/** Where Redis is: one server, or the Sentinels to ask for a master, or nodes of a Redis Cluster to start from. */
export interface RedisConnection {
  /** redis:// or rediss:// URL; several hosts are separated by commas (Sentinels or cluster nodes). */
  url: string;
  /** The URL's hosts are Sentinels, asked where this master is. */
  sentinelMaster?: string | undefined;
  /** For Sentinels that require a password of their own (the URL's is the master's). */
  sentinelPassword?: string | undefined;
  /** The URL's hosts are nodes of a Redis Cluster; the others are found from them. */
  cluster?: boolean | undefined;
}

export interface RedisAddress {
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
  database: number;
  hosts: { host: string; port: number }[];
}

/**
 * Reads a redis[s]:// URL whose authority may list several hosts ("h1:26379,h2:26379"), which the URL
 * standard does not allow, so the host list is cut out and the rest read as a URL.
 */
export function parseRedisUrl(url: string, defaultPort = DEFAULT_REDIS_PORT): RedisAddress {
  const scheme = /^(rediss?):\/\//.exec(url);
  if (!scheme) throw new Error('must be a redis:// or rediss:// URL');
  const rest = url.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const at = authority.lastIndexOf('@');
  const userInfo = at === -1 ? '' : `${authority.slice(0, at)}@`;
  const placeholder = URL.parse(`${scheme[0]}${userInfo}host${authorityEnd === -1 ? '' : rest.slice(authorityEnd)}`);
  if (!placeholder) throw new Error('is not a URL');
  const hosts = authority.slice(at + 1).split(',').map((host) => {
    const parsed = URL.parse(`redis://${host}`);
    if (!host || !parsed?.hostname) throw new Error(`names a host that is not host:port ("${host}")`);
    return { host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'), port: parsed.port ? Number(parsed.port) : defaultPort };
  });
  const database = placeholder.pathname.replace(/^\//, '');
  if (!/^\d*$/.test(database)) throw new Error('has a path that is not a database number');
  return {
    tls: scheme[1] === 'rediss',
    username: placeholder.username ? decodeURIComponent(placeholder.username) : undefined,
    password: placeholder.password ? decodeURIComponent(placeholder.password) : undefined,
    database: Number(database || 0),
    hosts,
  };
}

/** Why a connection setting cannot work, or undefined when it can. */
export function redisConnectionProblem(connection: RedisConnection): string | undefined {
  let address: RedisAddress;
  try {
    address = parseRedisUrl(connection.url);
  } catch (error) {
    return `REDIS_URL ${(error as Error).message}`;
  }
  if (connection.cluster && connection.sentinelMaster) return 'REDIS_CLUSTER and REDIS_SENTINEL_MASTER exclude each other: a Redis Cluster has no Sentinels';
  if (connection.cluster && address.database !== 0) return 'REDIS_URL names database ' + address.database + ', but a Redis Cluster has only database 0';
  if (!connection.cluster && !connection.sentinelMaster && address.hosts.length > 1) {
    return 'REDIS_URL names several hosts: say whether they are Sentinels (REDIS_SENTINEL_MASTER=<master name>) or cluster nodes (REDIS_CLUSTER=true)';
  }
  if (connection.sentinelPassword && !connection.sentinelMaster) return 'REDIS_SENTINEL_PASSWORD needs REDIS_SENTINEL_MASTER';
  return undefined;
}
