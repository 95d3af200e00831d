/** A run's title, what started it, and what can be done to it: cancel, or re-run all or failed jobs. */
import { useState } from 'react';
import { api, finishedRunStatuses, type Run } from '../api.js';
import {
  branchOf,
  elapsed,
  eventLabel,
  firstLine,
  formatTimestamp,
  shortSha,
  workflowLabel,
} from '../format.js';
import { Link, navigate } from '../router.js';
import { ErrorNote } from './ErrorNote.js';
import { runPath } from './RunsTable.js';
import { StatusBadge } from './StatusBadge.js';

const unsuccessfulJob = ['failed', 'cancelled'];

export function RunHeader({
  run,
  now,
  onChanged,
}: {
  run: Run;
  now: number;
  onChanged: () => void;
}) {
  const [busy, setBusy] = useState<'cancel' | 'rerun' | 'rerun-failed' | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const cancellable = run.status === 'queued' || run.status === 'running';
  const finished = finishedRunStatuses.includes(run.status);
  const someFailed = run.jobs.some((job) => unsuccessfulJob.includes(job.status));

  const act = async (what: NonNullable<typeof busy>) => {
    setBusy(what);
    setError(null);
    try {
      if (what === 'cancel') {
        await api.cancelRun(run.team, run.app, run.number);
        onChanged();
      } else {
        const next = await api.rerun(run.team, run.app, run.number, what === 'rerun-failed');
        navigate(runPath(next));
      }
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(null);
    }
  };

  const inputs = Object.entries(run.inputs ?? {});
  return (
    <section className="run-header">
      <div className="run-title-line">
        <h1 data-testid="run-title">Run #{run.number}</h1>
        <StatusBadge status={run.status} testId="run-status" />
        <span className="run-actions">
          {finished && (
            <button
              type="button"
              disabled={busy !== null}
              onClick={() => void act('rerun')}
              data-testid="run-rerun"
            >
              {busy === 'rerun' ? 'Starting…' : 'Re-run all jobs'}
            </button>
          )}
          {finished && someFailed && (
            <button
              type="button"
              disabled={busy !== null}
              onClick={() => void act('rerun-failed')}
              data-testid="run-rerun-failed"
            >
              {busy === 'rerun-failed' ? 'Starting…' : 'Re-run failed jobs'}
            </button>
          )}
          {cancellable && (
            <button
              type="button"
              className="button-danger"
              disabled={busy !== null}
              onClick={() => void act('cancel')}
              data-testid="run-cancel"
            >
              {busy === 'cancel' ? 'Cancelling…' : 'Cancel run'}
            </button>
          )}
        </span>
      </div>
      <ErrorNote error={error} testId="run-action-error" />
      <div className="run-meta">
        <span>
          <span className="meta-label">Workflow</span>
          <span title={run.workflow} data-testid="run-workflow">
            {workflowLabel(run.workflow)}
          </span>
        </span>
        <span>
          <span className="meta-label">Event</span>
          <span data-testid="run-event">{eventLabel(run.event)}</span>
          {run.rerunOf !== null && run.rerunOf !== undefined && (
            <>
              {' of '}
              <Link to={runPath({ ...run, number: run.rerunOf })} data-testid="run-rerun-of">
                #{run.rerunOf}
              </Link>
            </>
          )}
        </span>
        <span>
          <span className="meta-label">Commit</span>
          <code title={run.commit} data-testid="run-commit">
            {shortSha(run.commit)}
          </code>{' '}
          {firstLine(run.commitMessage)}
        </span>
        <span>
          <span className="meta-label">Ref</span>
          <code>{branchOf(run.ref)}</code>
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
        {inputs.length > 0 && (
          <span data-testid="run-inputs">
            <span className="meta-label">Inputs</span>
            {inputs.map(([name, value], i) => (
              <span key={name}>
                {i > 0 && ', '}
                {name}=
                <code>
                  {typeof value === 'string' && value !== '' ? value : JSON.stringify(value)}
                </code>
              </span>
            ))}
          </span>
        )}
      </div>
    </section>
  );
}
