import { sql } from 'kysely';
import type { Db } from './connection.ts';

/** A provisioner as the job queue last saw it ask for jobs. */
export type SeenProvisioner = { name: string; tags: Record<string, string>; lastSeenAt: Date };

/** A pending job of a tagged template that no provisioner seen lately has every tag for. */
export type UnservedJob = {
  buildId: string;
  taskId: string | null;
  template: string;
  tags: Record<string, string>;
  createdAt: Date;
};

/** Notes that the provisioner `name` asked for jobs now, with these tags (its last tags win). */
export async function recordProvisionerSeen(
  db: Db,
  provisioner: { name: string; keyId: string | null; tags: Readonly<Record<string, string>> },
): Promise<void> {
  const tags = JSON.stringify(provisioner.tags);
  await db
    .insertInto('provisioner_daemons')
    .values({ name: provisioner.name, key_id: provisioner.keyId, tags })
    .onConflict((oc) => oc.column('name').doUpdateSet({ key_id: provisioner.keyId, tags, last_seen_at: sql`NOW()` }))
    .execute();
}

/** The provisioners that asked for jobs within the last `withinMs`, by name. */
export async function listSeenProvisioners(db: Db, withinMs: number): Promise<SeenProvisioner[]> {
  const rows = await db
    .selectFrom('provisioner_daemons')
    .where('last_seen_at', '>', sql<Date>`NOW() - make_interval(secs => ${withinMs / 1000})`)
    .orderBy('name')
    .select(['name', 'tags', 'last_seen_at'])
    .execute();
  return rows.map((row) => ({
    name: row.name,
    tags: row.tags as Record<string, string>,
    lastSeenAt: row.last_seen_at,
  }));
}

/**
 * Pending jobs of tagged templates whose tags no provisioner seen within `withinMs` has all of: they
 * wait until one with those tags connects. Untagged templates' jobs are not among them (the
 * built-in provisioner, which is not recorded, takes those).
 */
export async function findUnservedJobs(db: Db, withinMs: number): Promise<UnservedJob[]> {
  const rows = await db
    .selectFrom('workspace_builds as b')
    .innerJoin('templates as t', 't.id', 'b.template_id')
    .leftJoin('tasks', 'tasks.workspace_id', 'b.workspace_id')
    .where('b.job_status', '=', 'pending')
    .where('t.provisioner_tags', '!=', sql<string>`'{}'::jsonb`)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('provisioner_daemons as p')
            .select(sql`1`.as('one'))
            .where('p.last_seen_at', '>', sql<Date>`NOW() - make_interval(secs => ${withinMs / 1000})`)
            .where(sql<boolean>`p.tags @> t.provisioner_tags`),
        ),
      ),
    )
    .orderBy('b.created_at')
    .select(['b.id', 'tasks.id as task_id', 't.name', 't.provisioner_tags', 'b.created_at'])
    .execute();
  return rows.map((row) => ({
    buildId: row.id,
    taskId: row.task_id,
    template: row.name,
    tags: row.provisioner_tags as Record<string, string>,
    createdAt: row.created_at,
  }));
}

/** Forgets the provisioners not seen for `olderThanMs`; returns how many. */
export async function forgetUnseenProvisioners(db: Db, olderThanMs: number): Promise<number> {
  const result = await db
    .deleteFrom('provisioner_daemons')
    .where('last_seen_at', '<', sql<Date>`NOW() - make_interval(secs => ${olderThanMs / 1000})`)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
