import { z } from 'zod';
import { defaults } from '../../defaults.ts';
import { buildReasons } from '../../domain/lifecycle.ts';
import { listTaskBuilds } from '../../lifecycle/builds.ts';
import {
  acquireBuildJob,
  completeBuildJob,
  heartbeatBuildJob,
  type JobHolder,
  jobPreviousConversation,
  tasksThatShouldRun,
} from '../../lifecycle/jobs.ts';
import { noteProvisioner } from '../../lifecycle/provisioners.ts';
import { id, pageLimit, positiveInteger, provisionerTags, text } from '../inputs.ts';
import { buildPageOutput } from '../outputs.ts';
import { laggingReadProcedure, provisionerProcedure, restRoute, router } from '../trpc.ts';

/** Which claim of a job a provisioner acts in (`attempt` of its acquired job); absent: any claim its key holds. */
const jobAttempt = z.number().int().positive().max(1_000).optional();

export const buildsRouter = router({
  /** A task's lifecycle history, newest first; `cursor` is the last build number seen. */
  list: laggingReadProcedure
    .meta(
      restRoute('GET', '/tasks/{taskId}/builds', {
        summary: "A task's builds",
        description:
          "The task's lifecycle history, newest first: each build's transition, reason and job status. Pass `nextCursor` back as `cursor`.",
      }),
    )
    .input(
      z.object({
        taskId: id,
        reason: z.enum(buildReasons).optional(),
        limit: pageLimit(defaults.maxListPageSize, defaults.listPageSize),
        cursor: positiveInteger.optional(),
      }),
    )
    .output(buildPageOutput)
    .query(({ ctx, input }) => listTaskBuilds(ctx.app, ctx.actor, input.taskId, input)),
});

/**
 * For external provisioners: take a pending job, keep it alive, report how it ended. A provisioner
 * is its key: a job belongs to the key that acquired it, and no other key may heartbeat or complete it.
 */
export const provisionerRouter = router({
  /**
   * Takes a pending job matching the provisioner's `drivers` (`external` for workspaces without a
   * template), `templates` and `tags` (a job needs every tag of its template among them; without
   * tags, only untagged templates' jobs), with what its driver needs; waits up to `waitMs` for one (a long poll).
   * `provisionerId` is a name to show for the job (the key's id when absent), not an identity.
   */
  acquire: provisionerProcedure
    .input(
      z
        .object({
          provisionerId: text.min(1).max(128).optional(),
          drivers: z.array(text.min(1).max(32)).max(20).optional(),
          templates: z.array(text.min(1).max(64)).max(100).optional(),
          tags: provisionerTags.optional(),
          waitMs: z.number().int().min(0).max(30_000).optional(),
        })
        .default({}),
    )
    .mutation(async ({ ctx, input, signal }) => {
      const holder = { keyId: ctx.principal.keyId, name: input.provisionerId ?? ctx.principal.keyId };
      // Who is connected with which tags: a job none of them can take is said in the log.
      await noteProvisioner(ctx.app, holder, input.tags ?? {});
      // The request's signal: a provisioner that disconnects stops waiting and is given no job.
      return acquireBuildJob(ctx.app, holder, { ...input, signal });
    }),

  /**
   * Keeps a job this key acquired alive; CONFLICT when it is not running or not this key's, or (with
   * `attempt`, the job's as acquired) when it was handed out again since: that claim is over.
   */
  heartbeat: provisionerProcedure
    .input(z.object({ buildId: id, attempt: jobAttempt }))
    .mutation(async ({ ctx, input }) => {
      await heartbeatBuildJob(ctx.app, input.buildId, keyHolder(ctx.principal.keyId), input.attempt);
      return { ok: true as const };
    }),

  complete: provisionerProcedure
    .input(
      z.object({
        buildId: id,
        /** The job's `attempt` as acquired: a claim that was handed out again since cannot report. */
        attempt: jobAttempt,
        error: text.min(1).max(10_000).optional(),
        /** What the job produced; a start reports `agentUrl`, which becomes the task's. */
        outputs: z.record(z.string().max(128), z.unknown()).optional(),
      }),
    )
    .mutation(({ ctx, input }) =>
      completeBuildJob(ctx.app, input.buildId, {
        error: input.error,
        holder: keyHolder(ctx.principal.keyId),
        attempt: input.attempt,
        actor: ctx.actor,
        outputs: input.outputs,
      }),
    ),

  /**
   * A resume job's previous conversation (AgentAPI messages, oldest first), for its driver to hand
   * to the workspace; asked apart from `acquire` and only for a resume, since it can be as large as a
   * snapshot. CONFLICT when the job is not running or not this key's.
   */
  previousConversation: provisionerProcedure.input(z.object({ buildId: id })).query(async ({ ctx, input }) => ({
    messages: await jobPreviousConversation(ctx.app, input.buildId, keyHolder(ctx.principal.keyId)),
  })),

  /** Which of these tasks should have a running workspace now: a restarted provisioner stops the rest. */
  shouldRun: provisionerProcedure
    .input(z.object({ taskIds: z.array(id).max(1000) }))
    .query(async ({ ctx, input }) => ({ taskIds: await tasksThatShouldRun(ctx.app, input.taskIds) })),
});

/** The holder a key is when it heartbeats or completes: the key alone decides, the name is not asked. */
function keyHolder(keyId: string): JobHolder {
  return { keyId, name: keyId };
}
