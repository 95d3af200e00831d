/**
 * One environment of an app: health and sync status, whether changes to it wait for an
 * approving team (and one waits now), the version it runs (digest, and the source commit with
 * the run that built it), where and on which target, its instances, a
 * canary or blue-green rollout under way, drift, and the last message as the reconciler wrote
 * it (a broken manifest's file:line:column stays verbatim).
 */
import type { Environment } from '../api.js';
import { formatRelative, formatTimestamp, shortDigest, shortSha } from '../format.js';
import { Link } from '../router.js';
import { ApprovalBadge, InstanceStateBadge, SyncBadge } from './DeployBadges.js';
import { rolloutActive } from './deployView.js';
import { RolloutProgress } from './RolloutProgress.js';
import { StatusBadge } from './StatusBadge.js';

export const environmentPath = (team: string, app: string, env: string) =>
  `/apps/${team}/${app}/environments/${env}`;

export function EnvironmentCard({
  env,
  team,
  app,
  now,
  runOf,
  linkToPage = true,
}: {
  env: Environment;
  team: string;
  app: string;
  now: number;
  /** The run that built a source commit, where known. */
  runOf?: (commit: string) => number | null;
  /** The name links to the environment's page (not on that page itself). */
  linkToPage?: boolean;
}) {
  const sourceRun = env.sourceCommit ? (runOf?.(env.sourceCommit) ?? null) : null;
  const rollout = env.rollout;
  return (
    <article
      className="card env-card"
      data-testid="env-card"
      data-env={env.name}
      data-health={env.health}
      data-sync={env.syncStatus}
      data-digest={env.digest ?? ''}
      data-source-commit={env.sourceCommit ?? ''}
    >
      <header className="env-card-head">
        <h3>
          {linkToPage ? (
            <Link to={environmentPath(team, app, env.name)} data-testid="env-link">
              {env.name}
            </Link>
          ) : (
            env.name
          )}
        </h3>
        <StatusBadge status={env.health} testId="env-health" />
        <SyncBadge status={env.syncStatus} testId="env-sync" />
        <ApprovalBadge env={env} testId="env-approval" />
        <span className="env-target muted" title="Deploy target" data-testid="env-target">
          on {env.target}
        </span>
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
        <dt>Version</dt>
        <dd>
          {env.image ? (
            <code title={env.image} data-testid="env-image">
              {shortDigest(env.image)}
            </code>
          ) : (
            <span className="muted">not deployed yet</span>
          )}
          {env.sourceCommit && (
            <>
              <span className="muted"> from </span>
              {sourceRun !== null ? (
                <Link
                  to={`/apps/${team}/${app}/runs/${sourceRun}`}
                  title={`${env.sourceCommit}, built by run #${sourceRun}`}
                  data-testid="env-commit"
                >
                  <code>{shortSha(env.sourceCommit)}</code>
                </Link>
              ) : (
                <code title={env.sourceCommit} data-testid="env-commit">
                  {shortSha(env.sourceCommit)}
                </code>
              )}
            </>
          )}
        </dd>
        {env.image && (
          <>
            <dt>Deployed</dt>
            <dd title={formatTimestamp(env.deployedAt)} data-testid="env-deployed-at">
              {env.deployedAt ? (
                formatRelative(env.deployedAt, now)
              ) : (
                <span className="muted">—</span>
              )}
              {env.deployCommit && (
                <span className="muted" title={env.deployCommit}>
                  {' '}
                  (deploy commit {shortSha(env.deployCommit)})
                </span>
              )}
            </dd>
          </>
        )}
        {!env.sync.automated && (
          <>
            <dt>Sync</dt>
            <dd data-testid="env-sync-mode">manual: changes wait for a sync</dd>
          </>
        )}
      </dl>
      {rollout && (rolloutActive(rollout) || rollout.phase !== 'promoted') && (
        <RolloutProgress rollout={rollout} />
      )}
      {env.drift.length > 0 && (
        <div className="env-drift" data-testid="env-drift">
          <strong>Drift</strong>
          <span className="muted">
            {' '}
            (differs from what was applied{env.sync.selfHeal ? '; self-heal repairs it' : ''})
          </span>
          <ul>
            {env.drift.map((line) => (
              <li key={line}>{line}</li>
            ))}
          </ul>
        </div>
      )}
      <EnvironmentMessage env={env} />
      <div className="table-scroll">
        <InstancesTable env={env} now={now} />
      </div>
    </article>
  );
}

/** Whether the environment's message is an error (rather than why it waits, or a note). */
const messageIsError = (env: Environment) =>
  env.health === 'degraded' || env.syncStatus === 'Unknown' || env.lastSync?.status === 'failed';

/** The reconciler's or the target's words, verbatim, in monospace: file:line:column included. */
function EnvironmentMessage({ env }: { env: Environment }) {
  if (!env.message) return null;
  const error = messageIsError(env);
  return (
    <pre
      className={`env-message ${error ? 'env-message-error' : ''}`}
      role={error ? 'alert' : undefined}
      data-testid="env-message"
      data-error={error ? 'true' : 'false'}
    >
      {env.message}
    </pre>
  );
}

function InstancesTable({ env, now }: { env: Environment; now: number }) {
  // Two versions side by side (a rollout, a rolling switch): say which instance runs which.
  const versions = new Set(env.instances.map((instance) => instance.image));
  const showVersion = versions.size > 1;
  const columns = showVersion ? 7 : 6;
  return (
    <table className="instances" data-testid="env-instances">
      <thead>
        <tr>
          <th>Instance</th>
          <th>State</th>
          <th className="number">PID</th>
          <th className="number">Port</th>
          <th className="number">Restarts</th>
          {showVersion && <th>Version</th>}
          <th>Started</th>
        </tr>
      </thead>
      <tbody>
        {env.instances.length === 0 && (
          <tr>
            <td colSpan={columns} className="muted">
              No instances running.
            </td>
          </tr>
        )}
        {env.instances.map((instance) => {
          const state = instance.state ?? (instance.healthy ? 'ready' : 'starting');
          return (
            <tr
              key={instance.id}
              data-testid="env-instance"
              data-instance={instance.id}
              data-state={state}
            >
              <td>
                <code title={instance.image}>{instance.id}</code>
              </td>
              <td>
                <InstanceStateBadge state={state} />
              </td>
              <td className="number">{instance.pid || '—'}</td>
              <td className="number">{instance.port || '—'}</td>
              <td className="number" data-testid="env-instance-restarts">
                {instance.restarts ?? '—'}
              </td>
              {showVersion && (
                <td>
                  <code title={instance.image}>{shortDigest(instance.image)}</code>
                </td>
              )}
              <td title={formatTimestamp(instance.startedAt)}>
                {formatRelative(instance.startedAt, now)}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
