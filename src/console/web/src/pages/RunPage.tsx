/** One pipeline run: its jobs and steps as they progress, its live log, and a way to stop it. */
import { useState } from 'react';
import { api, finishedRunStatuses, type Run } from '../api.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { LogView } from '../components/LogView.js';
import { StatusBadge } from '../components/StatusBadge.js';
import { elapsed, firstLine, formatTimestamp, shortSha } from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';

export function RunPage({ team, name, number }: { team: string; name: string; number: number }) {
  const [streamEnded, setStreamEnded] = useState(false);
  const [finished, setFinished] = useState(false);
  // Poll until the run or its log says it is over; stopping triggers one last, final fetch.
  const polled = usePoll(
    `${team}/${name}/${number}`,
    () => api.run(team, name, number),
    !streamEnded && !finished,
  );
  const run = polled.data;
  const runFinished = run ? finishedRunStatuses.includes(run.status) : false;
  if (runFinished !== finished) setFinished(runFinished);
  const now = useNow(!runFinished);
  const appPath = `/apps/${team}/${name}`;

  const onEnd = () => {
    setStreamEnded(true);
    polled.reload();
  };

  return (
    <main className="page">
      <nav className="breadcrumbs">
        <Link to="/apps">Apps</Link> / <span>{team}</span> /{' '}
        <Link to={appPath} data-testid="run-app-link">
          {name}
        </Link>{' '}
        / <span>run #{number}</span>
      </nav>
      {!run ? (
        polled.error ? (
          <ErrorNote error={polled.error} />
        ) : (
          <p className="muted">Loading…</p>
        )
      ) : (
        <>
          <RunHeader run={run} now={now} onCancelled={polled.reload} />
          <ErrorNote error={polled.error} />
          {run.error && (
            <p className="error-note" data-testid="run-error">
              {run.error}
            </p>
          )}
          <div className="run-layout">
            <JobsPanel run={run} now={now} />
            <LogView
              team={team}
              app={name}
              run={number}
              stepLabel={(step) => stepLabel(run, step)}
              onEnd={onEnd}
            />
          </div>
        </>
      )}
    </main>
  );
}

function RunHeader({ run, now, onCancelled }: { run: Run; now: number; onCancelled: () => void }) {
  const [cancelling, setCancelling] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const cancellable = run.status === 'queued' || run.status === 'running';

  const cancel = async () => {
    setCancelling(true);
    setError(null);
    try {
      await api.cancelRun(run.team, run.app, run.number);
      onCancelled();
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setCancelling(false);
    }
  };

  return (
    <section className="run-header">
      <div className="run-title-line">
        <h1 data-testid="run-title">Run #{run.number}</h1>
        <StatusBadge status={run.status} testId="run-status" />
        {cancellable && (
          <button
            type="button"
            className="button-danger"
            disabled={cancelling}
            onClick={() => void cancel()}
            data-testid="run-cancel"
          >
            {cancelling ? 'Cancelling…' : 'Cancel run'}
          </button>
        )}
      </div>
      <ErrorNote error={error} />
      <div className="run-meta">
        <span>
          <span className="meta-label">Commit</span>
          <code title={run.commit} data-testid="run-commit">
            {shortSha(run.commit)}
          </code>{' '}
          {firstLine(run.commitMessage)}
        </span>
        <span>
          <span className="meta-label">Ref</span>
          <code>{run.ref}</code>
        </span>
        <span>
          <span className="meta-label">By</span>
          {run.actor ?? '—'} <span className="muted">({run.trigger})</span>
        </span>
        <span>
          <span className="meta-label">Started</span>
          {formatTimestamp(run.startedAt ?? run.createdAt)}
        </span>
        <span>
          <span className="meta-label">Duration</span>
          <span data-testid="run-duration">
            {elapsed(run.startedAt, run.finishedAt, now) || '—'}
          </span>
        </span>
      </div>
    </section>
  );
}

function JobsPanel({ run, now }: { run: Run; now: number }) {
  return (
    <aside className="jobs">
      {run.jobs.length === 0 && <p className="muted">Planning…</p>}
      {run.jobs.map((job) => {
        const starts = job.steps.map((s) => s.startedAt).filter((t): t is string => !!t);
        const ends = job.steps.map((s) => s.finishedAt);
        const jobDone = job.steps.length > 0 && ends.every((t) => !!t);
        const first = starts.sort()[0] ?? null;
        const last = jobDone ? ([...ends].sort().pop() ?? null) : null;
        return (
          <section
            key={job.id}
            className="job"
            data-testid="job"
            data-job={job.name}
            data-status={job.status}
          >
            <header className="job-head">
              <StatusBadge status={job.status} />
              <span className="job-name">{job.name}</span>
              <span className="duration">{elapsed(first, last, now)}</span>
            </header>
            <ol className="steps">
              {job.steps.map((step) => (
                <li
                  key={step.index}
                  className="step"
                  data-testid="step"
                  data-status={step.status}
                  title={step.exitCode !== null ? `exit code ${step.exitCode}` : undefined}
                >
                  <StatusBadge status={step.status} />
                  <span className="step-name">{step.name}</span>
                  {step.exitCode !== null && step.exitCode !== 0 && (
                    <span className="exit-code">exit {step.exitCode}</span>
                  )}
                  <span className="duration">{elapsed(step.startedAt, step.finishedAt, now)}</span>
                </li>
              ))}
            </ol>
          </section>
        );
      })}
    </aside>
  );
}

/** "build/2" -> "build › Run tests", from the run's own job and step names. */
function stepLabel(run: Run, step: string): string {
  const slash = step.lastIndexOf('/');
  const jobName = step.slice(0, slash);
  const index = Number(step.slice(slash + 1));
  const job = run.jobs.find((j) => j.name === jobName || j.id === jobName);
  const found = job?.steps.find((s) => s.index === index);
  return found ? `${job?.name} › ${found.name}` : step;
}
