import { describe, expect, it } from 'vitest';
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
    const abort = new AbortController();
    const seen: Task[] = [];
    const watching = (async () => {
      for await (const t of watchTask(h.app, h.alice, task.id, abort.signal, {
        keyId: id,
        pollMs: 20,
        keyCheckMs: 50,
      })) {
        seen.push(t);
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 300)); // several checks pass while the key is good
    expect(seen.map((t) => t.id)).toEqual([task.id]);
    await revokeApiKeyRow(h.db, id);
    const revokedAt = Date.now();
    await expect(watching).rejects.toMatchObject({ code: 'unauthorized', message: expect.stringContaining('revoked') });
    expect(Date.now() - revokedAt).toBeLessThan(1_000);
    abort.abort();
  });

  it('ends cleanly when its caller stops, whatever the key', async () => {
    const task = await h.task();
    const abort = new AbortController();
    const watching = (async () => {
      const seen: Task[] = [];
      for await (const t of watchTask(h.app, h.alice, task.id, abort.signal, { pollMs: 20 })) seen.push(t);
      return seen;
    })();
    await new Promise((resolve) => setTimeout(resolve, 100));
    abort.abort();
    expect((await watching).map((t) => t.id)).toEqual([task.id]);
  });
});
