import os from 'node:os';
import path from 'node:path';

/**
 * Where servers started by the tests keep their drivers' state: never the repository's own
 * `.hiatus/provisioner`, so a test server never reconciles a developer's running agents.
 */
export const testProvisionerDir = path.join(os.tmpdir(), `hiatus-test-provisioner-${process.pid}`);
