import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { agentMessageSchema } from '../../agentapi/schema.ts';
import { getSnapshot, listHistorySegments, pushSnapshot } from '../../lifecycle/snapshots.ts';
import { findLiveTask, getTask } from '../../lifecycle/tasks.ts';
import { id } from '../inputs.ts';
import { heavyReadProcedure, pushProcedure, readProcedure, router } from '../trpc.ts';

/**
 * A workspace key's task is checked before the body is read: a push for a task that is gone is
 * refused without taking in its megabytes.
 */
const workspacePush = pushProcedure.use(async ({ ctx, next }) => {
  const { scope, taskId } = ctx.principal;
  if (scope === 'workspace') {
    const task = taskId ? await findLiveTask(ctx.app, taskId) : undefined;
    if (!task) throw new TRPCError({ code: 'NOT_FOUND', message: `task ${taskId} not found` });
  }
  return next();
});

export const snapshotsRouter = router({
  /** The stored snapshot of a task: its messages as the agent gave them. One per request (a heavy read). */
  get: heavyReadProcedure
    .input(z.object({ taskId: id }))
    .query(({ ctx, input }) => getSnapshot(ctx.app, ctx.actor, input.taskId)),

  /**
   * The segments of the task's history (one per agent lifetime), oldest first: the kept earlier
   * ones, then the latest snapshot (what `get` answers). Their facts, not their messages: those are
   * read page by page with `tasks.logs`.
   */
  segments: readProcedure
    .input(z.object({ taskId: id }))
    .query(({ ctx, input }) => listHistorySegments(ctx.app, ctx.actor, input.taskId)),

  /** A workspace pushes its own history (for agents the service cannot reach); never replaces a newer snapshot. */
  push: workspacePush
    .input(z.object({ taskId: id, messages: z.array(agentMessageSchema), takenAt: z.date().optional() }))
    .mutation(async ({ ctx, input }) => {
      const { scope, taskId } = ctx.principal;
      if (scope === 'workspace' && taskId !== input.taskId) {
        throw new TRPCError({ code: 'FORBIDDEN', message: 'a workspace key pushes only its own task' });
      }
      if (scope !== 'workspace') await getTask(ctx.app, ctx.actor, input.taskId);
      return pushSnapshot(ctx.app, input.taskId, { ...input, actor: ctx.actor });
    }),
});
