import { sql } from 'kysely';
import type { Db } from './connection.ts';

/** Where the primary's WAL is now: a commit made before this call is at or before it. */
export async function currentWalPosition(db: Db): Promise<string> {
  const { rows } = await sql<{ lsn: string }>`SELECT pg_current_wal_lsn()::text AS lsn`.execute(db);
  return rows[0]!.lsn;
}

/**
 * Whether a replica has replayed the WAL up to `position` (so a read there sees every commit
 * before it). A server not in recovery (a primary named as the replica) has everything.
 */
export async function replayedUpTo(db: Db, position: string): Promise<boolean> {
  const { rows } = await sql<{ replayed: boolean }>`
    SELECT coalesce(pg_last_wal_replay_lsn() >= ${position}::pg_lsn, NOT pg_is_in_recovery()) AS replayed`.execute(db);
  return rows[0]!.replayed === true;
}
