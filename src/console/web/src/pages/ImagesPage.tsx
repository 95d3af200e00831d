/** The image repositories of each of your teams: tags, size and the last push, at a glance. */
import { api, type Me } from '../api.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { PushedBy } from '../components/PushedBy.js';
import { formatBytes, formatRelative, formatTimestamp } from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';

export function ImagesPage({ me }: { me: Me }) {
  const teams = me.teams.filter((membership) => membership.status === 'active');
  return (
    <main className="page" data-testid="images-page">
      <h1>Images</h1>
      {teams.length === 0 && <p className="muted">You are not an active member of any team.</p>}
      {teams.map((membership) => (
        <TeamImages key={membership.team} team={membership.team} />
      ))}
    </main>
  );
}

function TeamImages({ team }: { team: string }) {
  const repositories = usePoll(`${team}/images`, () => api.teamImages(team), false);
  const now = useNow();
  return (
    <section data-testid="team-images" data-team={team}>
      <h2>Team {team}</h2>
      <div className="card">
        <ErrorNote error={repositories.error} />
        {repositories.data === undefined && !repositories.error && (
          <p className="muted">Loading…</p>
        )}
        {repositories.data?.length === 0 && (
          <p className="muted">
            No images yet. A pipeline&apos;s <code>valve/build-image</code> step, or a push to the
            registry, stores them here.
          </p>
        )}
        {repositories.data && repositories.data.length > 0 && (
          <table data-testid="image-repos-table">
            <thead>
              <tr>
                <th>Repository</th>
                <th>Tags</th>
                <th>Size</th>
                <th>Last push</th>
                <th>By</th>
              </tr>
            </thead>
            <tbody>
              {repositories.data.map((repo) => (
                <tr key={repo.repository} data-testid="image-repo-row" data-repo={repo.repository}>
                  <td>
                    <Link to={`/apps/${team}/${repo.app}/images`} data-testid="image-repo-link">
                      <span className="muted">{team}/</span>
                      {repo.app}
                    </Link>
                  </td>
                  <td data-testid="image-repo-tags">{repo.tagCount}</td>
                  <td title={`${repo.size} bytes`} data-bytes={repo.size}>
                    {formatBytes(repo.size)}
                  </td>
                  <td title={formatTimestamp(repo.lastPush?.at ?? null)}>
                    {repo.lastPush ? (
                      <>
                        {formatRelative(repo.lastPush.at, now)}
                        {repo.lastPush.tag && (
                          <span className="muted">
                            {' '}
                            (<code>{repo.lastPush.tag}</code>)
                          </span>
                        )}
                      </>
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td>
                    <PushedBy push={repo.lastPush} team={team} app={repo.app} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}
