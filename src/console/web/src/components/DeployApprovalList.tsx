/**
 * Deploys, promotions and rollbacks that wait for an approving team. Its members approve or
 * reject (with an optional comment); everyone else sees which team decides.
 */
import { api, type DeployApproval, type Me } from '../api.js';
import { formatRelative, formatTimestamp, shortDigest } from '../format.js';
import { DecisionForm, type Decision } from './DecisionForm.js';
import { isApprover } from './deployView.js';

export function DeployApprovalList({
  approvals,
  team,
  app,
  me,
  now,
  onDecided,
}: {
  approvals: DeployApproval[];
  team: string;
  app: string;
  me: Me;
  now: number;
  onDecided: (approval: DeployApproval) => void;
}) {
  if (approvals.length === 0) return null;
  return (
    <div className="deploy-approvals" data-testid="deploy-approvals">
      {approvals.map((approval) => (
        <DeployApprovalItem
          key={approval.id}
          approval={approval}
          team={team}
          app={app}
          me={me}
          now={now}
          onDecided={onDecided}
        />
      ))}
    </div>
  );
}

function DeployApprovalItem({
  approval,
  team,
  app,
  me,
  now,
  onDecided,
}: {
  approval: DeployApproval;
  team: string;
  app: string;
  me: Me;
  now: number;
  onDecided: (approval: DeployApproval) => void;
}) {
  const mayDecide = isApprover(me, approval.team) && approval.status === 'pending';
  const decide = async (decision: Decision, comment: string) =>
    onDecided(await api.decideDeployApproval(team, app, approval.id, decision, comment));

  return (
    <section
      className="approval"
      data-testid="deploy-approval"
      data-approval={approval.id}
      data-environment={approval.environment}
      data-status={approval.status}
    >
      <h3>
        {kindLabel(approval)} to <strong>{approval.environment}</strong>{' '}
        <span className="muted">waits for approval</span>
      </h3>
      <p className="approval-summary">
        <code>{approval.summary}</code>
      </p>
      <dl className="facts">
        <dt>Version</dt>
        <dd>
          <code title={approval.image}>{shortDigest(approval.image)}</code>
        </dd>
        <dt>Requested</dt>
        <dd title={formatTimestamp(approval.requestedAt)}>
          {formatRelative(approval.requestedAt, now)} by {approval.requestedBy}
        </dd>
        <dt>Approving team</dt>
        <dd data-testid="deploy-approval-team">{approval.team}</dd>
        <dt>Expires</dt>
        <dd>{formatTimestamp(approval.expiresAt)}</dd>
      </dl>
      {mayDecide ? (
        <DecisionForm testIdPrefix="deploy-approval" onDecide={decide} />
      ) : (
        <p className="muted" data-testid="deploy-approval-who">
          A member of team <strong>{approval.team}</strong> approves or rejects it.
        </p>
      )}
    </section>
  );
}

function kindLabel(approval: DeployApproval): string {
  switch (approval.kind) {
    case 'promote':
      return `Promotion from ${approval.from?.environment ?? 'another environment'}`;
    case 'rollback':
      return 'Rollback';
    default:
      return 'Deploy';
  }
}
