import { z } from 'zod';
import type { describePrincipal } from '../auth/accounts.ts';
import { apiKeyScopes, userRoles } from '../domain/actor.ts';
import { eventTypes } from '../domain/events.ts';
import { buildReasons, jobStatuses, taskStatuses, workspaceTransitions } from '../domain/lifecycle.ts';
import { weekdays } from '../domain/schedules.ts';
import type { cancelMessage, getMessage } from '../inbox/inbox.ts';
import type { sendToTask } from '../inbox/send.ts';
import type { listTaskBuilds } from '../lifecycle/builds.ts';
import type { listEventsFor } from '../lifecycle/events.ts';
import type { keepTaskAlive } from '../lifecycle/keep-alive.ts';
import type { readLogs } from '../lifecycle/logs.ts';
import type { meteredPause, meteredResume } from '../lifecycle/metered.ts';
import type { createTask, listTasksFor } from '../lifecycle/tasks.ts';
import type { afterWaitIfAsked } from '../lifecycle/wait.ts';
import type { getTemplate } from '../templates/templates.ts';

/*
 * What the procedures served as REST paths answer, as zod schemas: tRPC checks every answer
 * against them and /openapi.json is generated from them. Each is typed as the service's own result,
 * so the SDK's types stay the services' and a field the service adds without its schema fails to
 * compile here rather than vanish from the answers.
 */

type Result<F extends (...args: never[]) => unknown> = Awaited<ReturnType<F>>;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** `schema` as the schema of exactly `T` (checked both ways at compile time). */
function exactly<T>() {
  return <S extends z.ZodType>(
    schema: S & (Same<z.output<S>, T> extends true ? unknown : { notExactly: T }),
  ): z.ZodType<T, T> => schema as unknown as z.ZodType<T, T>;
}

/** A moment: a Date in tRPC's answers (superjson), an ISO 8601 string in REST's. */
const instant = z.date().meta({ format: 'date-time' });

const scheduleShape = z
  .object({
    timeZone: z.string(),
    windows: z.array(z.object({ days: z.array(z.enum(weekdays)), start: z.string(), end: z.string() })),
  })
  .meta({ id: 'Schedule', description: 'Windows of local time in an IANA time zone in which a task may run.' });

const build = z
  .object({
    id: z.string(),
    workspaceId: z.string(),
    buildNumber: z.number().int(),
    transition: z.enum(workspaceTransitions),
    reason: z.enum(buildReasons),
    initiatorId: z.string().nullable(),
    jobStatus: z.enum(jobStatuses),
    error: z.string().nullable(),
    createdAt: instant,
    startedAt: instant.nullable(),
    completedAt: instant.nullable(),
    templateId: z.string().nullable().meta({ description: 'the template version it ran with; null: external' }),
    outputs: z
      .record(z.string(), z.unknown())
      .nullable()
      .meta({ description: 'what the provisioner reported (a start: agentUrl)' }),
  })
  .meta({ id: 'Build', description: 'A workspace build: one lifecycle step with its reason and job status.' });

type Task = Result<typeof createTask>['task'];
type Build = Result<typeof createTask>['build'];

const taskShape = z
  .object({
    id: z.string(),
    ownerId: z.string(),
    workspaceId: z.string(),
    name: z.string(),
    prompt: z.string(),
    agentUrl: z.string().nullable(),
    templateId: z.string().nullable(),
    parameters: z.record(z.string(), z.string()),
    idleTimeoutSeconds: z.number().int().nullable(),
    keepAliveUntil: instant.nullable(),
    schedule: scheduleShape.nullable().meta({ description: "the task's own schedule; null: its template's" }),
    createdAt: instant,
    deletedAt: instant.nullable(),
    status: z.enum(taskStatuses),
    pauseStage: z.enum(['hot', 'cold']).nullable().meta({
      description:
        "a paused task's stage: `hot` while its agent is frozen (a docker template's `hotPauseSeconds`), resumed at once; `cold` once stopped; null unless paused",
    }),
    latestBuild: build.nullable(),
  })
  .meta({ id: 'Task', description: "A task, its status derived from its workspace's latest build." });

