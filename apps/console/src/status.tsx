import type { ReactElement } from 'react';
import type { TaskStatus } from './types.ts';

/**
 * A task's status as a coloured word (the word carries the meaning; the colour only helps); a hot
 * pause (its agent frozen, resumed at once) says so.
 */
export function StatusBadge({
  status,
  pauseStage,
}: {
  status: TaskStatus;
  pauseStage?: 'hot' | 'cold' | null;
}): ReactElement {
  return <span className={`status status-${status}`}>{pauseStage === 'hot' ? `${status} (hot)` : status}</span>;
}
