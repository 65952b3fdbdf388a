import { defaults } from './defaults.ts';
import {
  type BuildOutputs,
  type BuildSpec,
  type ConversationMessage,
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
 * without a template (an external workspace) has nothing to do.
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
    const outputs = await driverFor(job.template.driver).run(spec, ctx);
    return { outputs };
  } catch (error) {
    return { error: failureText(error) };
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
