/** One environment of an app: health, what is deployed from which commit, where, and its instances. */
import type { Environment } from '../api.js';
import { formatRelative, formatTimestamp, shortDigest, shortSha } from '../format.js';
import { StatusBadge } from './StatusBadge.js';

export function EnvironmentCard({ env, now }: { env: Environment; now: number }) {
  return (
    <article
      className="card env-card"
      data-testid="env-card"
      data-env={env.name}
      data-health={env.health}
      data-source-commit={env.sourceCommit ?? ''}
    >
      <header className="env-card-head">
        <h3>{env.name}</h3>
        <StatusBadge status={env.health} testId="env-health" />
      </header>
      <dl className="facts">
        <dt>URL</dt>
        <dd>
          {env.url ? (
            <a href={env.url} target="_blank" rel="noreferrer" data-testid="env-url">
              {env.url}
            </a>
          ) : (
            <span className="muted">no address yet</span>
          )}
        </dd>
        <dt>Image</dt>
        <dd>
          {env.image ? (
            <code title={env.image} data-testid="env-image">
              {shortDigest(env.image)}
            </code>
          ) : (
            <span className="muted">not deployed yet</span>
          )}
        </dd>
        <dt>Source commit</dt>
        <dd>
          {env.sourceCommit ? (
            <code title={env.sourceCommit} data-testid="env-commit">
              {shortSha(env.sourceCommit)}
            </code>
          ) : (
            <span className="muted">—</span>
          )}
        </dd>
        <dt>Deployed</dt>
        <dd title={formatTimestamp(env.deployedAt)} data-testid="env-deployed-at">
          {env.deployedAt ? formatRelative(env.deployedAt, now) : <span className="muted">—</span>}
          {env.deployCommit && (
            <span className="muted" title={env.deployCommit}>
              {' '}
              (deploy commit {shortSha(env.deployCommit)})
            </span>
          )}
        </dd>
      </dl>
      {env.message && (
        <p
          className={env.health === 'degraded' ? 'error-note' : 'info-note'}
          data-testid="env-message"
        >
          {env.message}
        </p>
      )}
      <table className="instances" data-testid="env-instances">
        <thead>
          <tr>
            <th>Instance</th>
            <th>Ready</th>
            <th>PID</th>
            <th>Port</th>
            <th>Image</th>
            <th>Started</th>
          </tr>
        </thead>
        <tbody>
          {env.instances.length === 0 && (
            <tr>
              <td colSpan={6} className="muted">
                No instances running.
              </td>
            </tr>
          )}
          {env.instances.map((instance) => (
            <tr key={instance.id} data-testid="env-instance">
              <td>
                <code>{instance.id}</code>
              </td>
              <td>
                <StatusBadge status={instance.healthy ? 'healthy' : 'progressing'} />
              </td>
              <td>{instance.pid || '—'}</td>
              <td>{instance.port || '—'}</td>
              <td>
                <code title={instance.image}>{shortDigest(instance.image)}</code>
              </td>
              <td title={formatTimestamp(instance.startedAt)}>
                {formatRelative(instance.startedAt, now)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </article>
  );
}
