import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/logger.ts';
import { type RunningServer, startServer } from '../src/server.ts';
import { type BackendName, createTestDatabase, type TestDatabase } from './databases.ts';
import { loopbackAllowList } from './networks.ts';
import { testProvisionerDir } from './paths.ts';

export const testAdminToken = 'test-admin-token-0123456789abcdef';

export type TestServer = {
  server: RunningServer;
  database: TestDatabase;
  /** The admin's key (HIATUS_ADMIN_TOKEN). */
  adminToken: string;
  /** Stops the server and drops its database. */
  close(): Promise<void>;
};

/**
 * A server in this process on a fresh database of `backend`, listening on a free port, with an
 * admin key and no auto-pause loop; `env` adds or overrides settings as the environment would.
 */
export async function startTestServer(backend: BackendName, env: Record<string, string> = {}): Promise<TestServer> {
  const database = await createTestDatabase(backend);
  const config = loadConfig({
    PORT: '0',
    HIATUS_ADMIN_TOKEN: testAdminToken,
    HIATUS_AUTO_PAUSE_INTERVAL_MS: '0',
    // Never the repository's own folder: a test server must not reconcile a developer's agents.
    HIATUS_PROVISIONER_DIR: testProvisionerDir,
    // The fake agents listen on loopback, which the address policy refuses unless allowed.
    HIATUS_ALLOWED_AGENT_NETWORKS: loopbackAllowList,
    HIATUS_ALLOWED_WEBHOOK_NETWORKS: loopbackAllowList,
    ...env,
  });
  const server = await startServer({ ...config, database: database.config }, createLogger('silent'));
  return {
    server,
    database,
    adminToken: testAdminToken,
    close: async () => {
      await server.stop();
      await database.drop();
    },
  };
}
