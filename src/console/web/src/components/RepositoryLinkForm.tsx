/**
 * An external repository (GitHub, GitLab, Gitea) whose webhooks start this app's runs: the
 * provider, its URL, the webhook secret the provider signs with, and for a private repository
 * a username and token to fetch it. Secret and token are write-only.
 */
import { useState, type FormEvent } from 'react';
import { api } from '../api.js';
import { usePoll } from '../polling.js';
import { CopyableCode } from './CopyableCode.js';
import { ErrorNote } from './ErrorNote.js';

const providers = ['github', 'gitlab', 'gitea'] as const;

/** Where the provider is told to send push events (src/pipelines/external.ts). */
const webhookUrl = (provider: string, team: string, app: string) =>
  `${window.location.origin}/hooks/${provider}/${encodeURIComponent(team)}/${encodeURIComponent(app)}`;

export function RepositoryLinkForm({ team, app }: { team: string; app: string }) {
  const link = usePoll(`${team}/${app}/repository`, () => api.repository(team, app), false);
  const [provider, setProvider] = useState<string>('github');
  const [url, setUrl] = useState('');
  const [secret, setSecret] = useState('');
  const [username, setUsername] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);

  const act = async (action: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
      link.reload();
      return true;
    } catch (failure) {
      setError(failure as Error);
      return false;
    } finally {
      setBusy(false);
    }
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const credentials = username.trim() ? { username: username.trim(), password: token } : {};
    const linked = await act(() =>
      api.linkRepository(team, app, { provider, url: url.trim(), secret, ...credentials }),
    );
    if (linked) {
      setSecret('');
      setToken('');
    }
  };

  const unlink = () => {
    if (window.confirm(`Stop taking webhooks from ${link.data?.url ?? 'this repository'}?`))
      void act(() => api.unlinkRepository(team, app));
  };

  return (
    <section className="card" data-testid="repository-link">
      <ErrorNote error={link.error} />
      {link.data && (
        <div className="linked-repo" data-testid="repository-current">
          <dl className="facts">
            <dt>Provider</dt>
            <dd data-testid="repository-provider">{link.data.provider}</dd>
            <dt>Repository</dt>
            <dd>
              <a href={link.data.url} target="_blank" rel="noreferrer" data-testid="repository-url">
                {link.data.url}
              </a>
            </dd>
            {link.data.username && (
              <>
                <dt>Fetched as</dt>
                <dd>{link.data.username}</dd>
              </>
            )}
            <dt>Webhook URL</dt>
            <dd>
              <CopyableCode
                text={webhookUrl(link.data.provider, team, app)}
                testId="repository-webhook-url"
              />
              <span className="hint">
                Send push events here as JSON, signed with the webhook secret.
              </span>
            </dd>
          </dl>
          <button
            type="button"
            className="button-small button-danger"
            disabled={busy}
            onClick={unlink}
            data-testid="repository-unlink"
          >
            Unlink
          </button>
        </div>
      )}
      {link.data === null && (
        <p className="muted">
          Not linked. Runs start from pushes to this app&apos;s own repository; link an external one
          to start them from its webhooks too.
        </p>
      )}
      <form
        className="inline-form"
        data-testid="repository-form"
        autoComplete="off"
        onSubmit={(event) => void submit(event)}
      >
        <label>
          Provider
          <select
            value={provider}
            onChange={(event) => setProvider(event.target.value)}
            data-testid="repository-form-provider"
          >
            {providers.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <label className="grow">
          Repository URL
          <input
            type="url"
            required
            value={url}
            placeholder="https://github.com/org/repo"
            spellCheck={false}
            onChange={(event) => setUrl(event.target.value)}
            data-testid="repository-form-url"
          />
        </label>
        <label>
          Webhook secret
          <input
            type="password"
            required
            minLength={16}
            autoComplete="new-password"
            value={secret}
            onChange={(event) => setSecret(event.target.value)}
            data-testid="repository-form-secret"
          />
        </label>
        <label>
          Username <span className="hint">private repositories only</span>
          <input
            value={username}
            autoComplete="off"
            spellCheck={false}
            onChange={(event) => setUsername(event.target.value)}
            data-testid="repository-form-username"
          />
        </label>
        <label>
          Access token
          <input
            type="password"
            autoComplete="new-password"
            required={username.trim() !== ''}
            value={token}
            onChange={(event) => setToken(event.target.value)}
            data-testid="repository-form-token"
          />
        </label>
        <button
          type="submit"
          className="button-primary"
          disabled={busy}
          data-testid="repository-form-submit"
        >
          {link.data ? 'Update link' : 'Link repository'}
        </button>
      </form>
      <ErrorNote error={error} testId="repository-error" />
    </section>
  );
}
