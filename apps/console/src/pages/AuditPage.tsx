import { useInfiniteQuery, useQuery } from '@tanstack/react-query';
import { type FormEvent, type ReactElement, useId, useState } from 'react';
import { useTRPC } from '../api.ts';
import { formatReason, formatTime } from '../format.ts';
import { refusalSentence } from '../refusals.ts';

const reasons = ['task_manual_pause', 'task_auto_pause', 'task_resume'] as const;

type Filters = {
  action?: string;
  actorId?: string;
  resourceId?: string;
  buildReason?: (typeof reasons)[number];
  since?: Date;
  until?: Date;
};

/** A `datetime-local` value as a Date, or nothing when empty or unreadable. */
function dateOf(value: FormDataEntryValue | null): Date | undefined {
  if (typeof value !== 'string' || !value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function textOf(value: FormDataEntryValue | null): string | undefined {
  return typeof value === 'string' && value.trim() ? value.trim() : undefined;
}

/** Admins: who did what, newest first, filtered by actor, action, resource, build reason and time. */
export function AuditPage(): ReactElement {
  const trpc = useTRPC();
  const [filters, setFilters] = useState<Filters>({});
  const users = useQuery(trpc.users.list.queryOptions({ limit: 100 }, { staleTime: 60_000 }));
  const userName = new Map(users.data?.items.map((u) => [u.id, u.username]));
  const audit = useInfiniteQuery(
    trpc.audit.list.infiniteQueryOptions(
      { ...filters, limit: 50 },
      { getNextPageParam: (page) => page.nextCursor ?? undefined },
    ),
  );
  const id = useId();
  const items = audit.data?.pages.flatMap((p) => p.items) ?? [];

  const apply = (event: FormEvent<HTMLFormElement>): void => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const reason = textOf(form.get('buildReason'));
    setFilters({
      action: textOf(form.get('action')),
      actorId: textOf(form.get('actorId')),
      resourceId: textOf(form.get('resourceId')),
      buildReason: reasons.find((r) => r === reason),
      since: dateOf(form.get('since')),
      until: dateOf(form.get('until')),
    });
  };

  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <form className="filters" onSubmit={apply} aria-label="Audit filters">
        <div className="field">
          <label htmlFor={`${id}-actor`}>Who</label>
          <select id={`${id}-actor`} name="actorId" defaultValue="">
            <option value="">anyone</option>
            {users.data?.items.map((u) => (
              <option key={u.id} value={u.id}>
                {u.username}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-action`}>Action</label>
          <input id={`${id}-action`} name="action" placeholder="task.pause" />
        </div>
        <div className="field">
          <label htmlFor={`${id}-resource`}>Resource id</label>
          <input id={`${id}-resource`} name="resourceId" />
        </div>
        <div className="field">
          <label htmlFor={`${id}-reason`}>Build reason</label>
          <select id={`${id}-reason`} name="buildReason" defaultValue="">
            <option value="">any</option>
            {reasons.map((r) => (
              <option key={r} value={r}>
                {formatReason(r)}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${id}-since`}>Since</label>
          <input id={`${id}-since`} name="since" type="datetime-local" />
        </div>
        <div className="field">
          <label htmlFor={`${id}-until`}>Until</label>
          <input id={`${id}-until`} name="until" type="datetime-local" />
        </div>
        <button type="submit">Filter</button>
      </form>
      {audit.error && (
        <p role="alert" className="error">
          {refusalSentence('read', audit.error)}
        </p>
      )}
      {audit.data && items.length === 0 && <p>No audit records match.</p>}
      {items.length > 0 && (
        <div className="table-wrap">
          <table>
            <caption className="visually-hidden">Audit records, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Resource</th>
                <th scope="col">Reason</th>
                <th scope="col">Request</th>
              </tr>
            </thead>
            <tbody>
              {items.map((r) => (
                <tr key={r.id}>
                  <td data-label="When">
                    <time dateTime={r.occurredAt.toISOString()}>{formatTime(r.occurredAt)}</time>
                  </td>
                  <td data-label="Who">
                    {r.actorKind === 'system' ? 'the system' : (userName.get(r.actorId ?? '') ?? r.actorId ?? '—')}
                  </td>
                  <td data-label="Action">
                    <code>{r.action}</code>
                  </td>
                  <td data-label="Resource">
                    {r.resourceType} {r.resourceId ? <code>{r.resourceId.slice(0, 8)}</code> : null}
                  </td>
                  <td data-label="Reason">{formatReason(r.buildReason)}</td>
                  <td data-label="Request">
                    {r.ipAddress ?? ''}{' '}
                    {r.requestId ? <code title={r.requestId}>{r.requestId.slice(0, 8)}</code> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {audit.hasNextPage && (
        <button type="button" onClick={() => void audit.fetchNextPage()} disabled={audit.isFetchingNextPage}>
          Older records
        </button>
      )}
    </section>
  );
}
