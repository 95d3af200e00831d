/** A coloured word for a run, job, step or environment state; the colour follows its meaning. */

const tone: Record<string, string> = {
  succeeded: 'good',
  healthy: 'good',
  failed: 'bad',
  degraded: 'bad',
  running: 'busy',
  progressing: 'busy',
  queued: 'idle',
  pending: 'idle',
  cancelled: 'muted',
  skipped: 'muted',
  missing: 'muted',
};

export function StatusBadge({ status, testId }: { status: string; testId?: string }) {
  return (
    <span
      className={`badge badge-${tone[status] ?? 'idle'}`}
      data-testid={testId}
      data-status={status}
    >
      {status}
    </span>
  );
}
