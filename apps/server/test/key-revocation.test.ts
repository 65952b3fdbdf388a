import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, codeOf } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const adminToken = 'key-revocation-admin-token-3b9e71c4d2a6f058';

/** Calls `me` with `key` on `url` until it is refused; answers how long that took. */
async function msUntilRefused(url: string, key: string, limitMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const code = await codeOf(apiClient(url, key).me.query());
    const elapsed = performance.now() - started;
    if (code === 'UNAUTHORIZED') return elapsed;
    if (elapsed > limitMs) return elapsed;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// Verified keys are kept in each process (HIATUS_KEY_CACHE_MS, 10 s by default) so that a request
// costs one query; a revocation must still reach every process at once.
describe.runIf(postgresServerUrl())('a revoked key, across server processes on PostgreSQL', () => {
  let database: TestDatabase;
  const processes: ServerProcess[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    const env = {
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    };
    processes.push(await startServerProcess(env));
    processes.push(await startServerProcess({ ...env, HIATUS_MIGRATE_ON_START: 'false' }));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await database?.drop();
  });

  it('is refused by every process within a second of its revocation', async () => {
    const [first, second] = processes as [ServerProcess, ServerProcess];
    const admin = apiClient(first.url, adminToken);
    const user = await admin.users.create.mutate({ username: 'carol' });
    for (let round = 0; round < 3; round++) {
      const { key, apiKey } = await admin.apiKeys.create.mutate({ userId: user.id, name: `k${round}` });
      // Both processes have verified the key (and keep it) before it is revoked.
      for (const server of processes) {
        for (let i = 0; i < 3; i++) expect(await codeOf(apiClient(server.url, key).me.query())).toBe('OK');
      }
      await admin.apiKeys.revoke.mutate({ id: apiKey.id });
      expect(await codeOf(apiClient(first.url, key).me.query())).toBe('UNAUTHORIZED');
      const elapsed = await msUntilRefused(second.url, key, 5_000);
      console.log(`revoked key refused by the other process after ${elapsed.toFixed(0)} ms`);
      expect(elapsed).toBeLessThan(1_000);
    }
  }, 60_000);
});

describe('a revoked or expired key, in one process on PGlite', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer('pglite');
  }, 60_000);
  afterAll(async () => {
    await server?.close();
  });

  it('is refused at the next request after its revocation, and once it expires', async () => {
    const admin = apiClient(server.server.url, server.adminToken);
    const user = await admin.users.create.mutate({ username: 'dave' });
    const { key, apiKey } = await admin.apiKeys.create.mutate({ userId: user.id, name: 'k' });
    expect(await codeOf(apiClient(server.server.url, key).me.query())).toBe('OK');
    expect(await codeOf(apiClient(server.server.url, key).me.query())).toBe('OK');
    await admin.apiKeys.revoke.mutate({ id: apiKey.id });
    expect(await codeOf(apiClient(server.server.url, key).me.query())).toBe('UNAUTHORIZED');

    const soon = await admin.apiKeys.create.mutate({
      userId: user.id,
      name: 'brief',
      expiresAt: new Date(Date.now() + 1_500),
    });
    expect(await codeOf(apiClient(server.server.url, soon.key).me.query())).toBe('OK');
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    expect(await codeOf(apiClient(server.server.url, soon.key).me.query())).toBe('UNAUTHORIZED');
  }, 30_000);
});
