import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { type FormEvent, Fragment, type ReactElement, useId, useState } from 'react';
import { useTRPC } from '../api.ts';
import { formatReason, formatSeconds, formatTime } from '../format.ts';
import { Link } from '../link.tsx';
import { type Attempt, refusalSentence } from '../refusals.ts';
import { navigate } from '../route.ts';
import { StatusBadge } from '../status.tsx';
import type { LogSegment, Me, Task } from '../types.ts';

/** One task: its state, the buttons its key may use, its log and its builds, kept current by `tasks.watch`. */
export function TaskPage({ me, id }: { me: Me; id: string }): ReactElement {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  // A read answered before a change may arrive after the watch brought it: the newer one stays.
  const task = useQuery(trpc.tasks.get.queryOptions({ id }, { structuralSharing: newerTask }));
  useSubscription(
    trpc.tasks.watch.subscriptionOptions(
      { id },
      {
        enabled: task.isSuccess,
        onData: (changed) => {
          queryClient.setQueryData(trpc.tasks.get.queryKey({ id }), (old) => newerTask(old, changed));
          void queryClient.invalidateQueries({ queryKey: trpc.tasks.logs.pathKey() });
          void queryClient.invalidateQueries({ queryKey: trpc.builds.list.pathKey() });
        },
      },
    ),
  );

  if (task.error) {
    return (
      <section aria-labelledby="task-title">
        <h1 id="task-title">Task</h1>
        <p role="alert" className="error">
          {refusalSentence('read', task.error)}
        </p>
        <p>
          <Link href="/">Back to the tasks</Link>
        </p>
      </section>
    );
  }
  if (!task.data) return <p aria-live="polite">Loading the task…</p>;
  const t = task.data;
  return (
    <article aria-labelledby="task-title">
      <p className="crumbs">
        <Link href="/">← All tasks</Link>
      </p>
      <div className="title-row">
        <h1 id="task-title">{t.name}</h1>
        <StatusBadge status={t.status} pauseStage={t.pauseStage} />
      </div>
      <dl className="facts">
        <dt>Status</dt>
        <dd data-testid="task-status">{t.status}</dd>
        {t.pauseStage && (
          <>
            <dt>Pause stage</dt>
            <dd data-testid="pause-stage">
              {t.pauseStage === 'hot'
                ? 'hot: its agent is frozen, and a resume thaws it at once'
                : 'cold: its agent is stopped'}
            </dd>
          </>
        )}
        <dt>Last build</dt>
        <dd>
          {t.latestBuild
            ? `${t.latestBuild.transition}, ${formatReason(t.latestBuild.reason)}, ${t.latestBuild.jobStatus}`
            : '—'}
        </dd>
        <dt>Idle timeout</dt>
        <dd>{t.idleTimeoutSeconds === null ? 'the server default' : formatSeconds(t.idleTimeoutSeconds)}</dd>
        <dt>Agent</dt>
        <dd>{t.agentUrl ?? 'not started yet'}</dd>
        <dt>Created</dt>
        <dd>{formatTime(t.createdAt)}</dd>
        <dt>Prompt</dt>
        <dd className="prompt">{t.prompt || '—'}</dd>
      </dl>
      {me.scope === 'full' && <Actions task={t} />}
      <Log task={t} />
      <Builds taskId={t.id} />
    </article>
  );
}

