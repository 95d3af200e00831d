/** Live data for the console: poll an API call, and a ticking clock for running durations. */
import { useCallback, useEffect, useRef, useState } from 'react';

export const POLL_INTERVAL_MS = 2000;

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  /** Fetch again now, e.g. after an action changed the data. */
  reload: () => void;
}

/**
 * Calls `load` now and then every POLL_INTERVAL_MS after the previous call finished (never two
 * at once), while `active`; restarts when `key` changes. Hidden tabs skip their turns and
 * catch up as soon as they are shown again.
 */
export function usePoll<T>(key: string, load: () => Promise<T>, active = true): Polled<T> {
  const [state, setState] = useState<{ key: string; data?: T; error?: Error }>({ key });
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      timer = undefined;
      if (!document.hidden) {
        try {
          const data = await loadRef.current();
          if (!stopped) setState({ key, data });
        } catch (error) {
          if (!stopped) setState((previous) => ({ ...previous, key, error: error as Error }));
        }
      }
      if (!stopped && active) timer = setTimeout(tick, POLL_INTERVAL_MS);
    };
    const onVisible = () => {
      if (!document.hidden && timer !== undefined) {
        clearTimeout(timer);
        void tick();
      }
    };
    void tick();
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [key, active, generation]);

  const reload = useCallback(() => setGeneration((n) => n + 1), []);
  // Data of a previous key (another app, another run) is never shown for the new one.
  const current = state.key === key ? state : { key };
  return { data: current.data, error: current.error, reload };
}

/** The current time, refreshed every second while `active` (for "running for 12s"). */
export function useNow(active = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [active]);
  return active ? now : Date.now();
}
