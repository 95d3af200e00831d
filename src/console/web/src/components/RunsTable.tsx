/** Pipeline runs, newest first: of one app, or (with `showApp`) across the caller's apps. */
import type { Run } from '../api.js';
import {
  branchOf,
  elapsed,
  eventLabel,
  firstLine,
  formatRelative,
  formatTimestamp,
  shortSha,
  workflowLabel,
} from '../format.js';
import { Link } from '../router.js';
import { StatusBadge } from './StatusBadge.js';

export const runPath = (run: Pick<Run, 'team' | 'app' | 'number'>) =>
  `/apps/${run.team}/${run.app}/runs/${run.number}`;

export function RunsTable({
  runs,
  now,
  showApp = false,
  filtered = false,
}: {
  runs: Run[];
  now: number;
  showApp?: boolean;
  /** Filters are applied: an empty list says so rather than "no runs yet". */
  filtered?: boolean;
}) {
  if (runs.length === 0) {
    return filtered ? (
      <p className="muted" data-testid="runs-empty">
        No runs match these filters.
      </p>
    ) : (
      <p className="muted" data-testid="runs-empty">
        No runs yet. Push to <code>main</code> to start one.
      </p>
    );
  }
  return (
    <table className="runs" data-testid="runs-table">
      <thead>
        <tr>
          <th>Status</th>
          <th>Run</th>
          {showApp && <th>App</th>}
          <th>Workflow</th>
          <th>Commit</th>
          <th>Event</th>
          <th>Actor</th>
          <th>Duration</th>
          <th>Started</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((run) => (
          <tr
            key={run.id}
            data-testid="run-row"
            data-app={`${run.team}/${run.app}`}
            data-run-number={run.number}
            data-status={run.status}
            data-event={run.event}
            data-commit={run.commit}
          >
            <td>
              <StatusBadge status={run.status} testId="run-status" />
            </td>
            <td>
              <Link to={runPath(run)} data-testid="run-link">
                #{run.number}
              </Link>
            </td>
            {showApp && (
              <td>
                <Link to={`/apps/${run.team}/${run.app}`} data-testid="run-app">
                  <span className="muted">{run.team}/</span>
                  {run.app}
                </Link>
              </td>
            )}
            <td title={run.workflow}>{workflowLabel(run.workflow)}</td>
            <td className="commit-cell">
              <code title={run.commit}>{shortSha(run.commit)}</code>{' '}
              <span className="muted">{branchOf(run.ref)}</span>{' '}
              <span className="commit-message">{firstLine(run.commitMessage)}</span>
            </td>
            <td>
              {eventLabel(run.event)}
              {run.rerunOf !== null && run.rerunOf !== undefined && (
                <span className="muted"> of #{run.rerunOf}</span>
              )}
            </td>
            <td>{run.actor ?? <span className="muted">{run.trigger}</span>}</td>
            <td>{elapsed(run.startedAt, run.finishedAt, now)}</td>
            <td title={formatTimestamp(run.createdAt)}>{formatRelative(run.createdAt, now)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
