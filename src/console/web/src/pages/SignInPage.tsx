/** Sign in, or sign up with a team (a new team makes you its admin; an existing one asks its admin). */
import { useState, type FormEvent } from 'react';
import { api } from '../api.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { Link } from '../router.js';

export function SignInPage({
  mode,
  next,
  onSignedIn,
}: {
  mode: 'login' | 'signup';
  /** Where to go afterwards, carried along when switching between sign-in and sign-up. */
  next: string | null;
  onSignedIn: () => Promise<void>;
}) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [team, setTeam] = useState('');
  const [error, setError] = useState<Error | null>(null);
  const [busy, setBusy] = useState(false);
  const signup = mode === 'signup';
  const query = next ? `?next=${encodeURIComponent(next)}` : '';

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (signup) await api.signup({ username, password, team });
      else await api.login({ username, password });
      await onSignedIn();
    } catch (failure) {
      setError(failure as Error);
      setBusy(false);
    }
  };

  return (
    <main className="auth-page">
      <div className="auth-brand">Valve</div>
      <form
        className="card auth-card"
        data-testid="auth-form"
        onSubmit={(event) => void submit(event)}
      >
        <h1>{signup ? 'Create your account' : 'Sign in'}</h1>
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            spellCheck={false}
            required
            value={username}
            onChange={(event) => setUsername(event.target.value)}
            data-testid="auth-username"
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={signup ? 'new-password' : 'current-password'}
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
            data-testid="auth-password"
          />
        </label>
        {signup && (
          <label>
            Team
            <input
              name="team"
              autoCapitalize="none"
              spellCheck={false}
              required
              value={team}
              onChange={(event) => setTeam(event.target.value)}
              data-testid="auth-team"
            />
            <span className="hint">
              A new team makes you its admin; to join an existing team, its admin approves you.
            </span>
          </label>
        )}
        <ErrorNote error={error} testId="auth-error" />
        <button type="submit" className="button-primary" disabled={busy} data-testid="auth-submit">
          {signup ? 'Sign up' : 'Sign in'}
        </button>
        <p className="auth-switch">
          {signup ? (
            <>
              Have an account?{' '}
              <Link to={`/login${query}`} data-testid="auth-switch">
                Sign in
              </Link>
            </>
          ) : (
            <>
              New to Valve?{' '}
              <Link to={`/signup${query}`} data-testid="auth-switch">
                Create an account
              </Link>
            </>
          )}
        </p>
      </form>
    </main>
  );
}
