import { type Config, loadConfig } from '../src/config.ts';
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
 * A test server's configuration: a free port, an admin key, no auto-pause loop, loopback agents
 * and webhook endpoints allowed; `env` adds or overrides settings as the environment would.
 */
export function testServerConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
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
}

/** A server in this process on a fresh database of `backend`, configured by `testServerConfig(env)`. */
export async function startTestServer(backend: BackendName, env: Record<string, string> = {}): Promise<TestServer> {
  const database = await createTestDatabase(backend);
  const config = testServerConfig(env);
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
