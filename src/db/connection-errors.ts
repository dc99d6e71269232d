// Tells connection failures (database down, unreachable, restarting, out of connections) from
// query errors, through the layers Prisma and its pg adapter wrap them in.

/** Node socket errors that mean "no server there" or "the connection broke". */
const SOCKET_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'EPIPE',
  // The embedded database's socket file is gone (no process hosts it right now). Only errors from
  // Prisma and pg reach this check: a transaction callback's own errors are passed through before.
  'ENOENT',
]);

/**
 * Whether an error means the database cannot be reached right now, as opposed to a bad query or a
 * constraint. Looks through Prisma's wrappers (error.cause, meta.driverAdapterError) to pg's error.
 */
export function isConnectionFailure(error: unknown): boolean {
  return layersOf(error).some(describesConnectionFailure);
}

/** The error and those it wraps, outermost first: each one's cause, or Prisma's pg adapter's error (meta.driverAdapterError). */
function layersOf(error: unknown): object[] {
  const layers: object[] = [];
  let current: unknown = error;
  while (current && typeof current === 'object' && !layers.includes(current)) {
    layers.push(current);
    const record = current as { cause?: unknown; meta?: { driverAdapterError?: unknown } };
    current = record.cause ?? record.meta?.driverAdapterError;
  }
  return layers;
}

/**
 * Whether the server refused the connection's login: no such role or database, or a wrong password (PostgreSQL's
 * 28000, 28P01, 3D000; Prisma's P1000, P1003). A setting to fix at a start; later (credentials rotated under a
 * running server) the database is as good as down, and counted so by isConnectionFailure.
 */
export function isLoginRefusal(error: unknown): boolean {
  return layersOf(error).some((layer) => {
    const { code, originalCode, kind } = layer as { code?: unknown; originalCode?: unknown; kind?: unknown };
    return [code, originalCode].some((value) => typeof value === 'string' && LOGIN_REFUSALS.has(value)) || LOGIN_REFUSAL_KINDS.has(String(kind));
  });
}

const LOGIN_REFUSALS = new Set(['28000', '28P01', '3D000', 'P1000', 'P1003']);
/** The same, as Prisma's pg adapter names them. */
const LOGIN_REFUSAL_KINDS = new Set(['DatabaseDoesNotExist', 'DatabaseAccessDenied', 'AuthenticationFailed']);

/**
 * The error to keep as a database failure's cause: one saying why in the driver's own words (pg's message, which
 * Prisma keeps as its adapter's originalMessage, or else puts last in its own, "… Message: `Can't reach database
 * server at host:port`", under a line naming the query), with the original as its cause.
 */
export function withDriverReason(error: unknown): unknown {
  const layers = layersOf(error);
  const reason = layers.map((layer) => (layer as { originalMessage?: unknown }).originalMessage).find((message) => typeof message === 'string' && message)
    ?? layers.map((layer) => PRISMA_DRIVER_MESSAGE.exec(String((layer as { message?: unknown }).message ?? ''))?.[1]).find(Boolean);
  return typeof reason === 'string' ? new Error(reason, { cause: error }) : error;
}

const PRISMA_DRIVER_MESSAGE = /Message: `(.+)`\s*$/;

function describesConnectionFailure(error: object): boolean {
  const { code, message, kind } = error as { code?: unknown; message?: unknown; kind?: unknown };
  if (typeof code === 'string') {
    if (SOCKET_ERROR_CODES.has(code) || LOGIN_REFUSALS.has(code)) return true;
    // PostgreSQL: admin/crash shutdown, starting up, too many connections, connection exceptions.
    if (code === '57P01' || code === '57P02' || code === '57P03' || code === '53300' || /^08[0-9A-Z]{3}$/.test(code)) return true;
    // Prisma: cannot reach the server, timed out, server closed the connection, pool timeout.
    if (code === 'P1001' || code === 'P1002' || code === 'P1017' || code === 'P2024') return true;
  }
  if (kind === 'DatabaseNotReachable' || kind === 'ConnectionClosed' || kind === 'SocketTimeout' || kind === 'TooManyConnections' || LOGIN_REFUSAL_KINDS.has(String(kind))) {
    return true;
  }
  return typeof message === 'string' && CONNECTION_FAILURE_MESSAGES.test(message);
}

/**
 * Errors that carry no code: pg's broken or timed-out connections, a query that got no answer
 * within query_timeout ("Query read timeout": a server that accepts connections but stopped
 * answering) and a client already ended because of one, pg-pool's wait for a free connection (its
 * connection timeout covers that too), and Prisma giving up waiting for one to start a transaction or
 * refusing a statement of one that outlived its timeout (both P2028): the database is too slow to answer.
 */
const CONNECTION_FAILURE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|Query read timeout|Client was closed and is not queryable|Unable to start a transaction in the given time|cannot be executed on an expired transaction/i;
