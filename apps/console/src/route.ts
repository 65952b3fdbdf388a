import { useSyncExternalStore } from 'react';

/** The console's pages, from the address: the server answers index.html for every one of them. */
export type Route =
  | { page: 'tasks'; status: string | null }
  | { page: 'task'; id: string }
  | { page: 'audit' }
  | { page: 'telemetry' }
  | { page: 'not-found'; path: string };

function parseRoute(location: Pick<Location, 'pathname' | 'search'>): Route {
  const path = location.pathname.replace(/\/+$/, '') || '/';
  if (path === '/' || path === '/tasks') {
    return { page: 'tasks', status: new URLSearchParams(location.search).get('status') };
  }
  const task = /^\/tasks\/([^/]+)$/.exec(path);
  if (task?.[1]) return { page: 'task', id: decodeURIComponent(task[1]) };
  if (path === '/audit') return { page: 'audit' };
  if (path === '/telemetry') return { page: 'telemetry' };
  return { page: 'not-found', path };
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => {
  for (const listener of listeners) listener();
});

/** Goes to `href` without reloading the page. */
export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) window.history.replaceState(null, '', href);
  else window.history.pushState(null, '', href);
  for (const listener of listeners) listener();
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

const currentHref = (): string => window.location.pathname + window.location.search;

/** The current route; re-renders on navigation and on the browser's back and forward. */
export function useRoute(): Route {
  const href = useSyncExternalStore(subscribe, currentHref);
  const url = new URL(href, window.location.origin);
  return parseRoute(url);
}
