import type { RouterOutputs } from '@hiatus/client';

export type { LogSegment, Task, TaskStatus } from '@hiatus/client';
/** Who the key speaks for: role, scope, the task it is limited to. */
export type Me = RouterOutputs['me'];
export type LifecycleBucket = RouterOutputs['telemetry']['lifecycle'][number];
