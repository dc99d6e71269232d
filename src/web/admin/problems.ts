// The admin API's errors, as problem details (RFC 9457): application/problem+json with a stable `type` per kind
// of error, its status, a title that never changes for that type, and a detail for this occurrence. Nothing
// else the server knows (a stack, a query) ever reaches the answer.
import type { Context } from 'koa';
import type { Logger } from 'pino';
import { z } from 'zod';
import { DependencyUnavailable, RETRY_AFTER_OUTAGE_SECONDS } from '../../errors.ts';

/** Every kind of problem the admin API answers with: its status and its fixed title. */
export const PROBLEM_TYPES = {
  'malformed-request': { status: 400, title: 'The request could not be read' },
  unauthorized: { status: 401, title: 'A valid access token for the admin API is needed' },
  forbidden: { status: 403, title: 'The access token does not allow this' },
  'not-found': { status: 404, title: 'No such resource' },
  'method-not-allowed': { status: 405, title: 'This resource does not answer that method' },
  conflict: { status: 409, title: 'The request conflicts with what exists' },
  'last-administrator': { status: 409, title: 'That would leave nobody who can administer Gatehouse' },
  'precondition-failed': { status: 412, title: 'The resource changed since it was read' },
  'payload-too-large': { status: 413, title: 'The body is too large' },
  'unsupported-media-type': { status: 415, title: 'The body must be application/json' },
  'validation-failed': { status: 422, title: 'The request is not valid' },
  'precondition-required': { status: 428, title: 'Changing this resource needs If-Match with its ETag' },
  'too-many-requests': { status: 429, title: 'Too many requests' },
  'server-error': { status: 500, title: 'Something went wrong on the server' },
  'service-unavailable': { status: 503, title: 'A service Gatehouse depends on is unavailable' },
} as const;
export type ProblemType = keyof typeof PROBLEM_TYPES;

/** The `type` URI of a problem: a URN, stable across versions and deployments. */
export function problemTypeUri(type: ProblemType): string {
  return `urn:gatehouse:problem:${type}`;
}

/** One field that is wrong: a JSON pointer into the request part (body, query, path) and what is wrong with it. */
export interface InvalidParameter {
  in: 'body' | 'query' | 'path' | 'header';
  pointer: string;
  detail: string;
}

export class Problem extends Error {
  override name = 'Problem';
  readonly type: ProblemType;
  readonly invalidParameters: InvalidParameter[] | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly headers: Record<string, string>;

  constructor(type: ProblemType, detail: string, extra: { invalidParameters?: InvalidParameter[]; retryAfterSeconds?: number; headers?: Record<string, string> } = {}) {
    super(detail);
    this.type = type;
    this.invalidParameters = extra.invalidParameters;
    this.retryAfterSeconds = extra.retryAfterSeconds;
    this.headers = extra.headers ?? {};
  }

  get status(): number {
    return PROBLEM_TYPES[this.type].status;
  }
}

/** A zod failure on one part of the request, as a 422 naming every wrong field. */
export function invalidRequest(part: InvalidParameter['in'], error: z.ZodError): Problem {
  const invalidParameters = error.issues.map((issue) => ({
    in: part,
    pointer: `/${issue.path.map((segment) => String(segment).replaceAll('~', '~0').replaceAll('/', '~1')).join('/')}`,
    detail: issue.message,
  }));
  const detail = invalidParameters.map((parameter) => `${parameter.in} ${parameter.pointer}: ${parameter.detail}`).join('; ');
  return new Problem('validation-failed', detail, { invalidParameters });
}

/** The problem document's shape, for the OpenAPI document. */
export const problemSchema = z.object({
  type: z.string().describe('A URN naming the kind of problem (urn:gatehouse:problem:<kind>)'),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  instance: z.string().describe('The request path'),
  invalid_parameters: z.array(z.object({ in: z.enum(['body', 'query', 'path', 'header']), pointer: z.string(), detail: z.string() })).optional(),
});

/** Answers whatever the handlers threw as a problem; an unexpected error is logged and told as a bare 500. */
export function answerProblems(logger: Logger) {
  return async (ctx: Context, next: () => Promise<void>): Promise<void> => {
    try {
      await next();
    } catch (error) {
      const problem = asProblem(error);
      if (problem.status >= 500 && problem.type === 'server-error') logger.error({ err: error, path: ctx.path, method: ctx.method }, 'admin API request failed');
      writeProblem(ctx, problem);
    }
  };
}

export function writeProblem(ctx: Context, problem: Problem): void {
  ctx.status = problem.status;
  ctx.set('Cache-Control', 'no-store');
  for (const [name, value] of Object.entries(problem.headers)) ctx.set(name, value);
  if (problem.retryAfterSeconds !== undefined) ctx.set('Retry-After', String(problem.retryAfterSeconds));
  ctx.body = {
    type: problemTypeUri(problem.type), title: PROBLEM_TYPES[problem.type].title, status: problem.status, detail: problem.message, instance: ctx.path,
    ...(problem.invalidParameters ? { invalid_parameters: problem.invalidParameters } : {}),
  };
  ctx.type = 'application/problem+json';
}

function asProblem(error: unknown): Problem {
  if (error instanceof Problem) return error;
  if (error instanceof DependencyUnavailable) return new Problem('service-unavailable', `${error.message}; try again in a moment`, { retryAfterSeconds: RETRY_AFTER_OUTAGE_SECONDS });
  // Koa's own (a body too large, say) carry a client status.
  const status = (error as { status?: unknown; expose?: unknown }).status;
  if (typeof status === 'number' && status >= 400 && status < 500 && (error as { expose?: unknown }).expose) {
    return new Problem(status === 415 ? 'unsupported-media-type' : 'malformed-request', (error as Error).message);
  }
  return new Problem('server-error', 'The request failed on the server; it is logged');
}
