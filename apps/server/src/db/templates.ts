import { type Selectable, sql } from 'kysely';
import type { Schedule } from '../domain/schedules.ts';
import type { PrePauseNotice, ProvisionerTags, ResumeSetting, TemplateParameter } from '../domain/templates.ts';
import type { Db } from './connection.ts';
import type { Templates } from './schema.ts';
import { nextInSequence } from './sequence.ts';

/** One version of a template. */
export type Template = {
  id: string;
  name: string;
  version: number;
  driver: string;
  settings: unknown;
  parameters: TemplateParameter[];
  idleTimeoutSeconds: number | null;
  prePauseNotice: PrePauseNotice | null;
  /** What a resume of its tasks does: its own command, a recap message; null: starts the agent as at first. */
  resume: ResumeSetting | null;
  /** When its tasks may run (a task may have its own); null: always. */
  schedule: Schedule | null;
  /** The tags a provisioner must have to take its builds; {}: any provisioner. */
  provisionerTags: ProvisionerTags;
  /** Its tasks paused longer than this many days are deleted; 0: never; null: the service default. */
  pausedRetentionDays: number | null;
  description: string;
  createdBy: string | null;
  createdAt: Date;
  archivedAt: Date | null;
};

function toTemplate(row: Selectable<Templates>): Template {
  const {
    idle_timeout_seconds,
    pre_pause_notice,
    schedule,
    paused_retention_days,
    provisioner_tags,
    created_by,
    created_at,
    archived_at,
    ...same
  } = row;
  return {
    ...same,
    parameters: row.parameters as TemplateParameter[],
    idleTimeoutSeconds: idle_timeout_seconds,
    prePauseNotice: pre_pause_notice as PrePauseNotice | null,
    resume: row.resume as ResumeSetting | null,
    schedule: schedule as Schedule | null,
    pausedRetentionDays: paused_retention_days,
    provisionerTags: provisioner_tags as ProvisionerTags,
    createdBy: created_by,
    createdAt: created_at,
    archivedAt: archived_at,
  };
}

export type TemplateVersionRow = Omit<Template, 'id' | 'version' | 'createdAt' | 'archivedAt'>;

/**
 * Inserts the next version of the template `name` (version 1 for a new name). Versions of one name
 * are numbered under a transaction-scoped advisory lock, so two admins saving at once get 1 and 2.
 */
export async function insertTemplateVersion(trx: Db, row: TemplateVersionRow): Promise<Template> {
  await lockTemplateName(trx, row.name);
  const inserted = await trx
    .insertInto('templates')
    .values({
      name: row.name,
      version: nextInSequence('templates', 'version', 'name', row.name),
      driver: row.driver,
      settings: JSON.stringify(row.settings ?? {}),
      parameters: JSON.stringify(row.parameters),
      idle_timeout_seconds: row.idleTimeoutSeconds,
      pre_pause_notice: row.prePauseNotice === null ? null : JSON.stringify(row.prePauseNotice),
      resume: row.resume === null ? null : JSON.stringify(row.resume),
      schedule: row.schedule === null ? null : JSON.stringify(row.schedule),
      paused_retention_days: row.pausedRetentionDays,
      provisioner_tags: JSON.stringify(row.provisionerTags),
      description: row.description,
      created_by: row.createdBy,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return toTemplate(inserted);
}

/** Serializes changes to the template `name` until the transaction ends (re-entrant within it). */
export async function lockTemplateName(trx: Db, name: string): Promise<void> {
  await sql`SELECT pg_advisory_xact_lock(hashtext('hiatus.template:' || ${name}))`.execute(trx);
}

/** A template's given version, or its latest one; undefined when there is none. */
export async function findTemplate(db: Db, name: string, version?: number): Promise<Template | undefined> {
  let query = db.selectFrom('templates').selectAll().where('name', '=', name);
  if (version !== undefined) query = query.where('version', '=', version);
  const row = await query.orderBy('version', 'desc').limit(1).executeTakeFirst();
  return row && toTemplate(row);
}

export async function findTemplateById(db: Db, id: string): Promise<Template | undefined> {
  const row = await db.selectFrom('templates').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toTemplate(row);
}

/** The latest version of every template, by name; archived ones only when asked. */
export async function listLatestTemplates(db: Db, options: { archived: boolean }): Promise<Template[]> {
  let query = db.selectFrom('templates').selectAll().distinctOn('name').orderBy('name').orderBy('version', 'desc');
  if (!options.archived) query = query.where('archived_at', 'is', null);
  return (await query.execute()).map(toTemplate);
}

/** Archives every version of a template: no new task may use it; its tasks keep running. */
export async function archiveTemplateVersions(db: Db, name: string): Promise<number> {
  const result = await db
    .updateTable('templates')
    .set({ archived_at: sql`NOW()` })
    .where('name', '=', name)
    .where('archived_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
