/**
 * A canary or blue-green rollout of an environment: its phase, the step under way, the share
 * of traffic the new version gets, what its analysis measured (5xx rate, failed checks) and,
 * for blue-green, the preview address that serves only the new version.
 */
import type { Rollout } from '../api.js';
import { formatRate, shortDigest } from '../format.js';
import { rolloutActive } from './deployView.js';

const phaseTones: Record<string, string> = {
  progressing: 'busy',
  analyzing: 'busy',
  paused: 'wait',
  promoted: 'good',
  'rolled-back': 'bad',
  failed: 'bad',
};

export function RolloutProgress({ rollout }: { rollout: Rollout }) {
  const active = rolloutActive(rollout);
  const { analysis } = rollout;
  return (
    <section
      className={`rollout ${active ? 'rollout-active' : 'rollout-ended'}`}
      data-testid="env-rollout"
      data-phase={rollout.phase}
    >
      <div className="rollout-head">
        <strong>{rollout.strategy === 'canary' ? 'Canary' : 'Blue-green'} rollout</strong>
        <span
          className={`badge badge-${phaseTones[rollout.phase] ?? 'idle'}`}
          data-testid="env-rollout-phase"
        >
          {rollout.phase}
        </span>
        <span className="muted">
          {shortDigest(rollout.stableImage) || 'nothing'} → {shortDigest(rollout.canaryImage)}
        </span>
      </div>
      {rollout.strategy === 'canary' && (
        <div
          className="weight-bar"
          role="progressbar"
          aria-valuemin={0}
          aria-valuemax={100}
          aria-valuenow={rollout.weight}
          aria-label="Share of requests to the new version"
        >
          <span style={{ width: `${Math.min(100, Math.max(0, rollout.weight))}%` }} />
        </div>
      )}
      <dl className="facts rollout-facts">
        <dt>Step</dt>
        <dd data-testid="env-rollout-step">
          {rollout.step} of {rollout.steps}
        </dd>
        <dt>Weight</dt>
        <dd data-testid="env-rollout-weight">{rollout.weight}% to the new version</dd>
        <dt>5xx rate</dt>
        <dd data-testid="env-rollout-errors">
          {formatRate(analysis.errorRate)}{' '}
          <span className="muted">
            ({analysis.errors5xx} of {analysis.requests} requests
            {analysis.failedChecks > 0 && `, ${analysis.failedChecks} failed checks`})
          </span>
        </dd>
        {rollout.previewUrl && (
          <>
            <dt>Preview</dt>
            <dd>
              <a
                href={rollout.previewUrl}
                target="_blank"
                rel="noreferrer"
                data-testid="env-rollout-preview"
              >
                {rollout.previewUrl}
              </a>
            </dd>
          </>
        )}
      </dl>
      {rollout.message && <p className="rollout-message">{rollout.message}</p>}
    </section>
  );
}