export const taskOutput = exactly<Task>()(taskShape);

/** A change that queued a build: the task as it is now and that build. */
export const taskChangeOutput = exactly<{ task: Task; build: Build }>()(z.object({ task: taskShape, build }));

type PauseResult = Result<typeof meteredPause>;
type ResumeResult = Result<typeof meteredResume>;
const settled = z
  .boolean()
  .optional()
  .meta({ description: 'with `wait`: whether the build ended before the answer (absent without `wait`)' });

/** A pause: the stop build, and the snapshot taken (or why none was). */
export const pauseOutput = exactly<Result<typeof afterWaitIfAsked<PauseResult>>>()(
  z.object({
    task: taskShape,
    build,
    snapshot: z.union([
      z.object({
        taken: z.literal(true),
        createdAt: instant,
        messageCount: z.number().int(),
        bytes: z.number().int(),
      }),
      z.object({ taken: z.literal(false), reason: z.string() }),
    ]),
    settled,
  }),
);

/** A resume: the start build. */
export const resumeOutput = exactly<Result<typeof afterWaitIfAsked<ResumeResult>>>()(
  z.object({ task: taskShape, build, settled }),
);

export const taskPageOutput = exactly<Result<typeof listTasksFor>>()(
  z.object({ items: z.array(taskShape), nextCursor: z.string().nullable() }),
);

export const sendOutput = exactly<Result<typeof sendToTask>>()(
  z.union([
    z.object({ queued: z.literal(false), task: taskShape, resumed: z.literal(false) }),
    z.object({ queued: z.literal(true), messageId: z.string(), task: taskShape, resumed: z.boolean() }),
  ]),
);

export const cancelMessageOutput = exactly<Result<typeof cancelMessage>>()(
  z.object({ messageId: z.string(), status: z.literal('cancelled'), cancelledAt: instant }),
);

export const keepAliveOutput = exactly<Result<typeof keepTaskAlive>>()(
  z.object({ task: taskShape, keepAliveUntil: instant }),
);

export const logPageOutput = exactly<Result<typeof readLogs>>()(
  z.object({
    source: z.enum(['live', 'snapshot']),
    snapshotAt: instant.nullable(),
    entries: z.array(
      z.object({
        id: z.number().int().meta({ description: "the agent's own message id: it starts again with each new agent" }),
        position: z
          .number()
          .int()
          .meta({ description: "the entry's place in the task's whole history, across agents: what `cursor` counts" }),
        segment: z.number().int().meta({ description: 'the agent lifetime (segment) the entry belongs to, from 1' }),
        role: z.enum(['input', 'output']),
        content: z.string(),
        time: instant,
      }),
    ),
    segments: z.array(
      z
        .object({
          segment: z.number().int(),
          source: z.enum(['kept', 'snapshot', 'live']),
          startedAt: instant.nullable().meta({ description: "when the segment's agent started; null: unknown" }),
          pausedAt: instant.nullable().meta({ description: 'when its conversation was taken; null: the live agent' }),
          firstPosition: z.number().int(),
          entryCount: z.number().int(),
          repeated: z.number().int().meta({
            description: "leading messages of its agent's conversation left out: they repeat the previous segment's",
          }),
        })
        .meta({ id: 'LogSegment', description: "One agent lifetime of a task's history." }),
    ),
    nextCursor: z
      .number()
      .int()
      .nullable()
      .meta({ description: "the last entry's position: pass it back as `cursor`; null on the last page" }),
    notice: z.string().nullable(),
    pending: z.array(
      z.object({
        messageId: z.string(),
        content: z.string().meta({ description: "the message's first 1,000 characters: `tasks.message` has it whole" }),
        truncated: z.boolean().meta({ description: '`content` is only the start of the message' }),
        bytes: z.number().int().meta({ description: "the whole message's size in bytes (UTF-8)" }),
        queuedAt: instant,
        attempts: z.number().int(),
        lastError: z.string().nullable(),
      }),
    ),
    pendingCount: z
      .number()
      .int()
      .meta({ description: 'messages waiting in the inbox in all; `pending` lists the first 100' }),
  }),
);

