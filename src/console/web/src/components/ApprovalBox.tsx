/**
 * A job that deploys to a protected environment waits here until a member of the approving
 * team approves or rejects it (with an optional comment), or the request expires.
 */
import { useState } from 'react';
import { api, type Job, type Run } from '../api.js';
import { formatRelative, formatTimestamp } from '../format.js';
import { ErrorNote } from './ErrorNote.js';

export function ApprovalBox({
  run,
  job,
  now,
  onDecided,
}: {
  run: Run;
  job: Job;
  now: number;
  onDecided: () => void;
}) {
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState<'approve' | 'reject' | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const environment = job.environment;
  const approval = environment?.approval;
  if (!environment || !approval) return null;

  const decide = async (decision: 'approve' | 'reject') => {
    setBusy(decision);
    setError(null);
    try {
      await api.decideApproval(run.team, run.app, run.number, job.key, {
        decision,
        comment: comment.trim(),
      });
      onDecided();
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(null);
    }
  };

  const expiresAt = Date.parse(approval.expiresAt);
  return (
    <section
      className="approval"
      data-testid="approval"
      data-job={job.key}
      data-environment={environment.name}
      data-status={approval.status}
    >
      <h3>
        <span className="muted">{job.key}</span> waits for approval to deploy to{' '}
        <strong data-testid="approval-environment">{environment.name}</strong>
      </h3>
      <dl className="facts">
        <dt>Approving team</dt>
        <dd data-testid="approval-team">{approval.team}</dd>
        <dt>Requested</dt>
        <dd title={formatTimestamp(approval.requestedAt)}>
          {formatRelative(approval.requestedAt, now)}
        </dd>
        <dt>Expires</dt>
        <dd data-testid="approval-expires">
          {formatTimestamp(approval.expiresAt)}
          {expiresAt > now && <span className="muted"> (in {untilLabel(expiresAt - now)})</span>}
        </dd>
      </dl>
      <label>
        Comment
        <textarea
          rows={2}
          value={comment}
          placeholder="Optional: why"
          onChange={(event) => setComment(event.target.value)}
          data-testid="approval-comment"
        />
      </label>
      <div className="button-row">
        <button
          type="button"
          className="button-primary"
          disabled={busy !== null}
          onClick={() => void decide('approve')}
          data-testid="approval-approve"
        >
          {busy === 'approve' ? 'Approving…' : 'Approve'}
        </button>
        <button
          type="button"
          className="button-danger"
          disabled={busy !== null}
          onClick={() => void decide('reject')}
          data-testid="approval-reject"
        >
          {busy === 'reject' ? 'Rejecting…' : 'Reject'}
        </button>
      </div>
      <ErrorNote error={error} testId="approval-error" />
    </section>
  );
}

function untilLabel(ms: number): string {
  const minutes = Math.ceil(ms / 60_000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
}
