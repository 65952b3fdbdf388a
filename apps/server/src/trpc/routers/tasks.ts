import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { taskStatuses } from '../../domain/lifecycle.ts';
import { scheduleSchema } from '../../domain/schedules.ts';
import { cancelMessage, getMessage } from '../../inbox/inbox.ts';
import { sendToTask } from '../../inbox/send.ts';
import { keepTaskAlive } from '../../lifecycle/keep-alive.ts';
import { readLogs } from '../../lifecycle/logs.ts';
import { meteredPause, meteredResume } from '../../lifecycle/metered.ts';
import { createTask, deleteTask, getTask, listTasksFor, updateTask } from '../../lifecycle/tasks.ts';
import { afterWaitIfAsked } from '../../lifecycle/wait.ts';
import { watchTask } from '../../lifecycle/watch.ts';
import { agentUrlProblem, notAnHttpUrl } from '../../net/url-policy.ts';
import { withApiErrors } from '../errors.ts';
import { id, idleTimeoutSeconds, pageLimit, parameterValues, positiveInteger, templateName, text } from '../inputs.ts';
import {
  cancelMessageOutput,
  keepAliveOutput,
  logPageOutput,
  messageOutput,
  pauseOutput,
  resumeOutput,
  sendOutput,
  taskChangeOutput,
  taskOutput,
  taskPageOutput,
} from '../outputs.ts';
import { laggingReadProcedure, readProcedure, restRoute, router, writeProcedure } from '../trpc.ts';

/** `wait`: answer once the change's build ended, waiting at most `waitMs`. */
const waitInput = {
  wait: z.boolean().optional(),
  waitMs: z.number().int().min(0).max(defaults.maxTransitionWaitMs).default(defaults.transitionWaitMs),
};

const taskBasics = {
  name: text.trim().min(1).max(128),
  prompt: text.max(100_000),
  idleTimeoutSeconds: idleTimeoutSeconds.optional(),
  /** The task's own schedule (windows of local time in which it may run), in place of its template's. */
  schedule: scheduleSchema.optional(),
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
    z.strictObject({
      ...taskBasics,
      agentUrl,
      /** Queue the prompt as the inbox's first message (default); false when the agent has it already. */
      sendPrompt: z
        .boolean()
        .optional()
        .meta({ description: "queue the prompt as the agent's first message (default true); false: the agent has it" }),
    }),
    z.strictObject({
      ...taskBasics,
      template: templateName,
      templateVersion: positiveInteger.optional(),
      parameters: parameterValues.optional(),
    }),
  ],
  { error: 'give either agentUrl (an agent Hiatus does not manage) or template (with its parameters), not both' },
);

