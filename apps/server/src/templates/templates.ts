import { DriverError, driverFor, parseSettings } from '@hiatus/provisioner';
import type { App } from '../app.ts';
import { audit } from '../audit/audit.ts';
import {
  archiveTemplateVersions,
  findTemplate,
  insertTemplateVersion,
  listLatestTemplates,
  lockTemplateName,
  type Template,
} from '../db/templates.ts';
import { type Actor, assertAdmin, systemActor } from '../domain/actor.ts';
import { HiatusError } from '../domain/errors.ts';
import type { Schedule } from '../domain/schedules.ts';
import {
  envChanges,
  envNames,
  mergeEnv,
  type PrePauseNotice,
  type ProvisionerTags,
  type ResumeSetting,
  settingsWithoutEnv,
  type TemplateParameter,
} from '../domain/templates.ts';

/**
 * A template version as every read and every change answers it: `settings` without `env`, whose
 * names alone are in `envNames`. The values go to drivers with build jobs (db/jobs.ts), to no reader.
 */
export type TemplateView = Omit<Template, 'settings'> & {
  settings: unknown;
  /** The names of `settings.env`, sorted; their values are write-only. */
  envNames: string[];
};

function toView({ settings, ...template }: Template): TemplateView {
  return { ...template, settings: settingsWithoutEnv(settings), envNames: envNames(settings) };
}

/** What an admin says of a template; an update says only what changes. */
export type TemplateDefinition = {
  driver: string;
  /** The driver's settings; in an update, `env` is merged by name into the stored one (see `mergeEnv`). */
  settings?: unknown;
  parameters?: TemplateParameter[];
  idleTimeoutSeconds?: number | null;
  prePauseNotice?: PrePauseNotice | null;
  /** What a resume of its tasks does: its own command (checked by the driver), a recap message; null: nothing more. */
  resume?: ResumeSetting | null;
  /** When its tasks may run (see domain/schedules.ts); null: always. */
  schedule?: Schedule | null;
  /** Days its tasks may stay paused before they are deleted; 0: forever; null: the service default. */
  pausedRetentionDays?: number | null;
  /** The tags a provisioner must have to take its builds; {} (or absent): any provisioner. */
  provisionerTags?: ProvisionerTags;
  description?: string;
};

/**
 * Refuses a driver nobody knows, settings its driver cannot use, a resume command it cannot run,
 * and patterns that are not regular expressions.
 */
function checkDefinition(definition: TemplateDefinition): void {
  try {
    const driver = driverFor(definition.driver);
    parseSettings(driver.name, driver.settingsSchema, definition.settings ?? {});
    const resumeCommand = definition.resume?.command;
    if (resumeCommand !== undefined) {
      if (!driver.resumeCommandSchema) {
        throw new DriverError(`the ${driver.name} driver runs no resume command: leave out resume.command`);
      }
      const checked = driver.resumeCommandSchema.safeParse(resumeCommand);
      if (!checked.success) {
        const why = checked.error.issues.map((i) => i.message).join('; ');
        throw new DriverError(`resume.command is not one the ${driver.name} driver runs: ${why}`);
      }
    }
  } catch (error) {
    if (error instanceof DriverError) throw new HiatusError('bad_input', error.message);
    throw error;
  }
  for (const parameter of definition.parameters ?? []) {
    try {
      if (parameter.pattern !== undefined) new RegExp(parameter.pattern);
    } catch {
      throw new HiatusError('bad_input', `parameter "${parameter.name}": pattern is not a regular expression`);
    }
  }
}

/** Saves a new template as version 1 (admins only), audited. */
export async function createTemplate(
  app: Pick<App, 'db'>,
  actor: Actor,
  name: string,
  given: TemplateDefinition,
): Promise<TemplateView> {
  assertAdmin(actor, 'change templates');
  const definition = { ...given, settings: mergeEnv({}, given.settings ?? {}) };
  checkDefinition(definition);
  return app.db.transaction().execute(async (trx) => {
    await lockTemplateName(trx, name);
    if (await findTemplate(trx, name)) {
      throw new HiatusError('conflict', `a template named "${name}" exists: update it`);
    }
    return toView(await saveVersion(trx, actor, name, definition, 'template.create'));
  });
}

/**
 * Creates the template `name` as the system when no template of that name exists (servers starting
 * together create it once); an existing one, even archived or changed by an admin, is left alone.
 */
export async function ensureTemplate(
  app: Pick<App, 'db'>,
  name: string,
  definition: TemplateDefinition,
): Promise<boolean> {
  checkDefinition(definition);
  return app.db.transaction().execute(async (trx) => {
    await lockTemplateName(trx, name);
    if (await findTemplate(trx, name)) return false;
    await saveVersion(trx, systemActor, name, definition, 'template.create');
    return true;
  });
}

/**
 * Saves the next version of a template, taking what `changes` does not say from the latest; audited.
 * Its env keeps the stored values of every name `changes.settings.env` does not give (null removes one).
 */
