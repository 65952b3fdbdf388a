import type { z } from 'zod';

export type BuildTransition = 'start' | 'stop' | 'delete';

/** Whether a start is the task's first (its creation) or a resume after a pause. */
export type StartKind = 'first' | 'resume';

/** One message of an agent's conversation as AgentAPI gives it (unknown extra fields kept). */
export type ConversationMessage = {
  id: number;
  role: 'user' | 'agent';
  content: string;
  /** RFC 3339 date-time. */
  time: string;
  [field: string]: unknown;
};

/** The template's `resume` setting as a driver sees it: the command a resume runs instead of the first start's. */
export type ResumeSpec = { command?: string | string[] };

/** One build job as a driver sees it: what to do to which workspace, and with what. */
export type BuildSpec = {
  buildId: string;
  taskId: string;
  workspaceId: string;
  transition: BuildTransition;
  /** Why the build happens: `initiator`, `task_manual_pause`, `task_auto_pause`, `task_resume`, ... */
  reason: string;
  prompt: string;
  /** Template parameters chosen when the task was created. */
  parameters: Record<string, string>;
  /** The template's driver settings, checked by the driver's `settingsSchema`. */
  settings: unknown;
  /** Outputs of the workspace's latest successful start build. */
  previousOutputs: BuildOutputs | null;
  /** A start's kind (absent for a stop or a delete): the task's first start, or a resume. */
  start?: StartKind;
  /** A resume's previous conversation, oldest first; the driver hands it to the workspace as a file. */
  previousConversation?: ConversationMessage[];
  /** The template's `resume` setting, when it has one. */
  resume?: ResumeSpec | null;
};

/** What a build reports back; a start must give the `agentUrl` Hiatus talks AgentAPI to. */
/**
 * A start's kind, absent for a stop or a delete: as the server said, or else by its reason (a start
 * queued by the task's creation, reason `initiator`, is its first; any other start resumes it).
 */
export function startOf(spec: Pick<BuildSpec, 'transition' | 'reason' | 'start'>): StartKind | undefined {
  if (spec.transition !== 'start') return undefined;
  return spec.start ?? (spec.reason === 'initiator' ? 'first' : 'resume');
}

export type BuildOutputs = { agentUrl?: string; [key: string]: unknown };

export type DriverContext = {
  /** Where a driver keeps its state (pid files, workspaces); kept across provisioner restarts. */
  dataDir: string;
  signal?: AbortSignal;
  log?: (msg: string, fields?: object) => void;
};

export interface Driver {
  readonly name: string;
  /** Checks a template's settings, when a build runs and when the server accepts the template. */
  readonly settingsSchema: z.ZodType;
  /** Checks a template's `resume.command` (what this driver runs on a resume); absent: it takes none. */
  readonly resumeCommandSchema?: z.ZodType;
  /** Performs the transition; throws `DriverError` on failure. */
  run(spec: BuildSpec, ctx: DriverContext): Promise<BuildOutputs>;
  /**
   * Called when a provisioner starts: stops anything this driver left running that should not run
   * (its task was paused or deleted while the provisioner was away). Returns the task ids it stopped.
   */
  reconcile?(shouldRun: (taskId: string) => boolean | Promise<boolean>, ctx: DriverContext): Promise<string[]>;
}

/**
 * A build failed in a way worth showing to the user as is: the message says what happened
 * and, where a command ran, ends with the tail of what it printed.
 */
export class DriverError extends Error {
  override readonly name = 'DriverError';

  constructor(message: string, options?: { cause?: unknown; output?: string }) {
    const output = options?.output?.trim();
    super(output ? `${message}: ${output}` : message, { cause: options?.cause });
  }
}

/** Parses settings with a driver's schema, turning zod's issues into one readable DriverError. */
export function parseSettings<T extends z.ZodType>(driver: string, schema: T, settings: unknown): z.infer<T> {
  const result = schema.safeParse(settings);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ${i.message}` : i.message));
  throw new DriverError(`invalid ${driver} driver settings: ${issues.join('; ')}`);
}
