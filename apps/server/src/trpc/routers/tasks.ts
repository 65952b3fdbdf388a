import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { taskStatuses } from '../../domain/lifecycle.ts';
import { readLogs } from '../../lifecycle/logs.ts';
import { meteredPause, meteredResume } from '../../lifecycle/metered.ts';
import { sendToTask } from '../../lifecycle/send.ts';
import { createTask, deleteTask, getTask, listTasksFor, updateTask } from '../../lifecycle/tasks.ts';
import { afterWaitIfAsked } from '../../lifecycle/wait.ts';
import { watchTask } from '../../lifecycle/watch.ts';
import { agentUrlProblem, notAnHttpUrl } from '../../net/url-policy.ts';
import { withApiErrors } from '../errors.ts';
import { id, idleTimeoutSeconds, pageLimit, parameterValues, templateName, text } from '../inputs.ts';
import { readProcedure, router, writeProcedure } from '../trpc.ts';

/** `wait`: answer once the change's build ended, waiting at most `waitMs`. */
const waitInput = {
  wait: z.boolean().optional(),
  waitMs: z.number().int().min(0).max(defaults.maxTransitionWaitMs).default(defaults.transitionWaitMs),
};

const taskBasics = {
  name: text.trim().min(1).max(128),
  prompt: text.max(100_000),
  idleTimeoutSeconds: idleTimeoutSeconds.optional(),
};

/**
 * A task runs either an agent Hiatus does not manage (`agentUrl`) or a template's workspace
 * (`template`, with its `parameters`): two shapes, so the SDK's types say so too.
 */
const agentUrl = z
  .url({ protocol: /^https?$/, error: notAnHttpUrl })
  .max(2048)
  .superRefine((url, ctx) => {
    // Lowercase scheme, no credentials; where it points is checked by the service (the address policy).
    const problem = agentUrlProblem(url);
    if (problem && problem !== notAnHttpUrl) ctx.addIssue({ code: 'custom', message: problem });
  });

const newTaskInput = z.union(
  [
    z.strictObject({ ...taskBasics, agentUrl }),
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

  /**
   * Changes a task's agent URL (a task without a template) or idle timeout (`null` clears it);
   * audited as `task.update`. Answers the task as it is afterwards.
   */
  update: writeProcedure
    .input(
      z
        .object({
          id,
          agentUrl: agentUrl.optional(),
          idleTimeoutSeconds: idleTimeoutSeconds.nullable().optional(),
        })
        .refine((input) => input.agentUrl !== undefined || input.idleTimeoutSeconds !== undefined, {
          error: 'give agentUrl or idleTimeoutSeconds (null clears it) to change',
        }),
    )
    .mutation(({ ctx, input: { id: taskId, ...settings } }) => updateTask(ctx.app, ctx.actor, taskId, settings)),

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

  /**
   * Pauses an active task, taking a snapshot of its agent's conversation first. With `wait`,
   * answers once the stop build ended (`paused`, or `error`) or `waitMs` passed (`settled: false`).
   */
  pause: writeProcedure
    .input(z.object({ id, withoutSnapshot: z.boolean().optional(), ...waitInput }))
    .mutation(async ({ ctx, input, signal }) => {
      const result = await meteredPause(ctx.app, ctx.actor, input.id, {
        reason: 'task_manual_pause',
        withoutSnapshot: input.withoutSnapshot,
      });
      return afterWaitIfAsked(ctx.app, ctx.actor, result, { ...input, signal });
    }),

  /** Resumes a paused task. With `wait`, answers once the start build ended (`active`, or `error`) or `waitMs` passed. */
  resume: writeProcedure.input(z.object({ id, ...waitInput })).mutation(async ({ ctx, input, signal }) => {
    const result = await meteredResume(ctx.app, ctx.actor, input.id);
    return afterWaitIfAsked(ctx.app, ctx.actor, result, { ...input, signal });
  }),

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
