import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { scheduleSchema } from '../../domain/schedules.ts';
import {
  archiveTemplate,
  createTemplate,
  getTemplate,
  listTemplates,
  updateTemplate,
} from '../../templates/templates.ts';
import { idleTimeoutSeconds, parameterName, positiveInteger, provisionerTags, templateName, text } from '../inputs.ts';
import { templateListOutput, templateOutput } from '../outputs.ts';
import { adminProcedure, readProcedure, restRoute, router } from '../trpc.ts';

const parameterDeclaration = z.strictObject({
  name: parameterName,
  description: text.max(500).optional(),
  default: text.max(4096).optional(),
  pattern: text.max(500).optional(),
});

const templateDefinition = z.strictObject({
  driver: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a driver name such as "process" or "command"'),
  /** The driver's settings, checked by the driver's own schema. */
  settings: z.record(z.string(), z.unknown()).optional(),
  parameters: z.array(parameterDeclaration).max(50).optional(),
  idleTimeoutSeconds: idleTimeoutSeconds.nullable().optional(),
  /** Sent to the agent before a pause's snapshot; the pause waits up to `waitSeconds` for its answer. */
  prePauseNotice: z
    .strictObject({ message: text.min(1).max(10_000), waitSeconds: z.number().int().positive().max(600) })
    .nullable()
    .optional(),
  /**
   * What a resume of its tasks does beyond starting the agent again: `command` in place of the first
   * start's (its driver checks it), and `message`: a recap queued first in the task's inbox (the
   * original prompt and the last exchanges, within `messageMaxBytes`). null: nothing more.
   */
  resume: z
    .strictObject({
      command: z.union([text.min(1).max(10_000), z.array(text.min(1).max(10_000)).min(1).max(100)]).optional(),
      message: z.boolean().optional(),
      messageMaxBytes: z.number().int().min(1024).max(defaults.maxResumeMessageBytes).optional(),
    })
    .nullable()
    .optional(),
  /** When its tasks may run: windows of local time in an IANA zone; outside them a task is paused. null: always. */
  schedule: scheduleSchema.nullable().optional(),
  /** Days its tasks may stay paused before they are deleted; 0: forever; null: the service's HIATUS_PAUSED_RETENTION_DAYS. */
  pausedRetentionDays: z.number().int().min(0).max(36_500).nullable().optional(),
  /**
   * The tags a provisioner must have to take its builds (`{ host: 'a' }`: only provisioners started
   * with `--tag host=a`); {}: any provisioner. An update replaces them whole.
   */
  provisionerTags: provisionerTags.optional(),
  description: text.max(2000).optional(),
});

/** Templates: named, versioned workspace definitions. Admins change them; every key may read them. */
export const templatesRouter = router({
  create: adminProcedure
    .input(templateDefinition.extend({ name: templateName }))
    .mutation(({ ctx, input: { name, ...definition } }) => createTemplate(ctx.app, ctx.actor, name, definition)),

  /** Saves the next version; what is not given is taken from the latest. Tasks keep the version they were created from. */
  update: adminProcedure
    .input(templateDefinition.partial().extend({ name: templateName }))
    .mutation(({ ctx, input: { name, ...changes } }) => updateTemplate(ctx.app, ctx.actor, name, changes)),

  get: readProcedure
    .meta(
      restRoute('GET', '/templates/{name}', {
        summary: 'A template',
        description: 'A template version: the latest unless `version` is given.',
      }),
    )
    .input(z.object({ name: templateName, version: positiveInteger.optional() }))
    .output(templateOutput)
    .query(({ ctx, input }) => getTemplate(ctx.app, input.name, input.version)),

  /** The latest version of each template; archived ones with `archived: true`. */
  list: readProcedure
    .meta(
      restRoute('GET', '/templates', {
        summary: 'List templates',
        description: 'The latest version of each template; archived ones with `archived=true`.',
      }),
    )
    .input(z.object({ archived: z.boolean().optional() }).default({}))
    .output(templateListOutput)
    .query(({ ctx, input }) => listTemplates(ctx.app, input)),

  archive: adminProcedure
    .input(z.object({ name: templateName }))
    .mutation(({ ctx, input }) => archiveTemplate(ctx.app, ctx.actor, input.name)),
});
