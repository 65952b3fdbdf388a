import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { openApiDocument, restProcedures } from './openapi.ts';

describe('the OpenAPI document', () => {
  const document = openApiDocument();

  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(document) as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(document.openapi).toBe('3.1.0');
    expect(document.servers).toEqual([{ url: '/api/v1' }]);
    // The validator does refuse a broken document (a parameter without its required `in`).
    const broken = structuredClone(document) as { paths: Record<string, { get?: { parameters?: { in?: string }[] } }> };
    delete broken.paths['/tasks/{id}']?.get?.parameters?.[0]?.in;
    expect((await new Validator().validate(broken as never)).valid).toBe(false);
  });

  it('has every REST procedure at its path, keyed by bearer, failing with problem+json', () => {
    const routes = restProcedures();
    expect(routes.map((r) => `${r.route.method} ${r.route.path}`)).toEqual(
      expect.arrayContaining([
        'POST /tasks',
        'GET /tasks',
        'GET /tasks/{id}',
        'PATCH /tasks/{id}',
        'DELETE /tasks/{id}',
        'POST /tasks/{id}/pause',
        'POST /tasks/{id}/resume',
        'POST /tasks/{id}/send',
        'POST /tasks/{id}/keep-alive',
        'POST /tasks/{id}/messages/{messageId}/cancel',
        'GET /tasks/{id}/logs',
        'GET /tasks/{taskId}/builds',
        'GET /events',
        'GET /me',
        'GET /templates',
      ]),
    );
    expect(document.components?.securitySchemes).toEqual({
      apiKey: expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    });
    for (const { path, route } of routes) {
      const operation = document.paths?.[route.path]?.[route.method.toLowerCase() as 'get'];
      expect(operation, `${route.method} ${route.path} (${path})`).toBeDefined();
      expect(operation?.summary).toBeTruthy();
      expect(operation?.description).toBeTruthy();
      expect(operation?.security).toEqual(route.protect === false ? undefined : [{ apiKey: [] }]);
      expect(operation?.responses?.default).toEqual({ $ref: '#/components/responses/Problem' });
      expect(Object.keys(operation?.responses ?? {}).sort()).toEqual(['200', 'default']);
    }
    expect(document.components?.responses?.Problem).toMatchObject({
      content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
    });
  });

  it('describes both shapes of a new task, and dates as date-time strings', () => {
    const create = document.paths?.['/tasks']?.post;
    const body = create?.requestBody as { content: Record<string, { schema: { anyOf?: { required: string[] }[] } }> };
    const shapes = body.content['application/json']?.schema.anyOf ?? [];
    expect(shapes.map((shape) => shape.required.filter((f) => f === 'agentUrl' || f === 'template'))).toEqual([
      ['agentUrl'],
      ['template'],
    ]);
    const task = document.components?.schemas?.Task as { properties: Record<string, unknown> };
    expect(task.properties.createdAt).toEqual({ type: 'string', format: 'date-time' });
    expect(task.properties.status).toMatchObject({ enum: expect.arrayContaining(['active', 'paused']) });
  });
});
