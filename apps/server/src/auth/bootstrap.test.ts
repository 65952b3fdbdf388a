import { describe, expect, it } from 'vitest';
import { testBackends } from '../../test/databases.ts';
import { useDatabase } from '../../test/harness.ts';
import { listAuditLogs } from '../db/audit.ts';
import { bootstrapAdmin } from './bootstrap.ts';
import { keyDigest } from './keys.ts';
import { authenticate } from './principals.ts';

describe.each(testBackends())('the admin token on %s', (backend) => {
  const storage = useDatabase(backend);
  const tokens = {
    first: 'first-admin-token-Xq7Lr2Vm9Ct4Bw8N',
    second: 'second-admin-token-Hk3Pz6Jd1Fs5Gy0E',
  };
  const lets = async (token: string) => (await authenticate(storage.db, token)).ok;

  it('retires the key of the previous value when it changes, and says so in the audit log', async () => {
    expect(await bootstrapAdmin(storage.db, tokens.first)).toMatchObject({ kind: 'token', created: true, retired: [] });
    expect(await bootstrapAdmin(storage.db, tokens.first)).toMatchObject({ created: false, retired: [] });
    expect(await lets(tokens.first)).toBe(true);

    const firstId = keyDigest(tokens.first).id;
    const changed = await bootstrapAdmin(storage.db, tokens.second);
    expect(changed).toMatchObject({ kind: 'token', created: true, retired: [firstId], revoked: false });
    expect(await lets(tokens.second)).toBe(true);
    expect(await lets(tokens.first)).toBe(false);
    const audit = await listAuditLogs(storage.db, { resourceId: firstId, limit: 10 });
    expect(audit.items).toMatchObject([
      { action: 'api_key.revoke', actorKind: 'system', diff: { why: 'HIATUS_ADMIN_TOKEN changed' } },
    ]);

    // Unset: the key stays as it is. Back to a retired value: it stays retired, and the result says so.
    expect(await bootstrapAdmin(storage.db, undefined)).toEqual({ kind: 'none' });
    expect(await lets(tokens.second)).toBe(true);
    expect(await bootstrapAdmin(storage.db, tokens.first)).toMatchObject({ created: false, revoked: true });
    expect(await lets(tokens.first)).toBe(false);
    expect(await lets(tokens.second)).toBe(false);
  });
});
