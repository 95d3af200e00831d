import type { ScriptRequest, ScriptResult } from './executor.js';

export type StopReason = NonNullable<ScriptResult['stopped']>;

/** The exit code reported for a script that was killed (or never started because the job was cancelled). */
export const KILLED_EXIT_CODE = 128 + 9;

// setTimeout fires at once for delays above 2^31-1 ms; such a timeout is "never" in practice.
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `stop` once, when the request's timeout passes or its signal aborts (also when it is
 * already aborted: on the next tick, so the caller has started what `stop` kills).
 */
export function watchForStop(
  request: Pick<ScriptRequest, 'timeoutMs' | 'signal'>,
  stop: (reason: StopReason) => void,
): { readonly reason: StopReason | undefined; dispose(): void } {
  let reason: StopReason | undefined;
  const fire = (why: StopReason) => {
    if (reason) return;
    reason = why;
    dispose();
    stop(why);
  };
  const timer =
    request.timeoutMs < MAX_TIMER_MS
      ? setTimeout(() => fire('timeout'), Math.max(0, request.timeoutMs))
      : undefined;
  const onAbort = () => fire('cancelled');
  const dispose = () => {
    clearTimeout(timer);
    request.signal.removeEventListener('abort', onAbort);
  };
  if (request.signal.aborted) queueMicrotask(onAbort);
  else request.signal.addEventListener('abort', onAbort, { once: true });
  return {
    get reason() {
      return reason;
    },
    dispose,
  };
}
