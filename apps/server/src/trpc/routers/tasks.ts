import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { taskStatuses } from '../../domain/lifecycle.ts';
import { readLogs } from '../../lifecycle/logs.ts';
import { meteredPause, meteredResume } from '../../lifecycle/metered.ts';
import { sendToTask } from '../../lifecycle/send.ts';
import { createTask, deleteTask, getTask, listTasksFor } from '../../lifecycle/tasks.ts';
import { watchTask } from '../../lifecycle/watch.ts';
import { id, idleTimeoutSeconds, pageLimit, parameterValues, templateName, text } from '../inputs.ts';
import { readProcedure, router, writeProcedure } from '../trpc.ts';

/** A task runs either an agent Hiatus does not manage (`agentUrl`) or a template's workspace (`template`). */
const newTaskInput = z
  .object({
    name: text.trim().min(1).max(128),
    prompt: text.max(100_000),
    agentUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
      .max(2048)
      .optional(),
    template: templateName.optional(),
    templateVersion: z.number().int().positive().optional(),
    parameters: parameterValues.optional(),
    idleTimeoutSeconds: idleTimeoutSeconds.optional(),
  })
  .refine((t) => (t.agentUrl === undefined) !== (t.template === undefined), {
    message: 'give either agentUrl (an agent Hiatus does not manage) or template, not both',
    path: ['template'],
  })
  .refine((t) => t.template !== undefined || (t.parameters === undefined && t.templateVersion === undefined), {
    message: 'parameters and templateVersion go with a template',
    path: ['parameters'],
  });

export const tasksRouter = router({
  /** Creates a task with its workspace and first start build (reason `initiator`). */
  create: writeProcedure
    .input(newTaskInput)
    .mutation(({ ctx, input }) =>
      createTask(
        ctx.app,
        ctx.actor,
        input.template !== undefined
          ? { ...input, template: input.template, agentUrl: undefined }
          : { ...input, agentUrl: input.agentUrl!, template: undefined, parameters: undefined },
      ),
    ),

  get: readProcedure.input(z.object({ id })).query(({ ctx, input }) => getTask(ctx.app, ctx.actor, input.id)),

  /** Tasks newest first; deleted ones only when asked for by status. */
  list: readProcedure
    .input(
      z
        .object({
          status: z.enum(taskStatuses).optional(),
          ownerId: id.optional(),
          limit: pageLimit(defaults.maxListPageSize, defaults.listPageSize),
          cursor: z.string().max(512).optional(),
        })
        .default({ limit: defaults.listPageSize }),
    )
    .query(({ ctx, input }) => listTasksFor(ctx.app, ctx.actor, input)),

  /** Pauses an active task, taking a snapshot of its agent's conversation first. */
  pause: writeProcedure.input(z.object({ id, withoutSnapshot: z.boolean().optional() })).mutation(({ ctx, input }) =>
    meteredPause(ctx.app, ctx.actor, input.id, {
      reason: 'task_manual_pause',
      withoutSnapshot: input.withoutSnapshot,
    }),
  ),

  resume: writeProcedure
    .input(z.object({ id }))
    .mutation(({ ctx, input }) => meteredResume(ctx.app, ctx.actor, input.id)),

  delete: writeProcedure.input(z.object({ id })).mutation(({ ctx, input }) => deleteTask(ctx.app, ctx.actor, input.id)),

  /** Sends a user message to the task's agent; with `resumeIfPaused`, resumes a paused task first. */
  send: writeProcedure
    .input(z.object({ id, input: text.min(1).max(1_000_000), resumeIfPaused: z.boolean().optional() }))
    .mutation(({ ctx, input }) =>
      sendToTask(ctx.app, ctx.actor, input.id, input.input, { resumeIfPaused: input.resumeIfPaused }),
    ),

  /** A page of the task's log, live or from its snapshot; pass `nextCursor` back for the next page. */
  logs: readProcedure
    .input(
      z.object({
        id,
        cursor: z.number().int().min(0).optional(),
        limit: pageLimit(defaults.maxLogPageSize, defaults.logPageSize),
      }),
    )
    .query(({ ctx, input }) => readLogs(ctx.app, ctx.actor, input.id, input)),

  /** The task, then again on every status or build change (server-sent events). */
  watch: readProcedure.input(z.object({ id })).subscription(async function* ({ ctx, input, signal }) {
    for await (const task of watchTask(ctx.app, ctx.actor, input.id, signal ?? new AbortController().signal)) {
      yield task;
    }
  }),
});
