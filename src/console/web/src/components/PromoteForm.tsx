/**
 * Promotes the exact version an environment runs to a later one (rendered with that one's
 * settings, never rebuilt): which environment, when there are several, and a last look at what
 * moves before it does. An environment with an approving team answers with a pending approval.
 */
import { useState, type FormEvent } from 'react';
import { api, type DeployChange, type Environment } from '../api.js';
import { shortDigest, shortSha } from '../format.js';
import { ErrorNote } from './ErrorNote.js';

export const promoteLabel = (targets: Environment[]) =>
  targets.length === 1 ? `Promote to ${targets[0]?.name}` : 'Promote…';

export function PromoteForm({
  team,
  app,
  from,
  targets,
  onPromoted,
  onCancel,
}: {
  team: string;
  app: string;
  from: Environment;
  targets: Environment[];
  onPromoted: (change: DeployChange, to: string) => void;
  onCancel: () => void;
}) {
  const [to, setTo] = useState(targets[0]?.name ?? '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const target = targets.find((env) => env.name === to);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onPromoted(await api.promote(team, app, { from: from.name, to }), to);
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      className="card promote-form"
      onSubmit={(event) => void submit(event)}
      data-testid="promote-form"
    >
      <p>
        Promote <code title={from.image ?? ''}>{shortDigest(from.image)}</code>
        {from.sourceCommit && (
          <>
            {' '}
            (source <code title={from.sourceCommit}>{shortSha(from.sourceCommit)}</code>)
          </>
        )}{' '}
        from <strong>{from.name}</strong> to{' '}
        {targets.length === 1 ? (
          <strong>{to}</strong>
        ) : (
          <select
            value={to}
            onChange={(event) => setTo(event.target.value)}
            aria-label="Environment to promote to"
            data-testid="promote-target"
          >
            {targets.map((env) => (
              <option key={env.name} value={env.name}>
                {env.name}
              </option>
            ))}
          </select>
        )}
        .
      </p>
      {target && (
        <p className="muted promote-replaces">
          {target.image ? (
            <>
              {to} runs <code title={target.image}>{shortDigest(target.image)}</code> now
              {target.digest === from.digest ? ': the same version.' : '.'}
            </>
          ) : (
            <>Nothing runs in {to} yet.</>
          )}
        </p>
      )}
      <div className="button-row">
        <button
          type="submit"
          className="button-primary"
          disabled={busy || !to}
          data-testid="promote-submit"
        >
          {busy ? 'Promoting…' : `Promote to ${to}`}
        </button>
        <button type="button" className="button-quiet" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
      <ErrorNote error={error} testId="promote-error" />
    </form>
  );
}
