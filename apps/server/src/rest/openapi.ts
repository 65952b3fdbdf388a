import type { AnyProcedure } from '@trpc/server';
import {
  forEachOpenApiProcedure,
  generateOpenApiDocument,
  getInputOutputParsers,
  type OpenAPIObject,
  type OpenApiMeta,
  type OpenApiProcedureRecord,
} from 'trpc-to-openapi';
import type { ZodOpenApiOperationObject, ZodOpenApiPathsObject } from 'zod-openapi';
import { appRouter } from '../trpc/router.ts';
import { restBasePath } from './base-path.ts';
import { problemContentType } from './problem.ts';

export { restBasePath };

/** `info`'s `apiVersion`: the REST paths are version 1 of the API, as /trpc is. */
const apiVersion = '1';

type RouteMeta = NonNullable<OpenApiMeta['openapi']>;

/** The procedures served as REST paths, with their routes. */
export function restProcedures(): { path: string; procedure: AnyProcedure; route: RouteMeta }[] {
  const found: { path: string; procedure: AnyProcedure; route: RouteMeta }[] = [];
  forEachOpenApiProcedure(appRouter._def.procedures as OpenApiProcedureRecord, ({ path, procedure, meta }) => {
    found.push({ path, procedure: procedure as unknown as AnyProcedure, route: meta.openapi });
  });
  return found;
}

const problemSchema = {
  type: 'object',
  description:
    'RFC 9457 problem details. `code` is the API error code (as /trpc answers it in `data.code`); `requestId` is also in the `x-request-id` header and the server log.',
  required: ['type', 'title', 'status', 'detail', 'instance', 'code', 'requestId'],
  properties: {
    type: { type: 'string', format: 'uri-reference', description: '`about:blank`: `code` says more' },
    title: { type: 'string', description: "the HTTP status's reason phrase" },
    status: { type: 'integer' },
    detail: { type: 'string', description: 'what went wrong' },
    instance: { type: 'string', format: 'uri-reference', description: 'the request path' },
    code: {
      type: 'string',
      description:
        'BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, PRECONDITION_FAILED, TOO_MANY_REQUESTS, ...',
    },
    requestId: { type: ['string', 'null'] },
    issues: {
      type: 'array',
      description: "a bad input's problems, one per field",
      items: {
        type: 'object',
        required: ['path', 'message', 'code'],
        properties: {
          path: { type: 'array', items: { type: 'string' } },
          message: { type: 'string' },
          code: { type: 'string' },
        },
      },
    },
  },
} as const;

/**
 * The OpenAPI 3.1 document of the REST paths, generated from the routers' meta, input and output
 * schemas by trpc-to-openapi. Two things it cannot do are added here: an operation whose input is a
 * union (creating a task: `agentUrl` or `template`) is described from its own schemas, and every
 * operation's errors are the one problem+json response.
 */
export function openApiDocument(): OpenAPIObject {
  // trpc-to-openapi takes object inputs only; a union's operation is built here from the same schemas.
  const unionInputs = restProcedures().filter(({ procedure }) => !isObjectSchema(inputOf(procedure)));
  const document = generateOpenApiDocument(appRouter, {
    title: 'Hiatus',
    description:
      "Pauses and resumes AI coding agents' tasks. These REST paths are the same procedures as the tRPC API at /trpc, with the same keys and limits; dates are ISO 8601 strings. Errors are application/problem+json.",
    version: apiVersion,
    baseUrl: restBasePath,
    securitySchemes: {
      apiKey: { type: 'http', scheme: 'bearer', description: 'an API key: `Authorization: Bearer <key>`' },
    },
    filter: ({ metadata }) => !unionInputs.some(({ route }) => route === metadata.openapi),
    paths: Object.fromEntries(unionInputs.map(unionOperation)),
  });
  for (const item of Object.values(document.paths ?? {})) {
    for (const method of ['get', 'post', 'patch', 'put', 'delete'] as const) {
      const operation = item[method];
      if (operation)
        operation.responses = { ...operation.responses, default: { $ref: '#/components/responses/Problem' } };
    }
  }
  document.components = {
    ...document.components,
    schemas: { ...document.components?.schemas, Problem: problemSchema as never },
    responses: {
      ...document.components?.responses,
      Problem: {
        description: 'The call failed: problem details (RFC 9457)',
        headers: {
          'retry-after': {
            description: 'with 429 and 503: whole seconds until a retry may succeed',
            schema: { type: 'integer' },
          },
        },
        content: { [problemContentType]: { schema: { $ref: '#/components/schemas/Problem' } } },
      },
    },
  };
  return document;
}

function inputOf(procedure: AnyProcedure): unknown {
  return getInputOutputParsers(procedure as never).inputParser;
}

/** A zod object, possibly behind `.default()` or `.optional()`. */
function isObjectSchema(schema: unknown): boolean {
  let def = (schema as { _zod?: { def?: { type?: string; innerType?: unknown } } } | undefined)?._zod?.def;
  while (def && (def.type === 'default' || def.type === 'optional' || def.type === 'prefault')) {
    def = (def.innerType as { _zod?: { def?: { type?: string; innerType?: unknown } } })._zod?.def;
  }
  return def?.type === 'object';
}

/** An operation whose whole body is the procedure's (union) input. */
function unionOperation({
  path,
  procedure,
  route,
}: {
  path: string;
  procedure: AnyProcedure;
  route: RouteMeta;
}): [string, ZodOpenApiPathsObject[string]] {
  const { inputParser, outputParser } = getInputOutputParsers(procedure as never);
  const operation: ZodOpenApiOperationObject = {
    operationId: path.replace(/\./g, '-'),
    summary: route.summary,
    description: route.description,
    tags: route.tags,
    security: route.protect === false ? undefined : [{ apiKey: [] }],
    requestBody: { required: true, content: { 'application/json': { schema: inputParser } } },
    responses: {
      200: { description: 'Successful response', content: { 'application/json': { schema: outputParser } } },
    },
  };
  return [route.path, { [route.method.toLowerCase()]: operation }];
}
