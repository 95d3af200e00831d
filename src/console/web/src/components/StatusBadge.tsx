/** A coloured word for a run, job, step or environment state; the colour follows its meaning. */

const tones: Record<string, string> = {
  succeeded: 'good',
  healthy: 'good',
  success: 'good',
  approved: 'good',
  failed: 'bad',
  degraded: 'bad',
  failure: 'bad',
  error: 'bad',
  rejected: 'bad',
  running: 'busy',
  progressing: 'busy',
  waiting: 'wait',
  queued: 'idle',
  pending: 'idle',
  cancelled: 'muted',
  skipped: 'muted',
  missing: 'muted',
  expired: 'muted',
};

/** good, bad, busy, wait, idle or muted: the colour family of a state. */
export const toneOf = (status: string) => tones[status] ?? 'idle';

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span className={`badge badge-${toneOf(status)}`} data-testid={testId} data-status={status}>
      {status}
    </span>
  );
}