/** Pause, resume, delete and send, each shown only where the task's state allows it; refusals in sentences. */
function Actions({ task }: { task: Task }): ReactElement {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [refusal, setRefusal] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [message, setMessage] = useState('');
  const [sent, setSent] = useState<string | null>(null);
  const messageId = useId();
  const refresh = (): void => {
    void queryClient.invalidateQueries({ queryKey: trpc.tasks.get.queryKey({ id: task.id }) });
    void queryClient.invalidateQueries({ queryKey: trpc.tasks.logs.pathKey() });
    void queryClient.invalidateQueries({ queryKey: trpc.builds.list.pathKey() });
  };
  const handlers = (attempt: Attempt) => ({
    onMutate: () => {
      setRefusal(null);
      setSent(null);
    },
    onSuccess: refresh,
    onError: (error: unknown) => setRefusal(refusalSentence(attempt, error)),
  });
  const pause = useMutation(trpc.tasks.pause.mutationOptions(handlers('pause')));
  const resume = useMutation(trpc.tasks.resume.mutationOptions(handlers('resume')));
  const remove = useMutation(
    trpc.tasks.delete.mutationOptions({
      ...handlers('delete'),
      onSuccess: () => {
        void queryClient.invalidateQueries({ queryKey: trpc.tasks.list.pathKey() });
        navigate('/');
      },
    }),
  );
  const send = useMutation(
    trpc.tasks.send.mutationOptions({
      ...handlers('send'),
      onSuccess: (result) => {
        setMessage('');
        setSent(
          result.queued
            ? 'Queued in the inbox: the agent gets it once the task is active and the agent is free.'
            : 'Sent: the agent has it.',
        );
        refresh();
      },
    }),
  );
  const busy = pause.isPending || resume.isPending || remove.isPending || send.isPending;
  const canResume = task.status === 'paused' || (task.status === 'error' && task.latestBuild?.transition === 'stop');
  const canSend = task.status === 'active' || canResume;
  const submit = (event: FormEvent): void => {
    event.preventDefault();
    if (message.trim()) send.mutate({ id: task.id, input: message, resumeIfPaused: task.status !== 'active' });
  };

  if (task.status === 'deleted') return <p>This task was deleted.</p>;
  return (
    <section aria-label="Actions" className="actions">
      <div className="buttons">
        {task.status === 'active' && (
          <button type="button" disabled={busy} onClick={() => pause.mutate({ id: task.id })}>
            {pause.isPending ? 'Pausing…' : 'Pause'}
          </button>
        )}
        {canResume && (
          <button type="button" disabled={busy} onClick={() => resume.mutate({ id: task.id })}>
            {resume.isPending ? 'Resuming…' : 'Resume'}
          </button>
        )}
        {confirmDelete ? (
          <span className="confirm">
            Delete this task and its workspace?{' '}
            <button type="button" className="danger" disabled={busy} onClick={() => remove.mutate({ id: task.id })}>
              Yes, delete
            </button>{' '}
            <button type="button" onClick={() => setConfirmDelete(false)}>
              Keep it
            </button>
          </span>
        ) : (
          <button type="button" className="danger" disabled={busy} onClick={() => setConfirmDelete(true)}>
            Delete
          </button>
        )}
      </div>
      {canSend && (
        <form onSubmit={submit} className="send">
          <label htmlFor={messageId}>
            Message to the agent{task.status === 'active' ? '' : ' (the task is resumed first)'}
          </label>
          <textarea id={messageId} rows={2} value={message} onChange={(e) => setMessage(e.target.value)} />
          <button type="submit" disabled={busy || !message.trim()}>
            {send.isPending ? 'Sending…' : task.status === 'active' ? 'Send' : 'Resume and send'}
          </button>
        </form>
      )}
      <p role="status" className={sent ? 'hint' : 'visually-hidden'}>
        {sent}
      </p>
      <p role="alert" className={refusal ? 'error' : 'visually-hidden'}>
        {refusal}
      </p>
    </section>
  );
}

/**
 * The task's whole history page by page, oldest first: the kept earlier agents, the latest snapshot,
 * then the live agent while it runs; a line marks each boundary between two agents.
 */
function Log({ task }: { task: Task }): ReactElement {
  const trpc = useTRPC();
  const logs = useInfiniteQuery(
    trpc.tasks.logs.infiniteQueryOptions(
      { id: task.id, limit: 50 },
      {
        getNextPageParam: (page) => page.nextCursor ?? undefined,
        // A live log changes without a lifecycle event: look again while the agent runs.
        refetchInterval: task.status === 'active' ? 3000 : false,
      },
    ),
  );
  const first = logs.data?.pages[0];
  const entries = logs.data?.pages.flatMap((p) => p.entries) ?? [];
  const segments = new Map((logs.data?.pages ?? []).flatMap((p) => p.segments.map((s) => [s.segment, s] as const)));
  return (
    <section aria-labelledby="log-title" className="log">
      <h2 id="log-title">Log</h2>
      {first && (
        <p className={`source source-${first.source}`} data-testid="log-source">
          {first.source === 'live' ? (
            'Live from the agent'
          ) : first.snapshotAt ? (
            <>
              From the snapshot taken at{' '}
              <time dateTime={first.snapshotAt.toISOString()}>{formatTime(first.snapshotAt)}</time>
            </>
          ) : (
            'No snapshot was taken'
          )}
        </p>
      )}
      {first?.notice && <p className="notice">{first.notice}</p>}
      {first && first.pending.length > 0 && (
        <section aria-labelledby="inbox-title" className="inbox">
          <h3 id="inbox-title">Waiting in the inbox ({first.pendingCount})</h3>
          <ol>
            {first.pending.map((m) => (
              <li key={m.messageId}>
                <time dateTime={m.queuedAt.toISOString()}>{formatTime(m.queuedAt)}</time> <q>{m.content}</q>
                {m.truncated && <span className="notice"> … ({m.bytes} bytes in all)</span>}
                {m.lastError && <span className="notice"> (last try: {m.lastError})</span>}
              </li>
            ))}
          </ol>
          {first.pendingCount > first.pending.length && <p>and {first.pendingCount - first.pending.length} more</p>}
        </section>
      )}
      {logs.error && (
        <p role="alert" className="error">
          {refusalSentence('read', logs.error)}
        </p>
      )}
      {logs.data && entries.length === 0 && <p>The log is empty.</p>}
      <ol className="entries">
        {entries.map((entry, i) => (
          <Fragment key={entry.position}>
            {i > 0 && entries[i - 1]!.segment !== entry.segment && (
              <SegmentBoundary
                before={segments.get(entries[i - 1]!.segment)}
                after={segments.get(entry.segment)}
                segment={entry.segment}
              />
            )}
            <li className={`entry entry-${entry.role}`}>
              <span className="who">{entry.role === 'input' ? 'user' : 'agent'}</span>{' '}
              <time dateTime={entry.time.toISOString()}>{formatTime(entry.time)}</time>
              <pre>{entry.content}</pre>
            </li>
          </Fragment>
        ))}
      </ol>
      {logs.hasNextPage && (
        <button type="button" onClick={() => void logs.fetchNextPage()} disabled={logs.isFetchingNextPage}>
          {logs.isFetchingNextPage ? 'Loading…' : 'Next page of the log'}
        </button>
      )}
    </section>
  );
}

