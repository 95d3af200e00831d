/** One app: where its code and deploy history live, its environments, and its recent runs. */
import { api } from '../api.js';
import { CopyableCode } from '../components/CopyableCode.js';
import { EnvironmentCard } from '../components/EnvironmentCard.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { RunsTable } from '../components/RunsTable.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';

const RECENT_RUNS = 20;

export function AppPage({ team, name }: { team: string; name: string }) {
  const key = `${team}/${name}`;
  const app = usePoll(key, () => api.app(team, name));
  const runs = usePoll(key, () => api.runs(team, name, RECENT_RUNS));
  const now = useNow();
  const basePath = `/apps/${team}/${name}`;

  if (!app.data) {
    return (
      <main className="page">
        <Breadcrumbs team={team} name={name} />
        {app.error ? <ErrorNote error={app.error} /> : <p className="muted">Loading…</p>}
      </main>
    );
  }

  return (
    <main className="page">
      <Breadcrumbs team={team} name={name} />
      <h1 data-testid="app-title">
        <span className="muted">{team}/</span>
        {name}
      </h1>
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
            <code>{app.data.image}</code>
          </dd>
          <dt>Template</dt>
          <dd>{app.data.template}</dd>
        </dl>
      </section>

      <h2>Environments</h2>
      {app.data.environments.length === 0 && (
        <p className="muted">No environments in the app spec.</p>
      )}
      <div className="env-grid">
        {app.data.environments.map((env) => (
          <EnvironmentCard key={env.name} env={env} now={now} />
        ))}
      </div>

      <h2>Runs</h2>
      <section className="card">
        {runs.data ? (
          <RunsTable runs={runs.data} basePath={basePath} now={now} />
        ) : (
          <p className="muted">Loading…</p>
        )}
      </section>
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
