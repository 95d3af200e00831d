/**
 * The secrets a run of this app can read (`${{ secrets.NAME }}`): the app's own and its team's,
 * by name only. Values go to the API and are never shown again, not even to who set them.
 */
import { useState, type FormEvent } from 'react';
import { api, type Secret, type SecretScope } from '../api.js';
import { formatRelative, formatTimestamp } from '../format.js';
import { usePoll } from '../polling.js';
import { ErrorNote } from './ErrorNote.js';

export function SecretsPanel({ team, app, now }: { team: string; app: string; now: number }) {
  const key = `${team}/${app}/secrets`;
  const appSecrets = usePoll(key, () => api.appSecrets(team, app), false);
  const teamSecrets = usePoll(`${team}/secrets`, () => api.teamSecrets(team), false);
  const [error, setError] = useState<Error | null>(null);
  const reload = () => {
    appSecrets.reload();
    teamSecrets.reload();
  };

  const remove = async (secret: Secret) => {
    const where = secret.scope === 'team' ? `team ${team}` : `${team}/${app}`;
    if (!window.confirm(`Delete secret ${secret.name} of ${where}?`)) return;
    setError(null);
    try {
      await api.deleteSecret({ team, app: secret.scope === 'team' ? null : app }, secret.name);
      reload();
    } catch (failure) {
      setError(failure as Error);
    }
  };

  const appNames = new Set((appSecrets.data ?? []).map((s) => s.name));
  const rows: Secret[] = [
    ...(appSecrets.data ?? []).map((s) => ({ ...s, scope: 'app' as const })),
    ...(teamSecrets.data ?? []).map((s) => ({ ...s, scope: 'team' as const })),
  ];

  return (
    <section className="card secrets" data-testid="secrets">
      <ErrorNote error={appSecrets.error ?? teamSecrets.error ?? error} />
      {appSecrets.data && teamSecrets.data && rows.length === 0 && (
        <p className="muted">No secrets yet.</p>
      )}
      {rows.length > 0 && (
        <table data-testid="secrets-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Scope</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((secret) => (
              <tr
                key={`${secret.scope}/${secret.name}`}
                data-testid="secret-row"
                data-secret={secret.name}
                data-scope={secret.scope}
              >
                <td>
                  <code>{secret.name}</code>
                  {secret.scope === 'team' && appNames.has(secret.name) && (
                    <span className="hint">overridden by the app&apos;s own</span>
                  )}
                </td>
                <td>{secret.scope === 'team' ? `team ${team}` : 'this app'}</td>
                <td title={formatTimestamp(secret.updatedAt)}>
                  {formatRelative(secret.updatedAt, now)}
                  {secret.updatedBy && <span className="muted"> by {secret.updatedBy}</span>}
                </td>
                <td className="row-actions">
                  <button
                    type="button"
                    className="button-small button-danger"
                    onClick={() => void remove(secret)}
                    data-testid="secret-delete"
                  >
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <SetSecretForm team={team} app={app} onSet={reload} />
    </section>
  );
}

function SetSecretForm({ team, app, onSet }: { team: string; app: string; onSet: () => void }) {
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [scope, setScope] = useState<'app' | 'team'>('app');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(null);
    const where: SecretScope = { team, app: scope === 'team' ? null : app };
    try {
      await api.setSecret(where, name.trim(), value);
      setSaved(name.trim());
      setName('');
      setValue('');
      onSet();
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="inline-form"
      data-testid="secret-form"
      autoComplete="off"
      onSubmit={(event) => void submit(event)}
    >
      <label>
        Name
        <input
          required
          value={name}
          placeholder="API_TOKEN"
          spellCheck={false}
          autoCapitalize="characters"
          onChange={(event) => setName(event.target.value)}
          data-testid="secret-name"
        />
      </label>
      <label>
        Value
        {/* A password field: not shown on screen, not kept by the browser's form history. */}
        <input
          required
          type="password"
          autoComplete="new-password"
          value={value}
          onChange={(event) => setValue(event.target.value)}
          data-testid="secret-value"
        />
      </label>
      <label>
        For
        <select
          value={scope}
          onChange={(event) => setScope(event.target.value as 'app' | 'team')}
          data-testid="secret-scope"
        >
          <option value="app">this app</option>
          <option value="team">every app of team {team}</option>
        </select>
      </label>
      <button type="submit" className="button-primary" disabled={busy} data-testid="secret-submit">
        Save secret
      </button>
      <ErrorNote error={error} testId="secret-error" />
      {saved && (
        <p className="info-note" data-testid="secret-saved">
          Saved {saved}. Its value is not shown again.
        </p>
      )}
    </form>
  );
}
