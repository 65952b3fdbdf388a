import { sql } from 'kysely';
import { describe, expect, inject, it } from 'vitest';
import { openDatabase } from './connection.ts';

describe('PGlite as the server opens it', () => {
  // 128 MB by default, which PGlite zeroes as it opens and keeps resident.
  it('runs with 16 MB of shared buffers', async () => {
    const database = openDatabase({ kind: 'pglite', dataDir: 'memory://', seed: inject('pgliteSeed') });
    try {
      const { rows } = await sql<{ shared_buffers: string }>`SHOW shared_buffers`.execute(database.db);
      expect(rows[0]?.shared_buffers).toBe('16MB');
    } finally {
      await database.close();
    }
  });
});
