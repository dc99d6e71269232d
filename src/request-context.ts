// The request being served, wherever its work goes (flows, the engine's events, the audit trail, work
// after the response), without passing it through every call: so an audit row carries its request id.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

export interface RequestContext {
  /** Also sent back as X-Request-Id and on the request's log line. */
  requestId: string;
}

const current = new AsyncLocalStorage<RequestContext>();

/** A caller's own X-Request-Id (a proxy's, to follow a request through it) when it is safe to log. */
const ACCEPTED_REQUEST_ID = /^[\w.:@-]{1,128}$/;

/** The id a request is known by: the one the caller sent, if it is one we can log as it is, or a new one. */
export function requestIdFrom(offered: string | undefined): string {
  return offered !== undefined && ACCEPTED_REQUEST_ID.test(offered) ? offered : randomUUID();
}

export function inRequestContext<Result>(context: RequestContext, work: () => Result): Result {
  return current.run(context, work);
}

/** The request being served, if any (none for the CLI and timers). */
export function currentRequestId(): string | undefined {
  return current.getStore()?.requestId;
}
