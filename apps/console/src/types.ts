import type { RouterOutputs } from '@hiatus/client';

export type { AuditRecord, Build, LogEntry, LogPage, Task, TaskStatus } from '@hiatus/client';
/** Who the key speaks for: role, scope, the task it is limited to. */
export type Me = RouterOutputs['me'];
export type LifecycleBucket = RouterOutputs['telemetry']['lifecycle'][number];
export type Template = RouterOutputs['templates']['list'][number];
export type User = RouterOutputs['users']['list']['items'][number];
