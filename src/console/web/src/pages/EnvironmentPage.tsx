/**
 * One environment of an app: what runs there (the environment card), desired against live
 * with a Sync button, approvals waiting for it, its history with a rollback to any earlier
 * deploy, and a promotion to a later environment. Viewers read only; so do members of an
 * approving team outside the app's team, who decide the approvals. The API checks again.
 */
import { useEffect, useState, type ReactNode } from 'react';
import { api, type DeployChange, type DeployRecord, type Me, type Sync } from '../api.js';
import { SyncBadge } from '../components/DeployBadges.js';
import { DeployApprovalList } from '../components/DeployApprovalList.js';
import { DeployHistoryTable } from '../components/DeployHistoryTable.js';
import {
  canChangeEnvironments,
  environmentBusy,
  historyTimeline,
  isActiveMember,
  promotionTargets,
  rollbackCandidates,
  useHurry,
  useLivePoll,
  useRunOfCommit,
} from '../components/deployView.js';
import { EnvironmentCard, environmentPath } from '../components/EnvironmentCard.js';
import { EnvironmentDiff } from '../components/EnvironmentDiff.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { PromoteForm, promoteLabel } from '../components/PromoteForm.js';
import { StatusBadge } from '../components/StatusBadge.js';
import { formatTimestamp, shortDigest, shortSha } from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';

const HISTORY_LIMIT = 50;

export function EnvironmentPage({
  team,
  name,
  env: envName,
  me,
}: {
  team: string;
  name: string;
  env: string;
  me: Me;
}) {
  const appKey = `${team}/${name}`;
  const now = useNow();
  const [hurrying, hurry] = useHurry(now);
  // Every 2 s while the environment changes (or a change was just made), else every 10 s.
  const [busy, setBusy] = useState(true);
  const environments = useLivePoll(
    `${appKey}/environments`,
    () => api.environments(team, name),
    busy,
  );
  const env = environments.data?.find((e) => e.name === envName);
  const envIsBusy = hurrying || !env || environmentBusy(env);
  if (envIsBusy !== busy) setBusy(envIsBusy);

  const diff = usePoll(
    `${appKey}/${envName}/diff`,
    () => api.environmentDiff(team, name, envName),
    false,
  );
  const history = usePoll(
    `${appKey}/${envName}/history`,
    () => api.environmentHistory(team, name, envName, HISTORY_LIMIT),
    false,
  );
  const approvals = useLivePoll(
    `${appKey}/approvals`,
    () => api.deployApprovals(team, name, 'pending'),
    false,
  );
  // The diff and history change when the environment does: a commit, a sync, drift.
  const version = env
    ? [
        env.syncStatus,
        env.desiredCommit,
        env.deployCommit,
        env.lastSync?.id,
        env.lastSync?.status,
        env.health,
        env.drift.join('\n'),
      ].join('|')
    : '';
  const { reload: reloadDiff } = diff;
  const { reload: reloadHistory } = history;
  useEffect(() => {
    if (!version) return;
    reloadDiff();
    reloadHistory();
  }, [version, reloadDiff, reloadHistory]);

  // An approver outside the app's team reads the environments only, not the app's runs.
  const inAppTeam = isActiveMember(me, team);
  const runOf = useRunOfCommit(
    team,
    name,
    inAppTeam
      ? [env?.sourceCommit, ...(history.data?.deploys ?? []).map((deploy) => deploy.sourceCommit)]
      : [],
  );
  const [acting, setActing] = useState<'sync' | 'rollback' | null>(null);
  const [notice, setNotice] = useState<ReactNode>(null);
  const [actionError, setActionError] = useState<Error | null>(null);
  const [promoteOpen, setPromoteOpen] = useState(false);

  const mayChange = canChangeEnvironments(me, team);
  const reloadAll = () => {
    hurry();
    environments.reload();
    reloadDiff();
    reloadHistory();
    approvals.reload();
  };

  const sync = async () => {
    setActing('sync');
    setActionError(null);
    setNotice(null);
    try {
      const result = await api.syncEnvironment(team, name, envName);
      setNotice(syncNotice(result.sync));
      reloadAll();
    } catch (failure) {
      setActionError(failure as Error);
    } finally {
      setActing(null);
    }
  };

  const rollback = async (deploy: DeployRecord) => {
    const label = `${shortDigest(deploy.image)}${deploy.sourceCommit ? ` (source ${shortSha(deploy.sourceCommit)})` : ''}`;
    if (
      !window.confirm(
        `Roll back ${envName} to version ${label}, deployed by ${deploy.author} in ${shortSha(deploy.commit)}? ` +
          `This commits ${envName}'s manifests as they were then to the deploy repo.`,
      )
    ) {
      return;
    }
    setActing('rollback');
    setActionError(null);
    setNotice(null);
    try {
      const change = await api.rollback(team, name, envName, { commit: deploy.commit });
      setNotice(changeNotice(change, `Rolled ${envName} back to ${label}`, team, name, envName));
      reloadAll();
    } catch (failure) {
      setActionError(failure as Error);
    } finally {
      setActing(null);
    }
  };

  const onPromoted = (change: DeployChange, to: string) => {
    setPromoteOpen(false);
    setActionError(null);
    setNotice(changeNotice(change, `Promoted ${envName} to ${to}`, team, name, envName));
    reloadAll();
  };

  const breadcrumbs = (
    <nav className="breadcrumbs">
      <Link to="/apps">Apps</Link> / <span>{team}</span> /{' '}
      {/* Approvers from another team see the app page too, with its environments only. */}
      <Link to={`/apps/${team}/${name}`} data-testid="env-app-link">
        {name}
      </Link>{' '}
      / <span>environments</span> / <span>{envName}</span>
    </nav>
  );

  if (!env) {
    return (
      <main className="page">
        {breadcrumbs}
        {environments.error ? (
          <ErrorNote error={environments.error} />
        ) : environments.data ? (
          <p className="error-note" role="alert">
            {team}/{name} has no environment {envName}.
          </p>
        ) : (
          <p className="muted">Loading…</p>
        )}
      </main>
    );
  }

  const targets = promotionTargets(environments.data ?? [], envName);
  const canSync =
    mayChange &&
    (!env.sync.automated || env.syncStatus !== 'Synced' || env.lastSync?.status === 'failed');
  const pending = (approvals.data ?? []).filter(
    (a) => a.environment === envName || a.from?.environment === envName,
  );
  const entries = history.data ? historyTimeline(history.data) : [];
  const rollbackTo = mayChange && history.data ? rollbackCandidates(history.data.deploys) : null;

  return (
    <main className="page" data-testid="environment-page" data-env={envName}>
      {breadcrumbs}
      <div className="title-line">
        <h1 data-testid="env-title">
          <span className="muted">
            {team}/{name} /{' '}
          </span>
          {envName}
        </h1>
        <StatusBadge status={env.health} />
        <SyncBadge status={env.syncStatus} />
        {mayChange && targets.length > 0 && (
          <div className="run-actions">
            <button
              type="button"
              className={promoteOpen ? 'button-quiet' : 'button-primary'}
              aria-expanded={promoteOpen}
              disabled={!env.image}
              title={env.image ? undefined : `Nothing is deployed to ${envName} yet`}
              onClick={() => setPromoteOpen((open) => !open)}
              data-testid="promote-open"
            >
              {promoteOpen ? 'Close' : promoteLabel(targets)}
            </button>
          </div>
        )}
      </div>
      {promoteOpen && (
        <PromoteForm
          team={team}
          app={name}
          from={env}
          targets={targets}
          onPromoted={onPromoted}
          onCancel={() => setPromoteOpen(false)}
        />
      )}
      {!inAppTeam && (
        <p className="info-note" data-testid="env-approver-note">
          You are not in team {team}: as an approver you see its environments and decide the
          approvals of your team; deploying, promoting, rolling back and syncing are for its
          developers.
        </p>
      )}
      <ErrorNote error={environments.error ?? actionError} testId="env-action-error" />
      {acting === 'rollback' && <p className="info-note">Rolling back…</p>}
      {notice && (
        <div className="info-note" data-testid="env-notice">
          {notice}
        </div>
      )}
      <DeployApprovalList
        approvals={pending}
        team={team}
        app={name}
        me={me}
        now={now}
        onDecided={(approval) => {
          setNotice(
            approval.status === 'approved' ? (
              <>
                Approved: {approval.summary}
                {approval.commit && <> (commit {shortSha(approval.commit)})</>}.
              </>
            ) : (
              <>Rejected: {approval.summary}.</>
            ),
          );
          reloadAll();
        }}
      />

      <EnvironmentCard
        env={env}
        team={team}
        app={name}
        now={now}
        runOf={runOf}
        linkToPage={false}
      />

      <div className="section-head">
        <h2>Diff</h2>
        {canSync && (
          <button
            type="button"
            className="button-primary"
            disabled={acting !== null}
            onClick={() => void sync()}
            data-testid="env-sync-button"
          >
            {acting === 'sync' ? 'Syncing…' : 'Sync'}
          </button>
        )}
      </div>
      <section className="card table-scroll">
        <ErrorNote error={diff.error} />
        {diff.data ? <EnvironmentDiff diff={diff.data} /> : <p className="muted">Loading…</p>}
      </section>

      <h2>History</h2>
      <section className="card table-scroll">
        <ErrorNote error={history.error} />
        {history.data ? (
          <DeployHistoryTable
            entries={entries}
            team={team}
            app={name}
            now={now}
            runOf={runOf}
            canRollBackTo={rollbackTo ?? new Set()}
            onRollback={(deploy) => void rollback(deploy)}
            busy={acting !== null}
          />
        ) : (
          <p className="muted">Loading…</p>
        )}
      </section>
    </main>
  );
}

