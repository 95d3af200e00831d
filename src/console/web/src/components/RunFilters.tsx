/**
 * Filters of a runs list, kept in the page's query string (`?status=failed&branch=main`), so a
 * filtered list survives a reload and can be shared. Lists apply them on the API side.
 */
import { useEffect, useState, type FormEvent } from 'react';
import { runEvents, runFilterNames, runStatuses, type RunFilters } from '../api.js';
import { eventLabel } from '../format.js';
import { updateQuery } from '../router.js';

export function runFiltersFrom(query: URLSearchParams): RunFilters {
  const filters: RunFilters = {};
  for (const name of runFilterNames) {
    const value = query.get(name);
    if (value) filters[name] = value;
  }
  return filters;
}

export const hasFilters = (filters: RunFilters) => Object.values(filters).some(Boolean);

/** A stable string of the filters, to restart polling when they change. */
export const filtersKey = (filters: RunFilters) =>
  runFilterNames.map((name) => `${name}=${filters[name] ?? ''}`).join('&');

export function RunFiltersBar({
  filters,
  apps,
}: {
  filters: RunFilters;
  /** "team/app" choices for the app filter; without them there is no app filter. */
  apps?: string[];
}) {
  // Text filters apply on Enter or when leaving the field, not on every key.
  const [branch, setBranch] = useState(filters.branch ?? '');
  const [actor, setActor] = useState(filters.actor ?? '');
  useEffect(() => setBranch(filters.branch ?? ''), [filters.branch]);
  useEffect(() => setActor(filters.actor ?? ''), [filters.actor]);

  const applyText = (event?: FormEvent) => {
    event?.preventDefault();
    updateQuery({ branch: branch.trim(), actor: actor.trim() });
  };

  return (
    <form className="filters" data-testid="run-filters" onSubmit={applyText}>
      {apps && (
        <label>
          App
          <select
            value={filters.app ?? ''}
            onChange={(event) => updateQuery({ app: event.target.value })}
            data-testid="filter-app"
          >
            <option value="">All apps</option>
            {apps.map((app) => (
              <option key={app} value={app}>
                {app}
              </option>
            ))}
            {filters.app && !apps.includes(filters.app) && (
              <option value={filters.app}>{filters.app}</option>
            )}
          </select>
        </label>
      )}
      <label>
        Status
        <select
          value={filters.status ?? ''}
          onChange={(event) => updateQuery({ status: event.target.value })}
          data-testid="filter-status"
        >
          <option value="">Any</option>
          {runStatuses.map((status) => (
            <option key={status} value={status}>
              {status}
            </option>
          ))}
        </select>
      </label>
      <label>
        Event
        <select
          value={filters.event ?? ''}
          onChange={(event) => updateQuery({ event: event.target.value })}
          data-testid="filter-event"
        >
          <option value="">Any</option>
          {runEvents.map((event) => (
            <option key={event} value={event}>
              {eventLabel(event)}
            </option>
          ))}
        </select>
      </label>
      <label>
        Branch
        <input
          value={branch}
          placeholder="main"
          spellCheck={false}
          autoCapitalize="none"
          onChange={(event) => setBranch(event.target.value)}
          onBlur={() => applyText()}
          data-testid="filter-branch"
        />
      </label>
      <label>
        Actor
        <input
          value={actor}
          placeholder="username"
          spellCheck={false}
          autoCapitalize="none"
          onChange={(event) => setActor(event.target.value)}
          onBlur={() => applyText()}
          data-testid="filter-actor"
        />
      </label>
      {/* Enter in a text field submits; the button is for pointer users. */}
      <button type="submit" className="button-small">
        Filter
      </button>
      {hasFilters(filters) && (
        <button
          type="button"
          className="button-small button-quiet"
          onClick={() => updateQuery(Object.fromEntries(runFilterNames.map((n) => [n, null])))}
          data-testid="filter-clear"
        >
          Clear
        </button>
      )}
    </form>
  );
}
