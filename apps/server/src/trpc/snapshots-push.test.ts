import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, codeOf } from '../../test/api-client.ts';
import { testBackends } from '../../test/databases.ts';
import { messageJson, nestedJson } from '../../test/raw-agent.ts';
import { startTestServer, type TestServer, testAdminToken } from '../../test/test-server.ts';
import { defaults } from '../defaults.ts';

const maxSnapshotBytes = 64 * 1024;
const time = new Date(Date.UTC(2026, 5, 3, 13)).toISOString();
const message = (id: number, content = `message ${id}`) => ({ id, role: 'agent' as const, content, time });

describe.each(testBackends())('snapshots.push over HTTP on %s', (backend) => {
  let running: TestServer;
  let workspace: ReturnType<typeof apiClient>;
  let key: string;
  let taskId: string;

  beforeAll(async () => {
    // The body limit is well over the snapshot limit: the push must obey the snapshot's.
    running = await startTestServer(backend, {
      HIATUS_MAX_BODY_BYTES: String(8 * maxSnapshotBytes),
      HIATUS_MAX_SNAPSHOT_BYTES: String(maxSnapshotBytes),
      HIATUS_ALLOWED_AGENT_NETWORKS: '127.0.0.0/8',
    });
    const admin = apiClient(running.server.url, testAdminToken);
    const user = await admin.users.create.mutate({ username: 'pusher' });
    const owner = apiClient(running.server.url, (await admin.apiKeys.create.mutate({ userId: user.id })).key);
    const { task } = await owner.tasks.create.mutate({ name: 'pushy', prompt: '', agentUrl: 'http://127.0.0.1:9' });
    taskId = task.id;
    ({ key } = await owner.apiKeys.create.mutate({ scope: 'workspace', taskId }));
    workspace = apiClient(running.server.url, key);
  });
  afterAll(() => running?.close());

  const storedSnapshots = () =>
    running.server.app.db.selectFrom('task_snapshots').where('task_id', '=', taskId).selectAll().execute();

  /** A push sent as raw bytes, for bodies the SDK could not serialize (superjson stops near 1,400 levels). */
  const rawPush = async (json: string, meta?: unknown) => {
    const body = `{"json":{"taskId":"${taskId}","messages":[${json}]}${meta ? `,"meta":${JSON.stringify(meta)}` : ''}}`;
    const response = await fetch(`${running.server.url}/trpc/snapshots.push`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body,
    });
    return { status: response.status, text: await response.text() };
  };

  it('refuses a push over the snapshot size limit as too large, storing nothing', async () => {
    const messages = Array.from({ length: 10 }, (_, id) => message(id, 'x'.repeat(8 * 1024)));
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages }))).toBe('PAYLOAD_TOO_LARGE');
    expect(await storedSnapshots()).toEqual([]);
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages: messages.slice(0, 5) }))).toBe('OK');
    expect(await storedSnapshots()).toHaveLength(1);
    await running.server.app.db.deleteFrom('task_snapshots').where('task_id', '=', taskId).execute();
  });

  it('refuses a push past the bounds on depth and ids as a bad request, storing nothing', async () => {
    const deep = { ...message(0), x: JSON.parse(nestedJson(defaults.maxAgentMessageDepth)) };
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages: [deep] }))).toBe('BAD_REQUEST');
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages: [message(2 ** 31)] }))).toBe('BAD_REQUEST');
    const tooMany = Object.fromEntries(
      Array.from({ length: defaults.maxAgentMessageExtraFields + 1 }, (_, i) => [`f${i}`, i]),
    );
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages: [{ ...message(0), ...tooMany }] }))).toBe(
      'BAD_REQUEST',
    );
    expect(await storedSnapshots()).toEqual([]);
  });

  it('answers a push nested 50,000 levels deep with a bad request, and keeps serving', async () => {
    const pushed = await rawPush(messageJson(0, `"x":${nestedJson(50_000)}`));
    expect(pushed.status).toBe(400);
    expect(pushed.text).toContain('nests deeper than');
    // A value revived by superjson's meta (here a BigInt JSON.stringify cannot write) is no JSON either.
    const revived = await rawPush(messageJson(0, '"x":"1"'), { values: { 'messages.0.x': ['bigint'] } });
    expect(revived.status).toBe(400);
    expect(await storedSnapshots()).toEqual([]);
    expect(await codeOf(workspace.snapshots.push.mutate({ taskId, messages: [message(0)] }))).toBe('OK');
  });
});
