import { QueryClientProvider, useQuery } from '@tanstack/react-query';
import { type ReactElement, useEffect, useMemo, useRef, useState } from 'react';
import { createApiClient, createQueryClient, errorCode, TRPCProvider, useTRPC } from './api.ts';
import { Link } from './link.tsx';
import { AuditPage } from './pages/AuditPage.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { TaskPage } from './pages/TaskPage.tsx';
import { TasksPage } from './pages/TasksPage.tsx';
import { TelemetryPage } from './pages/TelemetryPage.tsx';
import { refusalSentence } from './refusals.ts';
import { useRoute } from './route.ts';
import { forgetKey, storedKey, storeKey } from './session.ts';
import type { Me } from './types.ts';

/** The console: a sign-in form until a key is given, then the pages that key may use. */
export function App(): ReactElement {
  const [token, setToken] = useState<string | null>(() => storedKey());
  const signOut = (): void => {
    forgetKey();
    setToken(null);
  };
  if (!token) {
    return (
      <SignIn
        onKey={(key) => {
          storeKey(key);
          setToken(key);
        }}
      />
    );
  }
  return <SignedIn key={token} token={token} onSignOut={signOut} />;
}

function SignedIn({ token, onSignOut }: { token: string; onSignOut: () => void }): ReactElement {
  const queryClient = useMemo(() => createQueryClient(), []);
  const trpcClient = useMemo(() => createApiClient(token), [token]);
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        <Shell onSignOut={onSignOut} />
      </TRPCProvider>
    </QueryClientProvider>
  );
}

function Shell({ onSignOut }: { onSignOut: () => void }): ReactElement {
  const trpc = useTRPC();
  const me = useQuery(trpc.me.queryOptions(undefined, { staleTime: 60_000 }));
  const route = useRoute();
  const unauthorized = errorCode(me.error) === 'UNAUTHORIZED';
  // After moving to another page, focus goes to the page's content, as a full page load would put it at the top.
  const href = route.page === 'task' ? `task/${route.id}` : route.page;
  const shownHref = useRef(href);
  useEffect(() => {
    if (shownHref.current === href) return;
    shownHref.current = href;
    document.getElementById('main')?.focus();
  }, [href]);
  useEffect(() => {
    if (unauthorized) onSignOut();
  }, [unauthorized, onSignOut]);

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <Link href="/" className="brand">
          Hiatus
        </Link>
        <nav aria-label="Main">
          <ul>
            <li>
              <Link href="/" aria-current={route.page === 'tasks' ? 'page' : undefined}>
                Tasks
              </Link>
            </li>
            {me.data?.role === 'admin' && (
              <>
                <li>
                  <Link href="/audit" aria-current={route.page === 'audit' ? 'page' : undefined}>
                    Audit log
                  </Link>
                </li>
                <li>
                  <Link href="/telemetry" aria-current={route.page === 'telemetry' ? 'page' : undefined}>
                    Telemetry
                  </Link>
                </li>
              </>
            )}
          </ul>
        </nav>
        <div className="who">
          {me.data && (
            <span>
              {me.data.username} <span className="badge">{me.data.role}</span>{' '}
              <span className="badge">{me.data.scope} key</span>
            </span>
          )}
          <button type="button" onClick={onSignOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {me.error && !unauthorized && (
          <p role="alert" className="error">
            {refusalSentence('read', me.error)}
          </p>
        )}
        {me.data && <Page me={me.data} />}
        {me.isPending && <p aria-live="polite">Loading…</p>}
      </main>
    </>
  );
}

function Page({ me }: { me: Me }): ReactElement {
  const route = useRoute();
  switch (route.page) {
    case 'tasks':
      return <TasksPage me={me} status={route.status} />;
    case 'task':
      return <TaskPage me={me} id={route.id} />;
    case 'audit':
      return me.role === 'admin' ? <AuditPage /> : <NotForYou />;
    case 'telemetry':
      return me.role === 'admin' ? <TelemetryPage /> : <NotForYou />;
    case 'not-found':
      return (
        <section aria-labelledby="nf">
          <h1 id="nf">No such page</h1>
          <p>
            There is nothing at <code>{route.path}</code>. <Link href="/">See the tasks</Link>.
          </p>
        </section>
      );
  }
}

function NotForYou(): ReactElement {
  return (
    <section aria-labelledby="nfy">
      <h1 id="nfy">Admins only</h1>
      <p>This page is for admins; your key belongs to a member.</p>
    </section>
  );
}
