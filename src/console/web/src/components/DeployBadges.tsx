/**
 * Badges of the deploy vocabularies StatusBadge does not colour: sync status (Synced,
 * OutOfSync, Unknown), an instance's state and an environment's approval. Same shapes and
 * colour families.
 */
import type { Environment, SyncStatus } from '../api.js';

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

/**
 * Changes to the environment wait for an approving team: "approval: ops", or "approval
 * pending: ops" while one waits. Nothing for an environment that needs no approval.
 */
export function ApprovalBadge({
  env,
  testId,
}: {
  env: Pick<Environment, 'name' | 'approval' | 'pendingApproval'>;
  testId?: string;
}) {
  const pending = env.pendingApproval;
  // A request still waits after valve.yaml dropped the rule: its team decides it.
  const team = pending?.team ?? env.approval?.team;
  if (!team) return null;
  return (
    <span
      className={`badge badge-${pending ? 'wait' : 'muted'}`}
      data-testid={testId}
      data-team={team}
      data-pending={pending ? 'true' : 'false'}
      title={
        pending
          ? `${pending.summary}, asked by ${pending.requestedBy}: a member of team ${team} approves or rejects it`
          : `Deploys, promotions and rollbacks to ${env.name} wait for a member of team ${team}`
      }
    >
      {pending ? `approval pending: ${team}` : `approval: ${team}`}
    </span>
  );
}
