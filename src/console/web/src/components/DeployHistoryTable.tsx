/**
 * An environment's history, newest first: every deploy-repo commit of its folder (deploy,
 * promote, rollback, a commit by hand) with the result of applying it, and the syncs no commit
 * asked for (manual sync, self-heal, prune, drift found). Earlier deploys offer a rollback.
 */
import type { DeployRecord } from '../api.js';
import { formatRelative, formatTimestamp, shortDigest, shortSha } from '../format.js';
import { Link } from '../router.js';
import type { HistoryEntry } from './deployView.js';
import { StatusBadge } from './StatusBadge.js';

export function DeployHistoryTable({
  entries,
  team,
  app,
  now,
  runOf,
  canRollBackTo,
  onRollback,
  busy,
}: {
  entries: HistoryEntry[];
  team: string;
  app: string;
  now: number;
  runOf: (commit: string) => number | null;
  /** Commits a rollback may return to; empty for who may not roll back. */
  canRollBackTo: Set<string>;
  onRollback: (deploy: DeployRecord) => void;
  busy: boolean;
}) {
  if (entries.length === 0) return <p className="muted">Nothing deployed yet.</p>;
  const actions = canRollBackTo.size > 0;
  return (
    <table className="deploy-history" data-testid="history-table">
      <thead>
        <tr>
          <th>Commit</th>
          <th>Trigger</th>
          <th>Version</th>
          <th>Source</th>
          <th>Author</th>
          <th>Result</th>
          <th>Time</th>
          {actions && <th />}
        </tr>
      </thead>
      <tbody>
        {entries.map((entry) => {
          const run = entry.sourceCommit ? runOf(entry.sourceCommit) : null;
          return (
            <tr
              key={entry.key}
              data-testid="history-row"
              data-commit={entry.commit}
              data-trigger={entry.trigger}
              data-digest={entry.deploy?.digest ?? ''}
              data-live={entry.live ? 'true' : 'false'}
              className={entry.live ? 'history-live' : undefined}
            >
              <td>
                <code title={entry.commit}>{shortSha(entry.commit)}</code>
                {entry.live && (
                  <span className="badge badge-good history-live-badge" title="What runs now">
                    live
                  </span>
                )}
              </td>
              <td>
                <span data-testid="history-trigger">{entry.trigger}</span>
                <TriggerDetail entry={entry} />
              </td>
              <td>
                {entry.image ? (
                  <code title={entry.image}>{shortDigest(entry.image)}</code>
                ) : (
                  <span className="muted">—</span>
                )}
              </td>
              <td>
                {!entry.sourceCommit ? (
                  <span className="muted">—</span>
                ) : run !== null ? (
                  <Link
                    to={`/apps/${team}/${app}/runs/${run}`}
                    title={`${entry.sourceCommit}, built by run #${run}`}
                  >
                    <code>{shortSha(entry.sourceCommit)}</code>
                  </Link>
                ) : (
                  <code title={entry.sourceCommit}>{shortSha(entry.sourceCommit)}</code>
                )}
              </td>
              <td>{entry.author ?? <span className="muted">—</span>}</td>
              <td title={entry.message ?? undefined}>
                {entry.result ? (
                  <StatusBadge status={entry.result} testId="history-result" />
                ) : (
                  <span className="muted">—</span>
                )}
                {entry.result === 'failed' && entry.message && (
                  <pre className="history-message">{entry.message}</pre>
                )}
              </td>
              <td title={formatTimestamp(entry.at)} className="history-time">
                {formatRelative(entry.at, now)}
              </td>
              {actions && (
                <td className="row-actions">
                  {entry.deploy && canRollBackTo.has(entry.commit) && (
                    <button
                      type="button"
                      className="button-small"
                      disabled={busy}
                      onClick={() => entry.deploy && onRollback(entry.deploy)}
                      data-testid="history-rollback"
                    >
                      Roll back to this
                    </button>
                  )}
                </td>
              )}
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** Where a promotion came from, which deploy a rollback returned to, who approved. */
function TriggerDetail({ entry }: { entry: HistoryEntry }) {
  const deploy = entry.deploy;
  if (!deploy) return null;
  const parts: string[] = [];
  if (deploy.promotedFrom) parts.push(`from ${deploy.promotedFrom.environment}`);
  if (deploy.rolledBackTo) parts.push(`to ${shortSha(deploy.rolledBackTo)}`);
  if (deploy.approvedBy) parts.push(`approved by ${deploy.approvedBy}`);
  return parts.length ? <span className="hint">{parts.join(', ')}</span> : null;
}
