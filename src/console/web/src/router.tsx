/**
 * A tiny history router: the current location as React state, `navigate`, `<Link>` and
 * `matchPath`. The server answers every console path with index.html (src/console/routes.ts),
 * so these URLs survive reloads and can be shared.
 */
import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

const NAVIGATE = 'valve:navigate';

function subscribe(onChange: () => void) {
  window.addEventListener('popstate', onChange);
  window.addEventListener(NAVIGATE, onChange);
  return () => {
    window.removeEventListener('popstate', onChange);
    window.removeEventListener(NAVIGATE, onChange);
  };
}

const currentLocation = () => window.location.pathname + window.location.search;

/** The current path and query, e.g. "/apps/dev/hello?tab=runs". */
export function useLocation(): string {
  return useSyncExternalStore(subscribe, currentLocation);
}

export function navigate(to: string, options: { replace?: boolean } = {}) {
  if (to === currentLocation()) return;
  if (options.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  window.scrollTo(0, 0);
  window.dispatchEvent(new Event(NAVIGATE));
}

/** Only same-console paths, so a crafted `?next=` cannot send a user elsewhere. */
export function safeLocalPath(path: string | null | undefined, fallback: string): string {
  return path && path.startsWith('/') && !path.startsWith('//') && !path.startsWith('/\\')
    ? path
    : fallback;
}

type LinkProps = Omit<AnchorHTMLAttributes<HTMLAnchorElement>, 'href'> & { to: string };

export function Link({ to, onClick, ...props }: LinkProps) {
  const follow = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    // Leave new-tab, new-window and download clicks to the browser.
    if (
      event.defaultPrevented ||
      event.button !== 0 ||
      event.metaKey ||
      event.ctrlKey ||
      event.shiftKey ||
      event.altKey
    ) {
      return;
    }
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={follow} {...props} />;
}

/**
 * Matches "/apps/:team/:app" against a pathname; returns the decoded parameters or null.
 */
export function matchPath(pattern: string, pathname: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const have = pathname.split('/').filter(Boolean);
  if (want.length !== have.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const part = want[i] as string;
    const value = have[i] as string;
    if (part.startsWith(':')) {
      try {
        params[part.slice(1)] = decodeURIComponent(value);
      } catch {
        return null;
      }
    } else if (part !== value) {
      return null;
    }
  }
  return params;
}

/** The current query parameters, e.g. `?status=failed` -> {status: "failed"}. */
export function useQuery(): URLSearchParams {
  const location = useLocation();
  const at = location.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : location.slice(at));
}

/**
 * Changes some query parameters of the current page (empty values are removed), keeping the
 * others; replaces the history entry, so typing in a filter does not fill the back button.
 */
export function updateQuery(changes: Record<string, string | null | undefined>) {
  const query = new URLSearchParams(window.location.search);
  for (const [name, value] of Object.entries(changes)) {
    if (value) query.set(name, value);
    else query.delete(name);
  }
  const search = query.toString();
  const to = window.location.pathname + (search ? `?${search}` : '');
  if (to === currentLocation()) return;
  window.history.replaceState(null, '', to);
  window.dispatchEvent(new Event(NAVIGATE));
}
