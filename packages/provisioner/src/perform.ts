import { defaults } from './defaults.ts';
import {
  type BuildOutputs,
  type BuildSpec,
  type ConversationMessage,
  type Driver,
  type DriverContext,
  DriverError,
  type ResumeSpec,
  type StartKind,
  startOf,
} from './driver.ts';
import { driverFor } from './registry.ts';

/** A job as both provisioners hold it: the built-in one (from the server's services), the daemon (from the API). */
export type JobToPerform = {
  build: { id: string; workspaceId: string; transition: BuildSpec['transition']; reason: string };
  task: { id: string; prompt: string; parameters: Record<string, string> } | null;
  template: { driver: string; settings: unknown; resume?: ResumeSpec | null } | null;
  previousOutputs: BuildOutputs | null;
  /** A start's kind, as the server says (null for a stop or a delete). */
  start?: StartKind | null;
  /** Which claim of the job this is: above 1, a provisioner that held it before went silent (crashed, killed). */
  attempt?: number;
};

/**
 * Where a provisioner gets what a job does not carry: a resume's previous conversation (up to a
 * snapshot's size, so fetched only for a resume), from the server's services or over its API.
 */
export type JobSources = { previousConversation?: () => Promise<ConversationMessage[]> };

/** How a job ended, as a provisioner reports it. */
export type JobOutcome = { outputs?: BuildOutputs } | { error: string };

/**
 * Runs a job's driver and never throws: the driver's outputs, or the failure's text. A job
 * without a template (an external workspace) has nothing to do. A start handed out again (its
 * earlier holder went silent, maybe after its agent was up) first runs the driver's stop for the
 * task, so what that holder may have started never runs beside the new agent, whatever the driver.
 */
export async function performJob(job: JobToPerform, ctx: DriverContext, sources: JobSources = {}): Promise<JobOutcome> {
  if (!job.template) return {};
  try {
    const spec = specOf(job);
    if (startOf(spec) === 'resume' && sources.previousConversation) {
      spec.previousConversation = await sources.previousConversation().catch((error: unknown) => {
        throw new DriverError(`could not fetch the previous conversation: ${(error as Error).message}`);
      });
    }
    const driver = driverFor(job.template.driver);
    if (spec.transition === 'start' && (job.attempt ?? 1) > 1) await undoEarlierStart(driver, spec, ctx);
    const outputs = await driver.run(spec, ctx);
    return { outputs };
  } catch (error) {
    return { error: failureText(error) };
  }
}

/** Stops what an earlier attempt of this start may have left; a start must not go on beside it. */
async function undoEarlierStart(driver: Driver, spec: BuildSpec, ctx: DriverContext): Promise<void> {
  ctx.log?.('a provisioner went silent during this start: stopping what it may have left first', {
    taskId: spec.taskId,
  });
  const { start: _, previousConversation: __, ...rest } = spec;
  try {
    await driver.run({ ...rest, transition: 'stop' }, ctx);
  } catch (error) {
    throw new DriverError(
      `could not stop what an earlier attempt of this start may have left (its provisioner went silent): ${(error as Error).message}`,
    );
  }
}

/** What the driver gets: the build, the task's prompt and parameters, the template's settings. */
function specOf(job: JobToPerform): BuildSpec {
  if (!job.task) throw new DriverError(`build ${job.build.id} belongs to no task: there is nothing to run it for`);
  return {
    buildId: job.build.id,
    taskId: job.task.id,
    workspaceId: job.build.workspaceId,
    transition: job.build.transition,
    reason: job.build.reason,
    prompt: job.task.prompt,
    parameters: job.task.parameters,
    settings: job.template?.settings,
    previousOutputs: job.previousOutputs,
    ...(job.start ? { start: job.start } : {}),
    resume: job.template?.resume ?? null,
  };
}

/** A DriverError's message is written for the user; anything else is the provisioner's own failure. */
function failureText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const text = error instanceof DriverError ? message : `the provisioner failed: ${message || 'no message'}`;
  return text.length > defaults.maxErrorChars ? `${text.slice(0, defaults.maxErrorChars - 1)}…` : text;
}
