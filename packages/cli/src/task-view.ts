import type { BuildReason, Task, TaskStatus } from '@hiatus/client';
import { ago, details, formatSeconds, formatTime, table } from './output.ts';

/** Every status, from the client's type: a status added to the API fails this typecheck until listed. */
const statusSet: Record<TaskStatus, true> = {
  pending: true,
  initializing: true,
  active: true,
  pausing: true,
  paused: true,
  error: true,
  deleted: true,
};
export const taskStatuses = Object.keys(statusSet) as TaskStatus[];

const reasonSet: Record<BuildReason, true> = {
  initiator: true,
  autostart: true,
  autostop: true,
  dormancy: true,
  autodelete: true,
  failedstop: true,
  task_manual_pause: true,
  task_auto_pause: true,
  task_resume: true,
};
export const buildReasons = Object.keys(reasonSet) as BuildReason[];

/** The pause a task is in (its latest build stops it): since when, and why. */
function currentPause(task: Task): { since: Date; reason: BuildReason } | null {
  const build = task.latestBuild;
  if (build?.transition !== 'stop' || task.status === 'deleted') return null;
  return { since: build.createdAt, reason: build.reason };
}

/** When a keep-alive still holds off auto-pause (`tasks keep-alive`); none once it has passed. */
function keptAliveUntil(task: Task): string | null {
  const until = task.keepAliveUntil;
  return until && new Date(until).getTime() > Date.now() ? formatTime(until) : null;
}

/** An idle timeout as set on the task, or the server's default. */
function idleTimeout(task: Task): string {
  return task.idleTimeoutSeconds === null ? 'default' : formatSeconds(task.idleTimeoutSeconds);
}

/** Tasks as a table: the columns the person on call scans for. */
export function taskTable(tasks: Task[]): string {
  return table(
    ['ID', 'NAME', 'STATUS', 'PAUSED SINCE', 'PAUSE REASON', 'IDLE TIMEOUT', 'CREATED'],
    tasks.map((task) => {
      const pause = currentPause(task);
      return [
        task.id,
        task.name,
        task.status,
        pause && `${formatTime(pause.since)} (${ago(pause.since)})`,
        pause?.reason,
        idleTimeout(task),
        formatTime(task.createdAt),
      ];
    }),
  );
}

/** One task, field by field. */
export function taskDetails(task: Task): string {
  const pause = currentPause(task);
  const build = task.latestBuild;
  const firstLine = task.prompt.split('\n')[0] ?? '';
  return details([
    ['id', task.id],
    ['name', task.name],
    ['status', task.status],
    ['paused since', pause && `${formatTime(pause.since)} (${ago(pause.since)})`],
    ['pause reason', pause?.reason],
    ['agent', task.agentUrl],
    ['template', task.templateId],
    [
      'parameters',
      Object.entries(task.parameters)
        .map(([key, value]) => `${key}=${value}`)
        .join(' '),
    ],
    ['idle timeout', idleTimeout(task)],
    ['kept alive until', keptAliveUntil(task)],
    ['owner', task.ownerId],
    ['created', formatTime(task.createdAt)],
    ['deleted', formatTime(task.deletedAt)],
    [
      'latest build',
      build &&
        `#${build.buildNumber} ${build.transition} (${build.reason}) ${build.jobStatus}${build.error ? `: ${build.error}` : ''}`,
    ],
    ['prompt', firstLine.length > 100 ? `${firstLine.slice(0, 99)}…` : firstLine],
  ]);
}

/** `name (id)`, how a task is named in one-line answers. */
export function taskName(task: Task): string {
  return `${task.name} (${task.id})`;
}
