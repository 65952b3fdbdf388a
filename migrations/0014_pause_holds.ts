import { type Kysely, sql } from 'kysely';

// A pause fetches the agent's history and then commits; a message delivered in between was taken
// by the agent but missing from the snapshot, and lost when the workspace stopped. Now a pause
// first holds the task: from then on no process starts a delivery to it, and the pause waits for
// the deliveries already under way before it fetches. The hold is a lease, so a pausing process
// that dies holds up deliveries only until it runs out.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks ADD COLUMN pause_hold_id UUID, ADD COLUMN pause_hold_until TIMESTAMPTZ`.execute(db);
  await sql`COMMENT ON COLUMN tasks.pause_hold_id IS 'The pause under way: it alone may commit the pause it holds the task for; NULL: none'`.execute(
    db,
  );
  await sql`COMMENT ON COLUMN tasks.pause_hold_until IS 'No message is delivered to the task until then (a pause is under way); past it, the hold is void'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE tasks DROP COLUMN pause_hold_until, DROP COLUMN pause_hold_id`.execute(db);
}