/** The line between two agents of the task's history: "— paused at … — resumed at … with a new agent —". */
function SegmentBoundary({
  before,
  after,
  segment,
}: {
  before: LogSegment | undefined;
  after: LogSegment | undefined;
  segment: number;
}): ReactElement {
  return (
    <li className="segment-boundary" data-testid="segment-boundary" data-segment={segment}>
      — paused
      {before?.pausedAt && (
        <>
          {' at '}
          <time dateTime={before.pausedAt.toISOString()}>{formatTime(before.pausedAt)}</time>
        </>
      )}{' '}
      — resumed
      {after?.startedAt && (
        <>
          {' at '}
          <time dateTime={after.startedAt.toISOString()}>{formatTime(after.startedAt)}</time>
        </>
      )}{' '}
      with a new agent —
    </li>
  );
}

/** The task's builds, newest first, with their reasons: its lifecycle as a timeline. */
function Builds({ taskId }: { taskId: string }): ReactElement {
  const trpc = useTRPC();
  const builds = useInfiniteQuery(
    trpc.builds.list.infiniteQueryOptions(
      { taskId, limit: 20 },
      { getNextPageParam: (page) => page.nextCursor ?? undefined },
    ),
  );
  const items = builds.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <section aria-labelledby="builds-title" className="builds">
      <h2 id="builds-title">Builds</h2>
      {builds.error && (
        <p role="alert" className="error">
          {refusalSentence('read', builds.error)}
        </p>
      )}
      <ol className="timeline">
        {items.map((b) => (
          <li key={b.id} className={`build job-${b.jobStatus}`}>
            <strong>
              #{b.buildNumber} {b.transition}
            </strong>{' '}
            <span className="reason">{formatReason(b.reason)}</span> · {b.jobStatus} ·{' '}
            <time dateTime={b.createdAt.toISOString()}>{formatTime(b.createdAt)}</time>
            {b.error && <p className="error">{b.error}</p>}
          </li>
        ))}
      </ol>
      {builds.hasNextPage && (
        <button type="button" onClick={() => void builds.fetchNextPage()} disabled={builds.isFetchingNextPage}>
          Older builds
        </button>
      )}
    </section>
  );
}

const jobProgress: Record<string, number> = { pending: 0, running: 1, succeeded: 2, failed: 2, canceled: 2 };

/**
 * Of two reads of one task, the later in its history: a later build, or the same build's job
 * further along. Equal: the newer read (`next`), which may differ in fields no build moves.
 */
function newerTask(old: unknown, next: unknown): Task {
  const a = old as Task | undefined;
  const n = next as Task;
  if (!a) return n;
  const order = (t: Task) => [t.latestBuild?.buildNumber ?? -1, jobProgress[t.latestBuild?.jobStatus ?? ''] ?? 0];
  const [aBuild, aJob] = order(a);
  const [nBuild, nJob] = order(n);
  return nBuild! < aBuild! || (nBuild === aBuild && nJob! < aJob!) ? a : n;
}
