/** The selected job of a run: where it ran, its approval, and its steps with their timing. */
import type { Job } from '../api.js';
import { elapsed, formatTimestamp, matrixLabel } from '../format.js';
import { StatusBadge } from './StatusBadge.js';

export function JobDetail({ job, now }: { job: Job; now: number }) {
  const approval = job.environment?.approval;
  const runsOn = Array.isArray(job.runsOn) ? job.runsOn.join(', ') : job.runsOn;
  return (
    <aside className="job" data-testid="job" data-job={job.key} data-status={job.status}>
      <header className="job-head">
        <StatusBadge status={job.status} testId="job-status" />
        <span className="job-name" data-testid="job-name">
          {job.key}
        </span>
        <span className="duration">{elapsed(job.startedAt, job.finishedAt, now)}</span>
      </header>
      <dl className="job-facts">
        {job.matrix && (
          <>
            <dt>Matrix</dt>
            <dd>{matrixLabel(job.matrix)}</dd>
          </>
        )}
        {runsOn && (
          <>
            <dt>Runs on</dt>
            <dd>{runsOn}</dd>
          </>
        )}
        {job.environment && (
          <>
            <dt>Environment</dt>
            <dd>
              {job.environment.name}
              {approval && approval.status !== 'pending' && (
                <span className="approval-decision" data-testid="approval-decision">
                  {' '}
                  <StatusBadge status={approval.status} />
                  {approval.decidedBy && ` by ${approval.decidedBy}`}
                  {approval.comment && <q>{approval.comment}</q>}
                </span>
              )}
            </dd>
          </>
        )}
      </dl>
      <ol className="steps">
        {job.steps.length === 0 && <li className="muted">No steps started yet.</li>}
        {job.steps.map((step) => (
          <li
            key={step.index}
            className="step"
            data-testid="step"
            data-step={`${job.key}/${step.index}`}
            data-status={step.status}
            title={[
              step.kind !== 'run' ? step.kind : '',
              step.startedAt ? `started ${formatTimestamp(step.startedAt)}` : '',
              step.exitCode !== null ? `exit code ${step.exitCode}` : '',
            ]
              .filter(Boolean)
              .join(' · ')}
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
    </aside>
  );
}
