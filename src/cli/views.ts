/** The API's shapes as the CLI reads them (docs/api.md). */
export interface EnvironmentView {
  name: string;
  url: string | null;
  health: string;
  image: string | null;
  sourceCommit: string | null;
  deployedAt: string | null;
  message: string | null;
  instances: { id: string; pid: number; port: number; healthy: boolean }[];
}
export interface StepView {
  index: number;
  name: string;
  kind: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
}
export interface ApprovalView {
  status: 'pending' | 'approved' | 'rejected' | 'expired';
  team: string;
  requestedAt: string;
  expiresAt: string;
  decidedBy: string | null;
  comment: string | null;
}
export interface JobView {
  key: string;
  id: string;
  name: string;
  matrix: Record<string, unknown> | null;
  needs: string[];
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  environment: { name: string; approval: ApprovalView | null } | null;
  steps: StepView[];
}
export interface RunView {
  number: number;
  team: string;
  app: string;
  status: string;
  commit: string;
  ref: string;
  commitMessage: string;
  actor: string;
  workflow: string;
  event: string;
  rerunOf: number | null;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  jobs: JobView[];
}
export interface WorkflowView {
  file: string;
  name: string;
  triggers: string[];
  inputs: Record<
    string,
    { type?: string; required?: boolean; default?: unknown; options?: string[] }
  > | null;
  error: string | null;
}
export interface SecretView {
  name: string;
  scope: 'app' | 'team';
  updatedAt: string;
  updatedBy: string;
}
export interface CommitStatusView {
  state: string;
  runs: { number: number; workflow: string; status: string }[];
}

export const finishedStatuses: readonly string[] = ['succeeded', 'failed', 'cancelled'];
export interface AppView {
  team: string;
  name: string;
  template: string;
  gitUrl: string;
  deployGitUrl: string;
  image: string;
  environments: EnvironmentView[];
  lastRun: RunView | null;
}

export const shortDigest = (image: string | null) =>
  image ? (image.split('@')[1] ?? image).slice(0, 19) : '';

export function ago(iso: string | null): string {
  if (!iso) return '';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

/** From start to finish (or now), as "12.3s"; empty before it started. */
export function duration(startedAt: string | null, finishedAt: string | null): string {
  if (!startedAt) return '';
  const ms = (finishedAt ? Date.parse(finishedAt) : Date.now()) - Date.parse(startedAt);
  return ms < 60_000
    ? `${(ms / 1000).toFixed(1)}s`
    : `${Math.floor(ms / 60_000)}m${Math.round((ms % 60_000) / 1000)}s`;
}

export const branchOf = (ref: string) => ref.replace(/^refs\/(heads|tags)\//, '');
export const workflowFile = (path: string) => path.split('/').pop() ?? path;
