/**
 * Desired (the deploy repo) against live for one environment: each resource with its file,
 * health and sync status, then every differing field side by side, and what a sync with
 * prune would delete. A manifest that cannot be read is shown as the reconciler said it.
 */
import type { EnvironmentDiff as Diff, DiffItem } from '../api.js';
import { formatFieldValue, shortSha } from '../format.js';
import { SyncBadge } from './DeployBadges.js';
import { StatusBadge } from './StatusBadge.js';

export function EnvironmentDiff({ diff }: { diff: Diff }) {
  return (
    <div className="env-diff" data-testid="env-diff" data-sync={diff.syncStatus}>
      <p className="diff-summary">
        <SyncBadge status={diff.syncStatus} testId="diff-sync" />{' '}
        <span className="muted">desired</span>{' '}
        <code title={diff.desiredCommit ?? ''}>{shortSha(diff.desiredCommit) || '—'}</code>{' '}
        <span className="muted">applied</span>{' '}
        <code title={diff.deployCommit ?? ''}>{shortSha(diff.deployCommit) || '—'}</code>
      </p>
      {diff.error && (
        <pre className="env-message env-message-error" role="alert" data-testid="diff-error">
          {diff.error}
        </pre>
      )}
      {diff.resources.length > 0 && (
        <table className="diff-resources" data-testid="diff-resources">
          <thead>
            <tr>
              <th>Resource</th>
              <th>File</th>
              <th>Health</th>
              <th>Status</th>
            </tr>
          </thead>
          <tbody>
            {diff.resources.map((resource) => (
              <tr
                key={resource.resource}
                data-testid="diff-resource"
                data-resource={resource.resource}
                data-status={resource.status}
              >
                <td>
                  <code>{resource.resource}</code>
                </td>
                <td>
                  <code>
                    {resource.file}:{resource.line}
                  </code>
                </td>
                <td>
                  <StatusBadge status={resource.health} />
                </td>
                <td>
                  <SyncBadge status={resource.status} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {diff.items.length === 0 && !diff.error ? (
        <p className="muted" data-testid="diff-none">
          No differences: what runs matches the deploy repo.
        </p>
      ) : (
        diff.items.length > 0 && (
          <table className="diff-items" data-testid="diff-items">
            <thead>
              <tr>
                <th>Field</th>
                <th>Desired</th>
                <th>Live</th>
              </tr>
            </thead>
            {byResource(diff.items).map(([resource, items]) => {
              const found = diff.resources.find((r) => r.resource === resource);
              const prune = items.some((item) => item.prune);
              return (
                <tbody key={resource} data-testid="diff-group" data-resource={resource}>
                  <tr className="diff-group-head">
                    <th colSpan={3}>
                      <code>{resource}</code>
                      {found && (
                        <span className="muted">
                          {' '}
                          {found.file}:{found.line}
                        </span>
                      )}
                      {prune && (
                        <span className="badge badge-bad diff-prune" title="A sync deletes it">
                          prune
                        </span>
                      )}
                    </th>
                  </tr>
                  {items.map((item) => (
                    <tr
                      key={item.path}
                      data-testid="diff-item"
                      data-resource={item.resource}
                      data-path={item.path}
                      data-prune={item.prune ? 'true' : 'false'}
                    >
                      <td className="diff-path">
                        {item.path ? <code>{item.path}</code> : <em>whole resource</em>}
                      </td>
                      <DiffValue item={item} side="desired" />
                      <DiffValue item={item} side="live" />
                    </tr>
                  ))}
                </tbody>
              );
            })}
          </table>
        )
      )}
      {diff.drift.length > 0 && (
        <div className="env-drift" data-testid="diff-drift">
          <strong>Drift</strong>
          <ul>
            {diff.drift.map((line) => (
              <li key={line}>{line}</li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

/** Items grouped by resource, in the order the resources first appear. */
function byResource(items: DiffItem[]): [string, DiffItem[]][] {
  const groups = new Map<string, DiffItem[]>();
  for (const item of items) {
    const group = groups.get(item.resource);
    if (group) group.push(item);
    else groups.set(item.resource, [item]);
  }
  return [...groups];
}

function DiffValue({ item, side }: { item: DiffItem; side: 'desired' | 'live' }) {
  const value = item[side];
  if (value === null || value === undefined) {
    return (
      <td className="diff-absent muted">
        {side === 'desired' ? (item.prune ? 'not in the repo' : 'absent') : 'not live yet'}
      </td>
    );
  }
  return (
    <td className={`diff-value diff-${side}`}>
      <pre>{formatFieldValue(value)}</pre>
    </td>
  );
}