export const messageOutput = exactly<Result<typeof getMessage>>()(
  z.object({
    messageId: z.string(),
    status: z.enum(['queued', 'delivered', 'cancelled']),
    content: z.string(),
    queuedAt: instant,
    deliveredAt: instant.nullable(),
    cancelledAt: instant.nullable(),
    attempts: z.number().int(),
    lastError: z.string().nullable(),
  }),
);

export const buildPageOutput = exactly<Result<typeof listTaskBuilds>>()(
  z.object({ items: z.array(build), nextCursor: z.number().int().nullable() }),
);

type EventPage = Result<typeof listEventsFor>;
/**
 * A page of events. Each type's payload is in the README's event table; the schema says "an object",
 * so its TypeScript type is set by hand to the services' union (the one place not checked both ways).
 */
export const eventPageOutput = z.object({
  items: z.array(
    z
      .object({
        id: z.string(),
        type: z.enum(eventTypes),
        taskId: z.string().nullable(),
        ownerId: z.string(),
        occurredAt: instant,
        payload: z.record(z.string(), z.unknown()),
      })
      .meta({ id: 'Event', description: 'A lifecycle event; its payload depends on its type.' }),
  ),
  nextCursor: z.string().nullable().meta({ description: 'pass it back as `after`; null on the last page' }),
}) as unknown as z.ZodType<EventPage, EventPage>;

export const identityOutput = exactly<Result<typeof describePrincipal>>()(
  z.object({
    userId: z.string(),
    username: z.string(),
    role: z.enum(userRoles),
    keyId: z.string(),
    keyName: z.string(),
    scope: z.enum(apiKeyScopes),
    taskId: z.string().nullable(),
    expiresAt: instant.nullable(),
  }),
);

type Template = Result<typeof getTemplate>;
const templateShape = z
  .object({
    id: z.string(),
    name: z.string(),
    version: z.number().int(),
    driver: z.string(),
    settings: z.unknown().meta({ description: "the driver's settings, without `env`: its values are write-only" }),
    envNames: z
      .array(z.string())
      .meta({ description: 'the names of `settings.env`, sorted; their values go to the driver only' }),
    parameters: z.array(
      z.object({
        name: z.string(),
        description: z.string().optional(),
        default: z.string().optional(),
        pattern: z.string().optional(),
      }),
    ),
    idleTimeoutSeconds: z.number().int().nullable(),
    prePauseNotice: z.object({ message: z.string(), waitSeconds: z.number().int() }).nullable(),
    resume: z
      .object({
        command: z
          .union([z.string(), z.array(z.string())])
          .optional()
          .meta({ description: 'run on a resume instead of the first start' }),
        message: z
          .boolean()
          .optional()
          .meta({ description: 'a recap (the original prompt and the last exchanges) is queued first' }),
        messageMaxBytes: z
          .number()
          .int()
          .optional()
          .meta({ description: "the recap's size limit in UTF-8 bytes; absent: the service default" }),
      })
      .nullable()
      .meta({ description: 'what a resume of its tasks does beyond starting the agent again' }),
    schedule: scheduleShape.nullable(),
    pausedRetentionDays: z.number().int().nullable(),
    provisionerTags: z.record(z.string(), z.string()).meta({
      description:
        "the tags a provisioner must have to take its builds (all of them; more are fine); {}: any provisioner. A task's builds keep its version's tags",
    }),
    description: z.string(),
    createdBy: z.string().nullable(),
    createdAt: instant,
    archivedAt: instant.nullable(),
  })
  .meta({ id: 'Template', description: 'One version of a template.' });

export const templateOutput = exactly<Template>()(templateShape);
export const templateListOutput = exactly<Template[]>()(z.array(templateShape));

export const infoOutput = z.object({ service: z.literal('hiatus'), apiVersion: z.number().int() });
