/** Recent pipeline runs of an app, newest first. */
import type { Run } from '../api.js';
import { elapsed, firstLine, formatRelative, formatTimestamp, shortSha } from '../format.js';
import { Link } from '../router.js';
import { StatusBadge } from './StatusBadge.js';

export function RunsTable({ runs, basePath, now }: { runs: Run[]; basePath: string; now: number }) {
  if (runs.length === 0) {
    return (
      <p className="muted">
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
          <th>Commit</th>
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
            data-run-number={run.number}
            data-status={run.status}
            data-commit={run.commit}
          >
            <td>
              <StatusBadge status={run.status} testId="run-status" />
            </td>
            <td>
              <Link to={`${basePath}/runs/${run.number}`} data-testid="run-link">
                #{run.number}
              </Link>
            </td>
            <td className="commit-cell">
              <code title={run.commit}>{shortSha(run.commit)}</code>{' '}
              <span className="commit-message">{firstLine(run.commitMessage)}</span>
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
