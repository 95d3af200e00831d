/** Runs across every app of the caller's teams (GET /api/runs), filtered from the URL, live. */
import { api } from '../api.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { filtersKey, hasFilters, RunFiltersBar, runFiltersFrom } from '../components/RunFilters.js';
import { RunsTable } from '../components/RunsTable.js';
import { useNow, usePoll } from '../polling.js';
import { useQuery } from '../router.js';

const RUNS_SHOWN = 50;

export function RunsPage() {
  const filters = runFiltersFrom(useQuery());
  const runs = usePoll(`runs?${filtersKey(filters)}`, () => api.allRuns(filters, RUNS_SHOWN));
  // The app filter's choices: loaded once, not polled.
  const apps = usePoll('runs-page-apps', api.apps, false);
  const now = useNow();

  return (
    <main className="page">
      <h1>Runs</h1>
      <RunFiltersBar
        filters={filters}
        apps={(apps.data ?? []).map((app) => `${app.team}/${app.name}`)}
      />
      <ErrorNote error={runs.error} />
      <section className="card" data-testid="all-runs">
        {runs.data ? (
          <RunsTable runs={runs.data} now={now} showApp filtered={hasFilters(filters)} />
        ) : (
          !runs.error && <p className="muted">Loading…</p>
        )}
      </section>
    </main>
  );
}
