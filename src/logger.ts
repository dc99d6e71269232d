// Structured JSON logs (pino). Secrets never reach a log line: known sensitive fields are redacted
// as a second line of defence, and callers log identifiers, never credentials.
import pino, { type Logger } from 'pino';
import type { Config } from './config/index.ts';

const REDACTED_PATHS = [
  'password', '*.password', 'client_secret', '*.client_secret', 'token', '*.token', 'code', '*.code',
  'req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie',
];

export function createLogger(config: Pick<Config, 'logLevel'>): Logger {
  return pino({ level: config.logLevel, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } });
}
