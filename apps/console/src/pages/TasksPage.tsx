import { useInfiniteQuery, useQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { type ReactElement, useId } from 'react';
import { useTRPC } from '../api.ts';
import { formatReason, formatSeconds, formatSince, formatTime } from '../format.ts';
import { Link } from '../link.tsx';
import { refusalSentence } from '../refusals.ts';
import { navigate } from '../route.ts';
import { StatusBadge } from '../status.tsx';
import type { Me, Task, TaskStatus } from '../types.ts';
import { CreateTask } from './CreateTask.tsx';

const statuses = [
  'pending',
  'initializing',
  'active',
  'pausing',
  'paused',
  'error',
  'deleted',
] as const satisfies readonly TaskStatus[];

function isStatus(value: string | null): value is TaskStatus {
  return (statuses as readonly string[]).includes(value ?? '');
}

/** When the task's last pause finished, if it is paused now. */
function pausedSince(task: Task): Date | null {
  if (task.status !== 'paused' || !task.latestBuild) return null;
  return task.latestBuild.completedAt ?? task.latestBuild.createdAt;
}

/** Why the task is paused or pausing (its latest build's reason), else nothing. */
function pauseReason(task: Task): string {
  const build = task.latestBuild;
  return build && build.transition === 'stop' ? formatReason(build.reason) : '—';
}

const startingStatuses = new Set(['pending', 'initializing']);
const startingRefreshMs = 2_000;

/** The tasks the key may see, newest first, filtered by status, kept current by the event stream. */
export function TasksPage({ me, status }: { me: Me; status: string | null }): ReactElement {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const filter = isStatus(status) ? status : undefined;
  const tasks = useInfiniteQuery(
    trpc.tasks.list.infiniteQueryOptions(
      { status: filter, limit: 50 },
      {
        getNextPageParam: (page) => page.nextCursor ?? undefined,
        // A first start's end is no event (a resume's is: task.resumed), so the stream below never
        // announces it: while a listed task is starting, the list is read again every few seconds.
        refetchInterval: (query) =>
          query.state.data?.pages.some((p) => p.items.some((t) => startingStatuses.has(t.status)))
            ? startingRefreshMs
            : false,
      },
    ),
  );
  const owners = useQuery(
    trpc.users.list.queryOptions({ limit: 100 }, { enabled: me.role === 'admin', staleTime: 60_000 }),
  );
  const ownerName = new Map(owners.data?.items.map((u) => [u.id, u.username]));
  // Any lifecycle event of a visible task changes the list: one stream for the whole page. The list
  // is read again once the stream is open too, for the changes between the first read and the stream.
  const reload = (): void => void queryClient.invalidateQueries({ queryKey: trpc.tasks.list.pathKey() });
  useSubscription(trpc.events.watch.subscriptionOptions({}, { onStarted: reload, onData: reload }));
  const filterId = useId();
  const items = tasks.data?.pages.flatMap((p) => p.items) ?? [];
  const now = Date.now();

  return (
    <section aria-labelledby="tasks-title">
      <div className="title-row">
        <h1 id="tasks-title">Tasks</h1>
        <div className="filter">
          <label htmlFor={filterId}>Status</label>
          <select
            id={filterId}
            value={filter ?? ''}
            onChange={(e) => navigate(e.target.value ? `/?status=${e.target.value}` : '/')}
          >
            <option value="">all but deleted</option>
            {statuses.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
      </div>
      {me.scope === 'full' && <CreateTask />}
      {tasks.error && (
        <p role="alert" className="error">
          {refusalSentence('read', tasks.error)}
        </p>
      )}
      {tasks.isPending && <p aria-live="polite">Loading the tasks…</p>}
      {tasks.data && items.length === 0 && <p>No tasks{filter ? ` are ${filter}` : ''}.</p>}
      {items.length > 0 && (
        <div className="table-wrap">
          <table className="tasks">
            <caption className="visually-hidden">Tasks{filter ? `, ${filter}` : ''}, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Last pause</th>
                <th scope="col">Paused since</th>
                <th scope="col">Idle timeout</th>
                {me.role === 'admin' && <th scope="col">Owner</th>}
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {items.map((task) => (
                <tr key={task.id}>
                  <th scope="row" data-label="Name">
                    <Link href={`/tasks/${task.id}`}>{task.name}</Link>
                  </th>
                  <td data-label="Status">
                    <StatusBadge status={task.status} pauseStage={task.pauseStage} />
                  </td>
                  <td data-label="Last pause">{pauseReason(task)}</td>
                  <td data-label="Paused since">
                    {pausedSince(task) ? (
                      <time dateTime={pausedSince(task)!.toISOString()} title={formatTime(pausedSince(task))}>
                        {formatSince(pausedSince(task), now)}
                      </time>
                    ) : (
                      '—'
                    )}
                  </td>
                  <td data-label="Idle timeout">
                    {task.idleTimeoutSeconds === null ? 'default' : formatSeconds(task.idleTimeoutSeconds)}
                  </td>
                  {me.role === 'admin' && (
                    <td data-label="Owner">{ownerName.get(task.ownerId) ?? task.ownerId.slice(0, 8)}</td>
                  )}
                  <td data-label="Created">
                    <time dateTime={task.createdAt.toISOString()}>{formatTime(task.createdAt)}</time>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {tasks.hasNextPage && (
        <button type="button" onClick={() => void tasks.fetchNextPage()} disabled={tasks.isFetchingNextPage}>
          {tasks.isFetchingNextPage ? 'Loading…' : 'More tasks'}
        </button>
      )}
    </section>
  );
}
