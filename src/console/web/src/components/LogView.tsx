/**
 * A run's log, live: `EventSource(.../logs?follow=1)` replays every line so far and then each
 * new one (`line` events), then says `end` when the run is finished. Lines are numbered as the
 * server numbers them, grouped under the step that wrote them, and the view follows the
 * newest line unless the reader scrolled up. The stream carries every job's lines; with `job`
 * set, only that job's lines (and the run's own, of no step) are shown.
 */
import { Fragment, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';
import { api, runLogsPath, type LogLine } from '../api.js';
import { stripAnsi } from '../format.js';

// Lines arriving close together are rendered together, not one React update per line.
const FLUSH_DELAY_MS = 40;
// How near the bottom still counts as "at the bottom" (the reader did not scroll up).
const STICKY_SLACK_PX = 32;

export function LogView({
  team,
  app,
  run,
  job = null,
  stepLabel,
  onEnd,
}: {
  team: string;
  app: string;
  run: number;
  /** Show only this job's lines (a job key); null shows every job's. */
  job?: string | null;
  /** "build/0" -> "build › Install"; falls back to the raw step id. */
  stepLabel: (step: string) => string;
  /** Called with the final status once the stream says the run is finished. */
  onEnd: (status: string) => void;
}) {
  const [allLines, setLines] = useState<LogLine[]>([]);
  const lines = useMemo(
    () =>
      job === null
        ? allLines
        : allLines.filter((l) => l.step === null || jobOfStep(l.step) === job),
    [allLines, job],
  );
  const [ended, setEnded] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [following, setFollowing] = useState(true);
  const viewRef = useRef<HTMLDivElement>(null);
  const followingRef = useRef(true);
  const onEndRef = useRef(onEnd);
  onEndRef.current = onEnd;

  useEffect(() => {
    setLines([]);
    setEnded(null);
    setProblem(null);
    let lastN = 0;
    let pending: LogLine[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      if (pending.length === 0) return;
      const batch = pending;
      pending = [];
      setLines((previous) => previous.concat(batch));
    };
    const accept = (line: LogLine) => {
      // A reconnect replays the stream from line 1: keep each line once.
      if (line.n <= lastN) return;
      lastN = line.n;
      pending.push(line);
      timer ??= setTimeout(flush, FLUSH_DELAY_MS);
    };

    const source = new EventSource(`${runLogsPath(team, app, run)}?follow=1`);
    source.addEventListener('open', () => setProblem(null));
    source.addEventListener('line', (event) => {
      accept(JSON.parse((event as MessageEvent<string>).data) as LogLine);
    });
    source.addEventListener('end', (event) => {
      // Close first: otherwise EventSource reconnects when the server ends the response.
      source.close();
      if (timer !== undefined) clearTimeout(timer);
      flush();
      const { status } = JSON.parse((event as MessageEvent<string>).data) as { status: string };
      setEnded(status);
      onEndRef.current(status);
    });
    source.addEventListener('error', () => {
      if (source.readyState === EventSource.CONNECTING) {
        setProblem('Connection lost, reconnecting…');
        return;
      }
      // Refused for good (signed out, no such run): the plain request says why.
      api.runLogs(team, app, run).then(
        (all) => {
          all.forEach(accept);
          flush();
          setProblem('Live log stream unavailable; showing the lines so far.');
        },
        (failure: Error) => setProblem(failure.message),
      );
    });

    return () => {
      source.close();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [team, app, run]);

  // Another job's lines: start at their end, following again.
  useLayoutEffect(() => {
    followingRef.current = true;
    setFollowing(true);
  }, [job]);

  useLayoutEffect(() => {
    const view = viewRef.current;
    if (view && followingRef.current) view.scrollTop = view.scrollHeight;
  }, [lines]);

  const onScroll = () => {
    const view = viewRef.current;
    if (!view) return;
    const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight <= STICKY_SLACK_PX;
    followingRef.current = atBottom;
    setFollowing(atBottom);
  };

  const jumpToEnd = () => {
    const view = viewRef.current;
    if (!view) return;
    followingRef.current = true;
    setFollowing(true);
    view.scrollTop = view.scrollHeight;
  };

  return (
    <div className="log-panel">
      <div
        className="log-view"
        ref={viewRef}
        onScroll={onScroll}
        data-testid="log-view"
        data-job={job ?? ''}
      >
        {lines.length === 0 && !ended && <div className="log-placeholder">Waiting for output…</div>}
        {lines.map((line, i) => {
          // A heading wherever the writer changes; lines of no step (the runner's own) after a
          // step's lines get one too, so they do not read as that step's output.
          const previous = i > 0 ? lines[i - 1] : undefined;
          const startsGroup = previous ? line.step !== previous.step : line.step !== null;
          return (
            <Fragment key={line.n}>
              {startsGroup && (
                <div className="log-step" data-step={line.step ?? ''}>
                  {line.step === null ? 'run' : stepLabel(line.step)}
                </div>
              )}
              <div
                className="log-line"
                data-testid="log-line"
                data-n={line.n}
                data-step={line.step ?? ''}
              >
                <span className="log-n" data-testid="log-line-number">
                  {line.n}
                </span>
                <span className="log-text" data-testid="log-text">
                  {stripAnsi(line.text)}
                </span>
              </div>
            </Fragment>
          );
        })}
        {ended && (
          <div className="log-end" data-testid="log-end" data-status={ended}>
            Run {ended}.
          </div>
        )}
      </div>
      <div className="log-footer">
        <span className="muted">
          {lines.length} {lines.length === 1 ? 'line' : 'lines'}
          {!ended && !problem && ' · live'}
        </span>
        {problem && <span className="warn-text">{problem}</span>}
        {!following && (
          <button type="button" className="button-small" onClick={jumpToEnd}>
            Follow latest
          </button>
        )}
      </div>
    </div>
  );
}

/** "test (node 20)/3" -> "test (node 20)": the job key is all before the last slash. */
export function jobOfStep(step: string): string {
  const slash = step.lastIndexOf('/');
  return slash < 0 ? step : step.slice(0, slash);
}
