/** Your apps across your teams: each environment's health, version and address at a glance. */
import { api, type App, type Me } from '../api.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { StatusBadge } from '../components/StatusBadge.js';
import { firstLine, formatRelative, shortDigest, shortSha } from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';
import { NewAppForm } from './NewAppForm.js';

export function AppsPage({ me }: { me: Me }) {
  const apps = usePoll('apps', api.apps);
  const now = useNow();
  const pending = me.teams.filter((membership) => membership.status === 'pending');

  return (
    <main className="page">
      <h1>Apps</h1>
      {pending.map((membership) => (
        <p key={membership.team} className="info-note">
          Your membership in team <strong>{membership.team}</strong> waits for a team admin&apos;s
          approval.
        </p>
      ))}
      <div className="apps-layout">
        <section className="card apps-list" data-testid="apps-list">
          <ErrorNote error={apps.error} />
          {apps.data === undefined && !apps.error && <p className="muted">Loading…</p>}
          {apps.data?.length === 0 && (
            <p className="muted">No apps yet. Create one from a template.</p>
          )}
          {apps.data?.map((app) => (
            <AppRow key={`${app.team}/${app.name}`} app={app} now={now} />
          ))}
        </section>
        <NewAppForm me={me} onCreated={apps.reload} />
      </div>
    </main>
  );
}

function AppRow({ app, now }: { app: App; now: number }) {
  const path = `/apps/${app.team}/${app.name}`;
  return (
    <article className="app-row" data-testid="app-row" data-app={`${app.team}/${app.name}`}>
      <div className="app-row-head">
        <Link to={path} className="app-name" data-testid="app-link">
          <span className="muted">{app.team}/</span>
          {app.name}
        </Link>
        {app.lastRun && (
          <Link
            to={`${path}/runs/${app.lastRun.number}`}
            className="app-last-run"
            title={firstLine(app.lastRun.commitMessage)}
          >
            <StatusBadge status={app.lastRun.status} />#{app.lastRun.number}{' '}
            {shortSha(app.lastRun.commit)}{' '}
            <span className="muted">{formatRelative(app.lastRun.createdAt, now)}</span>
          </Link>
        )}
      </div>
      <div className="clone-line">
        <span className="muted">git clone</span>{' '}
        <code data-testid="app-clone-url">{app.gitUrl}</code>
      </div>
      {app.environments.length > 0 && (
        <table className="env-table">
          <tbody>
            {app.environments.map((env) => (
              <tr key={env.name} data-testid="app-env" data-env={env.name} data-health={env.health}>
                <th scope="row">{env.name}</th>
                <td>
                  <StatusBadge status={env.health} testId="env-health" />
                </td>
                <td>
                  <code
                    className="digest"
                    title={env.image ?? 'not deployed yet'}
                    data-testid="env-version"
                  >
                    {shortDigest(env.image) || '—'}
                  </code>
                </td>
                <td className="env-url-cell">
                  {env.url && (
                    <a href={env.url} target="_blank" rel="noreferrer" data-testid="env-url">
                      {env.url}
                    </a>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </article>
  );
}
