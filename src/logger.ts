// Structured JSON logs (pino). Secrets never reach a log line: known sensitive fields are redacted
// as a second line of defence, and callers log identifiers, never credentials.
import pino, { type Logger } from 'pino';
import type { Config } from './config/index.ts';

// Credentials by name, at the top level and one level down (pino's wildcards match one level).
const SENSITIVE_FIELDS = [
  'password', 'passwordHash', 'client_secret', 'token', 'access_token', 'refresh_token', 'id_token',
  'code_verifier', 'client_assertion', 'authorization', 'cookie', 'set-cookie',
];
const REDACTED_PATHS = [
  ...SENSITIVE_FIELDS.flatMap((field) => [`["${field}"]`, `*["${field}"]`]),
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["set-cookie"]',
];

/** Logs go to standard output, or to another file descriptor (the CLI keeps stdout for its own output). */
export function createLogger(config: Pick<Config, 'logLevel'>, fileDescriptor: 1 | 2 = 1): Logger {
  return pino({ level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, pino.destination(fileDescriptor));
}
