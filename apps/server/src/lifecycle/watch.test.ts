import { describe, expect, it, vi } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useHarness } from '../../test/harness.ts';
import { generateApiKey, keyDigest } from '../auth/keys.ts';
import { insertApiKey, revokeApiKeyRow } from '../db/api-keys.ts';
import type { Task } from '../db/tasks.ts';
import { watchTask } from './watch.ts';

describe.each(testBackends())('watching a task on %s', (backend) => {
  const h = useHarness(backend, {}, { agent: 'shared' });

  it('ends with unauthorized once the key it was opened with is revoked, and not before', async () => {
    const task = await h.task();
    const { id, hash } = keyDigest(generateApiKey());
    await insertApiKey(h.db, { id, userId: h.alice.userId, secretHash: hash, scope: 'read' });
    // The watch's database, counting its key checks (its reads of api_keys) as they start.
    let keyChecks = 0;
    const db = h.db.withPlugin({
      transformQuery: ({ node }) => {
        if (JSON.stringify(node).includes('"api_keys"')) keyChecks++;
        return node;
      },
      transformResult: async ({ result }) => result,
    });
    const abort = new AbortController();
    const seen: Task[] = [];
    const watching = (async () => {
      for await (const t of watchTask({ db, events: h.app.events }, h.alice, task.id, abort.signal, {
        keyId: id,
        pollMs: 20,
        keyCheckMs: 50,
      })) {
        seen.push(t);
      }
    })();
    // A third check starts only after two passed while the key is good: the watch went on.
    await vi.waitFor(() => expect(keyChecks).toBeGreaterThanOrEqual(3), { timeout: 30_000 });
    expect(seen.map((t) => t.id)).toEqual([task.id]);
    const ended = expect(watching).rejects.toMatchObject({
      code: 'unauthorized',
      message: expect.stringContaining('revoked'),
    });
    await revokeApiKeyRow(h.db, id);
    await ended;
    abort.abort();
  });

  it('ends cleanly when its caller stops, whatever the key', async () => {
    const task = await h.task();
    const abort = new AbortController();
    const seen: Task[] = [];
    const watching = (async () => {
      for await (const t of watchTask(h.app, h.alice, task.id, abort.signal, { pollMs: 20 })) seen.push(t);
    })();
    await vi.waitFor(() => expect(seen).toHaveLength(1), { timeout: 30_000 });
    abort.abort();
    await watching;
    expect(seen.map((t) => t.id)).toEqual([task.id]);
  });
});
