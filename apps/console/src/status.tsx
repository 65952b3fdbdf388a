import type { ReactElement } from 'react';
import type { TaskStatus } from './types.ts';

/** A task's status as a coloured word (the word carries the meaning; the colour only helps). */
export function StatusBadge({ status }: { status: TaskStatus }): ReactElement {
  return <span className={`status status-${status}`}>{status}</span>;
}
