/**
 * Badges of the deploy vocabularies StatusBadge does not colour: sync status (Synced,
 * OutOfSync, Unknown) and an instance's state. Same shapes and colour families.
 */
import type { SyncStatus } from '../api.js';

const syncTones: Record<string, string> = { Synced: 'good', OutOfSync: 'wait', Unknown: 'muted' };

const instanceTones: Record<string, string> = {
  ready: 'good',
  starting: 'busy',
  unready: 'bad',
  restarting: 'wait',
  draining: 'muted',
  stopping: 'muted',
  stopped: 'muted',
};

function Badge({ label, tone, testId }: { label: string; tone: string; testId?: string }) {
  return (
    <span className={`badge badge-${tone}`} data-testid={testId} data-status={label}>
      {label}
    </span>
  );
}

export function SyncBadge({ status, testId }: { status: SyncStatus; testId?: string }) {
  return <Badge label={status} tone={syncTones[status] ?? 'idle'} testId={testId} />;
}

export function InstanceStateBadge({ state, testId }: { state: string; testId?: string }) {
  return <Badge label={state} tone={instanceTones[state] ?? 'idle'} testId={testId} />;
}