export const tasksRouter = router({
  /** Creates a task with its workspace and first start build (reason `initiator`). */
  create: writeProcedure
    .meta(
      restRoute('POST', '/tasks', {
        summary: 'Create a task',
        description:
          "Creates a task with its workspace and first start build (reason `initiator`): either `agentUrl` (an agent Hiatus does not manage) or `template` with its `parameters`. An `agentUrl` task's prompt is queued as its inbox's first message, delivered once the agent is stable, unless `sendPrompt` is false; a template's driver hands the prompt to the agent it starts.",
      }),
    )
    .input(newTaskInput)
    .output(taskChangeOutput)
    .mutation(({ ctx, input }) =>
      createTask(ctx.app, ctx.actor, 'template' in input ? input : { ...input, template: undefined }),
    ),

  /**
   * Changes a task's agent URL (a task without a template) or idle timeout (`null` clears it);
   * audited as `task.update`. Answers the task as it is afterwards.
   */
  update: writeProcedure
    .meta(
      restRoute('PATCH', '/tasks/{id}', {
        summary: "Change a task's agent URL, idle timeout or schedule",
        description:
          "Changes a task's agent URL (a task without a template), idle timeout or schedule (`null` clears either); audited as `task.update`. Answers the task as it is afterwards.",
      }),
    )
    .input(
      z
        .object({
          id,
          agentUrl: agentUrl.optional(),
          idleTimeoutSeconds: idleTimeoutSeconds.nullable().optional(),
          /** The task's own schedule; null clears it (its template's applies). */
          schedule: scheduleSchema.nullable().optional(),
        })
        .refine(
          (input) =>
            input.agentUrl !== undefined || input.idleTimeoutSeconds !== undefined || input.schedule !== undefined,
          { error: 'give agentUrl, idleTimeoutSeconds or schedule (null clears either) to change' },
        ),
    )
    .output(taskOutput)
    .mutation(({ ctx, input: { id: taskId, ...settings } }) => updateTask(ctx.app, ctx.actor, taskId, settings)),

  get: readProcedure
    .meta(
      restRoute('GET', '/tasks/{id}', { summary: 'A task', description: 'The task with its status and latest build.' }),
    )
    .input(z.object({ id }))
    .output(taskOutput)
    .query(({ ctx, input }) => getTask(ctx.app, ctx.actor, input.id)),

  /** Tasks newest first; deleted ones only when asked for by status. */
  list: laggingReadProcedure
    .meta(
      restRoute('GET', '/tasks', {
        summary: 'List tasks',
        description:
          'Tasks newest first; deleted ones only when asked for by status. Pass `nextCursor` back as `cursor`.',
      }),
    )
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
    .output(taskPageOutput)
    .query(({ ctx, input }) => listTasksFor(ctx.app, ctx.actor, input)),

  /**
   * Pauses an active task, taking a snapshot of its agent's conversation first. With `wait`,
   * answers once the stop build ended (`paused`, or `error`) or `waitMs` passed (`settled: false`).
   */
  pause: writeProcedure
    .meta(
      restRoute('POST', '/tasks/{id}/pause', {
        summary: 'Pause a task',
        description:
          "Pauses an active task, taking a snapshot of its agent's conversation first; answers once the stop build is queued (`pausing`). With `wait`, answers once the stop build ended (`paused`, or `error`) or `waitMs` passed (`settled: false`).",
      }),
    )
    .input(z.object({ id, withoutSnapshot: z.boolean().optional(), ...waitInput }))
    .output(pauseOutput)
    .mutation(async ({ ctx, input, signal }) => {
      const result = await meteredPause(ctx.app, ctx.actor, input.id, {
        reason: 'task_manual_pause',
        withoutSnapshot: input.withoutSnapshot,
      });
      return afterWaitIfAsked(ctx.app, ctx.actor, result, { ...input, signal });
    }),

  /** Resumes a paused task. With `wait`, answers once the start build ended (`active`, or `error`) or `waitMs` passed. */
  resume: writeProcedure
    .meta(
      restRoute('POST', '/tasks/{id}/resume', {
        summary: 'Resume a task',
        description:
          'Resumes a paused task; answers once the start build is queued (`pending`). With `wait`, answers once the start build ended (`active`, or `error`) or `waitMs` passed (`settled: false`).',
      }),
    )
    .input(z.object({ id, ...waitInput }))
    .output(resumeOutput)
    .mutation(async ({ ctx, input, signal }) => {
      const result = await meteredResume(ctx.app, ctx.actor, input.id);
      return afterWaitIfAsked(ctx.app, ctx.actor, result, { ...input, signal });
    }),

  delete: writeProcedure
    .meta(
      restRoute('DELETE', '/tasks/{id}', {
        summary: 'Delete a task',
        description:
          'Queues the delete build, soft-deletes the task and deletes its snapshot at once; the task stays readable, `deleted`, until it is purged.',
      }),
    )
    .input(z.object({ id }))
    .output(taskChangeOutput)
    .mutation(({ ctx, input }) => deleteTask(ctx.app, ctx.actor, input.id)),

  /**
   * Sends a user message to the task's agent, answering at once: delivered now (`queued: false`)
   * or stored in the task's inbox (`queued: true`, `messageId`) when its agent is busy or earlier
   * messages wait. With `resumeIfPaused`, a paused task is resumed and the message queued in one
   * transaction (and a starting task's message queued); it is delivered once, in order.
   */
  send: writeProcedure
    .meta(
      restRoute('POST', '/tasks/{id}/send', {
        summary: "Send a message to the task's agent",
        description:
          "Delivered now (`queued: false`) or stored in the task's inbox (`queued: true`, `messageId`) when its agent is busy or earlier messages wait. With `resumeIfPaused`, a paused task is resumed and the message queued.",
      }),
    )
    .input(z.object({ id, input: text.min(1).max(1_000_000), resumeIfPaused: z.boolean().optional() }))
    .output(sendOutput)
    .mutation(({ ctx, input }) =>
      sendToTask(ctx.app, ctx.actor, input.id, input.input, { resumeIfPaused: input.resumeIfPaused }),
    ),

  /** Cancels a queued message: it never goes. A delivered or cancelled one answers CONFLICT. */
  /** One message sent through Hiatus, whole (a log page's `pending` shows only each one's start), with its status. */
  message: readProcedure
    .meta(
      restRoute('GET', '/tasks/{id}/messages/{messageId}', {
        summary: 'Get a message sent to a task',
        description:
          "Its whole content and status (queued, delivered or cancelled): a log page's `pending` holds only each message's first 1,000 characters.",
      }),
    )
    .input(z.object({ id, messageId: id }))
    .output(messageOutput)
    .query(({ ctx, input }) => getMessage(ctx.app, ctx.actor, input.id, input.messageId)),

  cancelMessage: writeProcedure
    .meta(
      restRoute('POST', '/tasks/{id}/messages/{messageId}/cancel', {
        summary: 'Cancel a queued message',
        description: 'It is never delivered. A message already delivered, cancelled or being delivered answers 409.',
      }),
    )
    .input(z.object({ id, messageId: id }))
    .output(cancelMessageOutput)
    .mutation(({ ctx, input }) => cancelMessage(ctx.app, ctx.actor, input.id, input.messageId)),

  /**
   * Holds off auto-pause of a running task for `forSeconds` (an hour by default, a day at most),
   * replacing an earlier keep-alive; audited. It never wakes a paused task (CONFLICT).
   */
  keepAlive: writeProcedure
    .meta(
      restRoute('POST', '/tasks/{id}/keep-alive', {
        summary: 'Hold off auto-pause',
        description:
          'For `forSeconds` (an hour by default, a day at most), replacing an earlier keep-alive. A paused task is not woken (409).',
      }),
    )
    .input(z.object({ id, forSeconds: z.number().int().min(1).max(defaults.maxKeepAliveSeconds).optional() }))
    .output(keepAliveOutput)
    .mutation(({ ctx, input }) => keepTaskAlive(ctx.app, ctx.actor, input.id, input.forSeconds)),

  /**
   * A page of the task's whole history (kept segments, the latest snapshot, the live agent), oldest
   * first; pass `nextCursor` back for the next page.
   */
  logs: laggingReadProcedure
    .meta(
      restRoute('GET', '/tasks/{id}/logs', {
        summary: "A page of a task's log",
        description:
          "The task's whole history, oldest first, across agent lifetimes (segments): the kept earlier ones, the latest snapshot, then the live agent while the task is active. `cursor` is a position in that history (an entry's `position`); pass `nextCursor` back as `cursor` for the next page. A page ends early rather than pass 4 MiB of contents (it holds one entry at least).",
      }),
    )
    .input(
      z.object({
        id,
        cursor: z.number().int().min(0).optional(),
        limit: pageLimit(defaults.maxLogPageSize, defaults.logPageSize),
      }),
    )
    .output(logPageOutput)
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
