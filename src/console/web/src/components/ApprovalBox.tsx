/**
 * A job that deploys to a protected environment waits here until a member of the approving
 * team approves or rejects it (with an optional comment), or the request expires.
 */
import { api, type Job, type Run } from '../api.js';
import { formatRelative, formatTimestamp } from '../format.js';
import { DecisionForm, type Decision } from './DecisionForm.js';

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
  const environment = job.environment;
  const approval = environment?.approval;
  if (!environment || !approval) return null;

  const decide = async (decision: Decision, comment: string) => {
    await api.decideApproval(run.team, run.app, run.number, job.key, { decision, comment });
    onDecided();
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
      <DecisionForm testIdPrefix="approval" onDecide={decide} />
    </section>
  );
}

function untilLabel(ms: number): string {
  const minutes = Math.ceil(ms / 60_000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} days`;
}
