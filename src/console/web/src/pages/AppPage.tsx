/**
 * One app: where its code and deploy history live, the status of its default branch, its
 * environments (each opening its own page: diff, history, promote, roll back), its runs (filtered from the URL) with a way to start a workflow by hand, and
 * its secrets and external repository.
 */
import { useState } from 'react';
import { api } from '../api.js';
import { CommitStatusBadge } from '../components/CommitStatusBadge.js';
import { CopyableCode } from '../components/CopyableCode.js';
import { appBusy, useLivePoll, useRunOfCommit } from '../components/deployView.js';
import { DispatchForm } from '../components/DispatchForm.js';
import { EnvironmentCard } from '../components/EnvironmentCard.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { RepositoryLinkForm } from '../components/RepositoryLinkForm.js';
import { filtersKey, hasFilters, RunFiltersBar, runFiltersFrom } from '../components/RunFilters.js';
import { RunsTable } from '../components/RunsTable.js';
import { SecretsPanel } from '../components/SecretsPanel.js';
import { useNow, usePoll } from '../polling.js';
import { Link, useQuery } from '../router.js';

const RECENT_RUNS = 20;
// Apps are created with `main` as their default branch; the API does not name it (yet).
const DEFAULT_BRANCH = 'main';

export function AppPage({ team, name }: { team: string; name: string }) {
  const key = `${team}/${name}`;
  // The app filter makes no sense on one app's page.
  const { app: _app, ...filters } = runFiltersFrom(useQuery());
  const now = useNow();
  // Every 2 s while a run or an environment is under way, else every 10 s.
  const [busy, setBusy] = useState(true);
  const app = useLivePoll(key, () => api.app(team, name), busy);
  const appIsBusy = app.data ? appBusy(app.data, now) : true;
  if (appIsBusy !== busy) setBusy(appIsBusy);
  // An approver from another team sees the environments only: runs are the app team's.
  const access = app.data?.access;
  const runOf = useRunOfCommit(
    team,
    name,
    access === 'team' ? app.data!.environments.map((env) => env.sourceCommit) : [],
  );
  const runs = usePoll(`${key}/runs?${filtersKey(filters)}&as=${access}`, () =>
    access === 'team' ? api.runs(team, name, RECENT_RUNS, filters) : Promise.resolve(null),
  );
  const [dispatchOpen, setDispatchOpen] = useState(false);

  if (!app.data) {
    return (
      <main className="page">
        <Breadcrumbs team={team} name={name} />
        {app.error ? <ErrorNote error={app.error} /> : <p className="muted">Loading…</p>}
      </main>
    );
  }

  const environments = (
    <>
      <h2>Environments</h2>
      {app.data.environments.length === 0 && (
        <p className="muted">No environments in the app spec.</p>
      )}
      <div className="env-grid">
        {app.data.environments.map((env) => (
          <EnvironmentCard
            key={env.name}
            env={env}
            team={team}
            app={name}
            now={now}
            runOf={runOf}
          />
        ))}
      </div>
    </>
  );

  if (access === 'approver') {
    return (
      <main className="page">
        <Breadcrumbs team={team} name={name} />
        <h1 data-testid="app-title">
          <span className="muted">{team}/</span>
          {name}
        </h1>
        <ErrorNote error={app.error} />
        <p className="muted" data-testid="app-approver-note">
          You approve changes to environments of this app from another team: you see its
          environments and decide their approvals; its source, runs and secrets are its team&apos;s.
        </p>
        {environments}
      </main>
    );
  }

  return (
    <main className="page">
      <Breadcrumbs team={team} name={name} />
      <div className="title-line">
        <h1 data-testid="app-title">
          <span className="muted">{team}/</span>
          {name}
        </h1>
        <CommitStatusBadge team={team} app={name} branch={DEFAULT_BRANCH} />
      </div>
      <ErrorNote error={app.error ?? runs.error} />
      <section className="card">
        <dl className="facts">
          <dt>Source</dt>
          <dd>
            <CopyableCode text={app.data.gitUrl} testId="app-clone-url" />
          </dd>
          <dt>Deploy repo</dt>
          <dd>
            <CopyableCode text={app.data.deployGitUrl} testId="app-deploy-url" />
          </dd>
          <dt>Image</dt>
          <dd>
            <code>{app.data.image}</code>{' '}
            <Link to={`/apps/${team}/${name}/images`} data-testid="app-images-link">
              Tags and layers
            </Link>
          </dd>
          <dt>Template</dt>
          <dd>{app.data.template}</dd>
        </dl>
      </section>

      {environments}

      <div className="section-head">
        <h2>Runs</h2>
        <button
          type="button"
          className={dispatchOpen ? 'button-quiet' : 'button-primary'}
          aria-expanded={dispatchOpen}
          onClick={() => setDispatchOpen((open) => !open)}
          data-testid="dispatch-open"
        >
          {dispatchOpen ? 'Close' : 'Run workflow'}
        </button>
      </div>
      {dispatchOpen && (
        <section className="card dispatch-card">
          <DispatchForm team={team} app={name} defaultRef={DEFAULT_BRANCH} />
        </section>
      )}
      <RunFiltersBar filters={filters} />
      <section className="card">
        {runs.data ? (
          <RunsTable runs={runs.data} now={now} filtered={hasFilters(filters)} />
        ) : (
          <p className="muted">Loading…</p>
        )}
      </section>

      <h2>Secrets</h2>
      <SecretsPanel team={team} app={name} now={now} />

      <h2>External repository</h2>
      <RepositoryLinkForm team={team} app={name} />
    </main>
  );
}

function Breadcrumbs({ team, name }: { team: string; name: string }) {
  return (
    <nav className="breadcrumbs">
      <Link to="/apps">Apps</Link> / <span>{team}</span> / <span>{name}</span>
    </nav>
  );
}
