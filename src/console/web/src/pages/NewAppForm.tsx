/** Create an app from a template in one of your teams; then show where to clone it from. */
import { useEffect, useState, type FormEvent } from 'react';
import { api, type App, type Me, type Template } from '../api.js';
import { CopyableCode } from '../components/CopyableCode.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { Link } from '../router.js';

export function NewAppForm({ me, onCreated }: { me: Me; onCreated: (app: App) => void }) {
  const teams = me.teams.filter((membership) => membership.status === 'active');
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [team, setTeam] = useState(teams[0]?.team ?? '');
  const [name, setName] = useState('');
  const [template, setTemplate] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<App | null>(null);

  useEffect(() => {
    let stopped = false;
    api.templates().then(
      (list) => {
        if (stopped) return;
        setTemplates(list);
        setTemplate((current) => current || (list[0]?.name ?? ''));
      },
      (failure: Error) => !stopped && setError(failure),
    );
    return () => {
      stopped = true;
    };
  }, []);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const app = await api.createApp({ team, name, template });
      setCreated(app);
      setName('');
      onCreated(app);
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(false);
    }
  };

  if (teams.length === 0) {
    return (
      <section className="card">
        <h2>New app</h2>
        <p className="muted">You can create apps once a team admin has approved your membership.</p>
      </section>
    );
  }

  const description = templates?.find((t) => t.name === template)?.description;
  return (
    <section className="card">
      <h2>New app</h2>
      <form
        className="stacked-form"
        data-testid="new-app-form"
        onSubmit={(event) => void submit(event)}
      >
        <label>
          Team
          <select
            value={team}
            onChange={(event) => setTeam(event.target.value)}
            data-testid="new-app-team"
          >
            {teams.map((membership) => (
              <option key={membership.team} value={membership.team}>
                {membership.team}
              </option>
            ))}
          </select>
        </label>
        <label>
          Name
          <input
            name="name"
            required
            autoCapitalize="none"
            spellCheck={false}
            placeholder="hello"
            value={name}
            onChange={(event) => setName(event.target.value)}
            data-testid="new-app-name"
          />
        </label>
        <label>
          Template
          <select
            value={template}
            required
            onChange={(event) => setTemplate(event.target.value)}
            data-testid="new-app-template"
          >
            {templates === null && <option value="">Loading…</option>}
            {templates?.map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
          {description && <span className="hint">{description}</span>}
        </label>
        <ErrorNote error={error} testId="new-app-error" />
        <button
          type="submit"
          className="button-primary"
          disabled={busy || !templates}
          data-testid="new-app-submit"
        >
          Create app
        </button>
      </form>
      {created && (
        <div className="created-note" data-testid="new-app-created">
          <p>
            <Link to={`/apps/${created.team}/${created.name}`}>
              {created.team}/{created.name}
            </Link>{' '}
            is ready. Clone it, change something and push to <code>main</code>:
          </p>
          <CopyableCode text={`git clone ${created.gitUrl}`} />
          <p className="hint">
            Clone URL: <span data-testid="new-app-clone-url">{created.gitUrl}</span> (sign in to git
            with your username and an API token).
          </p>
        </div>
      )}
    </section>
  );
}
