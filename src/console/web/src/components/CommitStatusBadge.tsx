/**
 * The commit status of the newest commit a branch ran (GET .../commits/:sha/status): one
 * combined state, and each workflow's run behind it in the tooltip.
 */
import { api, type CommitStatus } from '../api.js';
import { shortSha, workflowLabel } from '../format.js';
import { usePoll } from '../polling.js';
import { Link } from '../router.js';
import { StatusBadge } from './StatusBadge.js';

async function branchStatus(
  team: string,
  app: string,
  branch: string,
): Promise<(CommitStatus & { sha: string }) | null> {
  const [latest] = await api.runs(team, app, 1, { branch });
  if (!latest) return null;
  return { sha: latest.commit, ...(await api.commitStatus(team, app, latest.commit)) };
}

export function CommitStatusBadge({
  team,
  app,
  branch,
}: {
  team: string;
  app: string;
  branch: string;
}) {
  const status = usePoll(`${team}/${app}/status/${branch}`, () => branchStatus(team, app, branch));
  if (!status.data) return null;
  const { state, sha, runs } = status.data;
  const detail = runs
    .map((r) => `${workflowLabel(r.workflow)}: #${r.number} ${r.status}`)
    .join('\n');
  // The newest run behind the state; the one to open when it is not green.
  const latest = runs.reduce<(typeof runs)[number] | undefined>(
    (newest, r) => (!newest || r.number > newest.number ? r : newest),
    undefined,
  );
  const badge = <StatusBadge status={state} testId="commit-status-state" />;
  return (
    <span
      className="commit-status"
      data-testid="commit-status"
      data-state={state}
      data-commit={sha}
      title={detail || undefined}
    >
      <span className="muted">{branch}</span> <code>{shortSha(sha)}</code>{' '}
      {latest ? <Link to={`/apps/${team}/${app}/runs/${latest.number}`}>{badge}</Link> : badge}
    </span>
  );
}
