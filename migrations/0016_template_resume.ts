import { type Kysely, sql } from 'kysely';

// A resumed agent continues: a template says what its tasks' resumes do beyond starting the agent
// again: a command of their own (such as `claude --continue` over the kept working directory) and a
// recap message (the original prompt and the last exchanges) queued first in the task's inbox.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE templates ADD COLUMN resume JSONB`.execute(db);
  await sql`COMMENT ON COLUMN templates.resume IS 'What a resume of its tasks does: {"command", "message", "messageMaxBytes"}; NULL: starts the agent as at first'`.execute(
    db,
  );
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE templates DROP COLUMN resume`.execute(db);
}
