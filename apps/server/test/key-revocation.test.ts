import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { apiClient, codeOf } from './api-client.ts';
import { createTestDatabase, databaseEnv, postgresServerUrl, type TestDatabase } from './databases.ts';
import { type ServerProcess, startServerProcess } from './server-process.ts';
import { startTestServer, type TestServer } from './test-server.ts';

const adminToken = 'key-revocation-admin-token-3b9e71c4d2a6f058';

/** Verified keys are kept this long here: far longer than any test runs, so only a revocation ends one. */
const keyCacheMs = '300000';
/** A wait for what a revocation or an expiry brings: generous, and well within `keyCacheMs`. */
const generously = { timeout: 60_000, interval: 10 };

// Verified keys are kept in each process (HIATUS_KEY_CACHE_MS, 10 s by default) so that a request
// costs one query; a revocation must still reach every process, not wait for the cache to forget.
describe.runIf(postgresServerUrl())('a revoked key, across server processes on PostgreSQL', () => {
  let database: TestDatabase;
  const processes: ServerProcess[] = [];

  beforeAll(async () => {
    database = await createTestDatabase('postgres');
    const env = {
      ...databaseEnv(database),
      HIATUS_ADMIN_TOKEN: adminToken,
      HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
      HIATUS_KEY_CACHE_MS: keyCacheMs,
    };
    processes.push(await startServerProcess(env));
    processes.push(await startServerProcess({ ...env, HIATUS_MIGRATE_ON_START: 'false' }));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(processes.map((p) => p.stop()));
    await database?.drop();
  });

  it('is refused by every process once revoked, though each had verified (and kept) it', async () => {
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
      // The other process kept the key for five minutes: only the revocation's notice can end it.
      await vi.waitFor(
        async () => expect(await codeOf(apiClient(second.url, key).me.query())).toBe('UNAUTHORIZED'),
        generously,
      );
    }
  }, 120_000);
});

describe('a revoked or expired key, in one process on PGlite', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer('pglite', { HIATUS_KEY_CACHE_MS: keyCacheMs });
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

    // A key used (so kept) before it expires: a first call that ended past the expiry on a slow
    // machine proves nothing, so then again with twice the time.
    let soon: { key: string; expiresAt: number } | undefined;
    for (let ms = 2_000; !soon; ms *= 2) {
      const expiresAt = Date.now() + ms;
      const { key } = await admin.apiKeys.create.mutate({ userId: user.id, expiresAt: new Date(expiresAt) });
      const code = await codeOf(apiClient(server.server.url, key).me.query());
      if (Date.now() < expiresAt) {
        expect(code).toBe('OK');
        soon = { key, expiresAt };
      }
    }
    // Served until it expires (every answer that came before then is OK), refused from then on.
    const before: string[] = [];
    await vi.waitFor(
      async () => {
        const code = await codeOf(apiClient(server.server.url, soon!.key).me.query());
        if (Date.now() < soon!.expiresAt) before.push(code);
        expect(code).toBe('UNAUTHORIZED');
      },
      { ...generously, interval: 50 },
    ); // (within the key's rate limit)
    expect(Date.now()).toBeGreaterThanOrEqual(soon.expiresAt);
    expect(before.filter((code) => code !== 'OK')).toEqual([]);
  }, 120_000);
});