export async function updateTemplate(
  app: Pick<App, 'db'>,
  actor: Actor,
  name: string,
  changes: Partial<TemplateDefinition>,
): Promise<TemplateView> {
  assertAdmin(actor, 'change templates');
  return app.db.transaction().execute(async (trx) => {
    const latest = await findTemplate(trx, name);
    if (!latest) throw new HiatusError('not_found', `template "${name}" not found`);
    if (latest.archivedAt) throw new HiatusError('conflict', `template "${name}" is archived`);
    const definition: TemplateDefinition = {
      driver: changes.driver ?? latest.driver,
      settings: changes.settings === undefined ? latest.settings : mergeEnv(latest.settings, changes.settings),
      parameters: changes.parameters ?? latest.parameters,
      idleTimeoutSeconds:
        changes.idleTimeoutSeconds !== undefined ? changes.idleTimeoutSeconds : latest.idleTimeoutSeconds,
      prePauseNotice: changes.prePauseNotice !== undefined ? changes.prePauseNotice : latest.prePauseNotice,
      resume: changes.resume !== undefined ? changes.resume : latest.resume,
      schedule: changes.schedule !== undefined ? changes.schedule : latest.schedule,
      pausedRetentionDays:
        changes.pausedRetentionDays !== undefined ? changes.pausedRetentionDays : latest.pausedRetentionDays,
      provisionerTags: changes.provisionerTags ?? latest.provisionerTags,
      description: changes.description ?? latest.description,
    };
    checkDefinition(definition);
    return toView(await saveVersion(trx, actor, name, definition, 'template.update', latest));
  });
}

/** Saves a version and its audit record; the diff names the env variables changed, never their values. */
async function saveVersion(
  trx: App['db'],
  actor: Actor,
  name: string,
  definition: TemplateDefinition,
  action: 'template.create' | 'template.update',
  previous: Pick<Template, 'settings' | 'provisionerTags'> = { settings: {}, provisionerTags: {} },
): Promise<Template> {
  const template = await insertTemplateVersion(trx, {
    name,
    driver: definition.driver,
    settings: definition.settings ?? {},
    parameters: definition.parameters ?? [],
    idleTimeoutSeconds: definition.idleTimeoutSeconds ?? null,
    prePauseNotice: definition.prePauseNotice ?? null,
    resume: definition.resume ?? null,
    schedule: definition.schedule ?? null,
    pausedRetentionDays: definition.pausedRetentionDays ?? null,
    provisionerTags: definition.provisionerTags ?? {},
    description: definition.description ?? '',
    createdBy: actor.kind === 'user' ? actor.userId : null,
  });
  await audit(trx, actor, {
    action,
    resourceType: 'template',
    resourceId: template.id,
    diff: {
      name,
      version: template.version,
      driver: template.driver,
      ...tagsDiff(previous.provisionerTags, template.provisionerTags),
      ...envDiff(previous.settings, template.settings),
    },
  });
  return template;
}

/** `{ provisionerTags: { from, to } }` when the version's tags differ from the previous one's, else nothing. */
function tagsDiff(
  before: ProvisionerTags,
  after: ProvisionerTags,
): { provisionerTags?: { from: ProvisionerTags; to: ProvisionerTags } } {
  const same =
    Object.keys(before).length === Object.keys(after).length &&
    Object.entries(after).every(([name, value]) => before[name] === value);
  return same ? {} : { provisionerTags: { from: before, to: after } };
}

/** `{ env: { added, changed, removed } }` with the names of each, or nothing when the env is the same. */
function envDiff(before: unknown, after: unknown): { env?: ReturnType<typeof envChanges> } {
  const changes = envChanges(before, after);
  const changed = changes.added.length + changes.changed.length + changes.removed.length > 0;
  return changed ? { env: changes } : {};
}

/**
 * A template's latest version, or the one asked for, its env values left out. Any user may read
 * templates: they create tasks from them.
 */
export async function getTemplate(app: Pick<App, 'db'>, name: string, version?: number): Promise<TemplateView> {
  const template = await findTemplate(app.db, name, version);
  if (!template) {
    throw new HiatusError('not_found', `template "${name}"${version ? ` version ${version}` : ''} not found`);
  }
  return toView(template);
}

/** The latest version of each template, their env values left out. */
export async function listTemplates(
  app: Pick<App, 'db'>,
  options: { archived?: boolean } = {},
): Promise<TemplateView[]> {
  return (await listLatestTemplates(app.db, { archived: options.archived ?? false })).map(toView);
}

/** Archives a template: no new task may use it; tasks built from it keep running. */
export async function archiveTemplate(app: Pick<App, 'db'>, actor: Actor, name: string): Promise<TemplateView> {
  assertAdmin(actor, 'change templates');
  return app.db.transaction().execute(async (trx) => {
    const latest = await findTemplate(trx, name);
    if (!latest) throw new HiatusError('not_found', `template "${name}" not found`);
    if (latest.archivedAt) throw new HiatusError('conflict', `template "${name}" is already archived`);
    await archiveTemplateVersions(trx, name);
    await audit(trx, actor, {
      action: 'template.archive',
      resourceType: 'template',
      resourceId: latest.id,
      diff: { name },
    });
    return toView((await findTemplate(trx, name))!);
  });
}
