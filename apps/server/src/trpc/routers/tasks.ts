import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { taskStatuses } from '../../domain/lifecycle.ts';
import { readLogs } from '../../lifecycle/logs.ts';
import { meteredPause, meteredResume } from '../../lifecycle/metered.ts';
import { sendToTask } from '../../lifecycle/send.ts';
import { createTask, deleteTask, getTask, listTasksFor } from '../../lifecycle/tasks.ts';
import { watchTask } from '../../lifecycle/watch.ts';
import { agentUrlProblem, notAnHttpUrl } from '../../net/url-policy.ts';
import { withApiErrors } from '../errors.ts';
import { id, idleTimeoutSeconds, pageLimit, parameterValues, templateName, text } from '../inputs.ts';
import { readProcedure, router, writeProcedure } from '../trpc.ts';

const taskBasics = {
  name: text.trim().min(1).max(128),
  prompt: text.max(100_000),
  idleTimeoutSeconds: idleTimeoutSeconds.optional(),
};

/**
 * A task runs either an agent Hiatus does not manage (`agentUrl`) or a template's workspace
 * (`template`, with its `parameters`): two shapes, so the SDK's types say so too.
 */
const newTaskInput = z.union(
  [
    z.strictObject({
      ...taskBasics,
      agentUrl: z
        .url({ protocol: /^https?$/, error: notAnHttpUrl })
        .max(2048)
        .superRefine((url, ctx) => {
          // Lowercase scheme, no credentials; where it points is checked by the service (the address policy).
          const problem = agentUrlProblem(url);
          if (problem && problem !== notAnHttpUrl) ctx.addIssue({ code: 'custom', message: problem });
        }),
    }),
    z.strictObject({
      ...taskBasics,
      template: templateName,
      templateVersion: z.number().int().positive().optional(),
      parameters: parameterValues.optional(),
    }),
  ],
  { error: 'give either agentUrl (an agent Hiatus does not manage) or template (with its parameters), not both' },
);

export const tasksRouter = router({
  /** Creates a task with its workspace and first start build (reason `initiator`). */
  create: writeProcedure
    .input(newTaskInput)
    .mutation(({ ctx, input }) =>
      createTask(ctx.app, ctx.actor, 'template' in input ? input : { ...input, template: undefined }),
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

  /**
   * The task, then again on every status or build change (server-sent events). The stream ends
   * with UNAUTHORIZED within seconds of its key being revoked or expiring.
   */
  watch: readProcedure.input(z.object({ id })).subscription(async function* ({ ctx, input, signal }) {
    const watching = watchTask(ctx.app, ctx.actor, input.id, signal ?? new AbortController().signal, {
      keyId: ctx.principal.keyId,
    });
    for await (const task of withApiErrors(watching)) yield task;
  }),
});
