// Structured JSON logs (pino). Secrets never reach a log line: known sensitive fields are redacted
// as a second line of defence, and callers log identifiers, never credentials.
import pino, { type DestinationStream, type Logger } from 'pino';
import type { Config } from './config/index.ts';
import { currentRequestId } from './request-context.ts';

// Credentials by name, at the top level and one level down (pino's wildcards match one level).
const SENSITIVE_FIELDS = [
  'password', 'passwordHash', 'client_secret', 'token', 'access_token', 'refresh_token', 'id_token',
  'code_verifier', 'client_assertion', 'authorization', 'cookie', 'set-cookie',
];
const REDACTED_PATHS = [
  ...SENSITIVE_FIELDS.flatMap((field) => [`["${field}"]`, `*["${field}"]`]),
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["set-cookie"]',
];

/**
 * Logs go to standard output, or to another file descriptor (the CLI keeps stdout for its own output) or stream. Every line
 * written while a request is served carries its id, whoever writes it: an error deep in a flow or the engine too.
 */
export function createLogger(config: Pick<Config, 'logLevel'>, destination: 1 | 2 | DestinationStream = 1): Logger {
  return pino({
    level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' }, mixin: withRequestId, mixinMergeStrategy: (line) => line,
  }, typeof destination === 'number' ? pino.destination(destination) : destination);
}

const NOTHING_TO_MERGE = {};

/**
 * Adds the request's id to the line's own object, unless it has one, rather than returning it to be merged: pino's
 * merge makes a new object of every line, which cost a token request 8% of its rate (bench:compare).
 */
function withRequestId(line: { requestId?: unknown }): object {
  if (line.requestId === undefined) {
    const requestId = currentRequestId();
    if (requestId !== undefined) line.requestId = requestId;
  }
  return NOTHING_TO_MERGE;
}