/** What a sync asked for did. */
function syncNotice(sync: Sync | null): ReactNode {
  if (!sync) return 'Nothing to sync: what runs matches the deploy repo.';
  return (
    <>
      Sync <StatusBadge status={sync.status} testId="env-sync-result" />{' '}
      {sync.message && <span>{sync.message}</span>}
    </>
  );
}

/** A committed change (and where to watch it), or the approval it waits for. */
function changeNotice(
  change: DeployChange,
  done: string,
  team: string,
  app: string,
  /** The environment whose page this is. */
  here: string,
): ReactNode {
  if (change.status === 'committed') {
    return (
      <span data-testid="env-change" data-status="committed" data-commit={change.commit}>
        {done}: deploy commit <code>{shortSha(change.commit)}</code>.
        {change.environment !== here && (
          <>
            {' '}
            <Link to={environmentPath(team, app, change.environment)} data-testid="env-change-link">
              Watch {change.environment}
            </Link>
          </>
        )}
      </span>
    );
  }
  const { approval } = change;
  return (
    <span data-testid="env-change" data-status="pending" data-approval={approval.id}>
      Waiting for approval: a member of team <strong>{approval.team}</strong> decides{' '}
      <q>{approval.summary}</q> (expires {formatTimestamp(approval.expiresAt)}).{' '}
      {approval.environment} is unchanged until then.
    </span>
  );
}
