// Each admin API operation is declared once: its method and path, the scope it needs, the zod schemas of its
// path parameters, query and body (strict objects: an unknown field is refused), its answers, and its handler.
// The same declaration routes the request, validates it, and writes the OpenAPI document, so they cannot drift.
import Router from '@koa/router';
import { bodyParser } from '@koa/bodyparser';
import type { Context } from 'koa';
import { z } from 'zod';
import { invalidRequest, Problem, PROBLEM_TYPES, problemSchema, problemTypeUri } from './problems.ts';
import { requireScope, type AdminCaller, type AdminScope } from './authentication.ts';
import { UNSTORABLE_TEXT, pathsToUnstorableText } from '../../text.ts';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** A handler's answer: 204 when there is no body. */
export interface Reply {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface Answer {
  description: string;
  schema?: z.ZodType;
  /** Response headers the answer carries (ETag, Location). */
  headers?: readonly string[];
}

type Schema = z.ZodType<unknown, unknown>;

export interface OperationSpec<Params extends Schema, Query extends Schema, Body extends Schema> {
  id: string;
  tag: string;
  method: Method;
  /** As in OpenAPI, under /admin/v1: /users/{id}. */
  path: string;
  summary: string;
  scope: AdminScope;
  params?: Params;
  query?: Query;
  body?: Body;
  /** Success answers by status. */
  answers: Record<number, Answer>;
  /** Problems this operation answers with besides those every one does (400, 401, 403, 422, 429, 503). */
  problems?: readonly number[];
  /** Reads If-Match (the resource's ETag): said in the document. */
  ifMatch?: boolean;
  handle(request: { params: z.output<Params>; query: z.output<Query>; body: z.output<Body>; caller: AdminCaller; ctx: Context }): Promise<Reply>;
}

/** An operation with its types forgotten, as the list keeps it. */
export type Operation = OperationSpec<Schema, Schema, Schema>;

/** Declares an operation (the types of its handler's input follow from its schemas). */
export function operation<Params extends Schema = z.ZodObject<Record<never, never>>, Query extends Schema = z.ZodObject<Record<never, never>>, Body extends Schema = z.ZodUndefined>(
  spec: OperationSpec<Params, Query, Body>,
): Operation {
  return spec as unknown as Operation;
}

const COMMON_PROBLEMS = [400, 401, 403, 422, 429, 503];

const jsonBody = bodyParser({
  enableTypes: ['json'], jsonLimit: '64kb', encoding: 'utf-8',
  onError: (error) => {
    if ((error as { status?: unknown }).status === 413) throw new Problem('payload-too-large', 'The body is larger than 64 KB');
    throw new Problem('malformed-request', 'The body is not valid JSON');
  },
});

/** Adds the operations to the router, each behind its scope check and its validation. */
export function route(router: Router, operations: readonly Operation[], authenticate: (ctx: Context) => Promise<AdminCaller>): void {
  for (const spec of operations) {
    const path = spec.path.replace(/\{(\w+)\}/g, ':$1');
    router[spec.method](spec.id, path, async (ctx) => {
      const caller = await authenticate(ctx);
      requireScope(caller, spec.scope);
      const params = parse('path', spec.params ?? z.object({}), ctx.params);
      const query = parse('query', spec.query ?? z.strictObject({}), ctx.query);
      let body: unknown;
      if (spec.body) {
        if (!ctx.is('application/json')) throw new Problem('unsupported-media-type', 'Send the body as application/json');
        await jsonBody(ctx, async () => {});
        body = parse('body', spec.body, (ctx.request as { body?: unknown }).body);
      } else if (ctx.request.length) {
        throw new Problem('malformed-request', 'This operation takes no body');
      }
      const reply = await spec.handle({ params, query, body, caller, ctx } as never);
      ctx.set('Cache-Control', 'no-store');
      for (const [name, value] of Object.entries(reply.headers ?? {})) ctx.set(name, value);
      ctx.status = reply.status ?? (reply.body === undefined ? 204 : 200);
      if (reply.body !== undefined) {
        ctx.body = reply.body;
        ctx.type = 'application/json';
      }
    });
  }
}

function parse<T>(part: 'path' | 'query' | 'body', schema: z.ZodType<T>, value: unknown): T {
  // No text Gatehouse keeps may hold U+0000 or an unpaired surrogate (src/text.ts): refused here, for every field at once.
  const unstorable = pathsToUnstorableText(value ?? {});
  if (unstorable.length) {
    throw invalidRequest(part, new z.ZodError(unstorable.map((path) => ({ code: 'custom', path, message: UNSTORABLE_TEXT, input: undefined }))));
  }
  const result = schema.safeParse(value ?? {});
  if (!result.success) throw invalidRequest(part, result.error);
  return result.data;
}

/** The OpenAPI 3.1 document of these operations, served at `serverUrl`. */
export function openApiDocument(operations: readonly Operation[], options: { serverUrl: string; tokenUrl: string; scopes: Record<string, string> }): object {
  const schemaOf = (schema: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' }) as Record<string, unknown>;
  const paths: Record<string, Record<string, object>> = {};
  for (const spec of operations) {
    const parameters = [
      ...objectFields(spec.params).map(([name, schema]) => ({ name, in: 'path', required: true, schema: withoutDialect(schemaOf(schema, 'input')) })),
      ...objectFields(spec.query).map(([name, schema]) => ({ name, in: 'query', required: !schema.safeParse(undefined).success, schema: withoutDialect(schemaOf(schema, 'input')) })),
      ...(spec.ifMatch ? [{ name: 'If-Match', in: 'header', required: true, description: 'The ETag the resource was read with', schema: { type: 'string' } }] : []),
    ];
    const responses: Record<string, object> = {};
    for (const [status, answer] of Object.entries(spec.answers)) {
      responses[status] = {
        description: answer.description,
        ...(answer.headers ? { headers: Object.fromEntries(answer.headers.map((header) => [header, { schema: { type: 'string' } }])) } : {}),
        ...(answer.schema ? { content: { 'application/json': { schema: withoutDialect(schemaOf(answer.schema, 'output')) } } } : {}),
      };
    }
    for (const status of [...COMMON_PROBLEMS, ...(spec.body ? [413, 415] : []), ...(spec.problems ?? [])].sort()) {
      const types = Object.entries(PROBLEM_TYPES).filter(([, problem]) => problem.status === status).map(([type]) => problemTypeUri(type as keyof typeof PROBLEM_TYPES));
      responses[String(status)] = {
        description: types.join(', '),
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      };
    }
    paths[spec.path] ??= {};
    paths[spec.path]![spec.method] = {
      operationId: spec.id, tags: [spec.tag], summary: spec.summary,
      security: [{ bearer: [spec.scope] }, { oauth2: [spec.scope] }],
      ...(parameters.length ? { parameters } : {}),
      ...(spec.body ? { requestBody: { required: true, content: { 'application/json': { schema: withoutDialect(schemaOf(spec.body, 'input')) } } } } : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Gatehouse admin API', version: '1' },
    servers: [{ url: options.serverUrl }],
    paths,
    components: {
      schemas: { Problem: withoutDialect(schemaOf(problemSchema, 'output')) },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token Gatehouse issued for this API (resource: the server URL)' },
        oauth2: { type: 'oauth2', flows: { clientCredentials: { tokenUrl: options.tokenUrl, scopes: options.scopes } } },
      },
    },
  };
}

/** The fields of an object schema (a path or a query). */
function objectFields(schema: Schema | undefined): Array<[string, z.ZodType]> {
  return schema instanceof z.ZodObject ? Object.entries(schema.shape as Record<string, z.ZodType>) : [];
}

/** OpenAPI 3.1's dialect is the document's: the schemas inside carry no $schema of their own. */
function withoutDialect(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = schema;
  return rest;
}
