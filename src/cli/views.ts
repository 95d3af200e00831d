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
  /** Changes to it wait for a member of this team; null: none. */
  approval: { team: string; timeoutMinutes: number } | null;
  /** The change into it that waits for the approving team. */
  pendingApproval: DeployApprovalView | null;
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
  /** `approver`: the caller approves changes to it from another team, and sees no runs. */
  access: 'team' | 'approver';
  team: string;
  name: string;
  template: string;
  gitUrl: string;
  deployGitUrl: string;
  image: string;
  environments: EnvironmentView[];
  lastRun: RunView | null;
}

/** The APPROVAL column: the team that approves changes to the environment, and whether one waits. */
export function approvalLabel(env: Pick<EnvironmentView, 'approval' | 'pendingApproval'>): string {
  const team = env.pendingApproval?.team ?? env.approval?.team;
  if (!team) return '';
  return env.pendingApproval ? `${team} (pending)` : team;
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

/** Who pushed an image (GET /api/teams/:team/images...). */
export interface ImagePushView {
  by: string | null;
  at: string;
  via: 'registry' | 'pipeline';
  run: number | null;
}
export interface ImagePlatformView {
  os: string;
  architecture: string;
  variant?: string;
}
export interface ImageRepositoryView {
  repository: string;
  app: string;
  tagCount: number;
  size: number;
  lastPush: (ImagePushView & { tag: string | null; digest: string }) | null;
}
export interface ImageTagView {
  tag: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  platforms: ImagePlatformView[];
  created: string | null;
  pushed: ImagePushView | null;
}
export interface ImageDescriptorView {
  digest: string;
  mediaType: string;
  size: number;
}
export interface ImageManifestView {
  repository: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  created: string | null;
  tags: string[];
  pushed: ImagePushView | null;
  platforms: ImagePlatformView[];
  config:
    | (ImageDescriptorView & {
        os: string | null;
        architecture: string | null;
        variant: string | null;
        entrypoint: string[] | null;
        cmd: string[] | null;
        env: string[];
        ports: string[];
        user: string | null;
        workdir: string | null;
        labels: Record<string, string>;
      })
    | null;
  layers: ImageDescriptorView[];
  manifests: (ImageDescriptorView & { platform: ImagePlatformView | null })[];
  referrers?: (ImageDescriptorView & { artifactType: string | null })[];
}

/** "512 B", "4.2 KiB", "18 MiB" (binary units, as registries count). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export const platformLabel = (platform: ImagePlatformView) =>
  [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');

/** "cleo", or "run #12 (cleo)" for a pipeline's push; "" when unknown. */
export function pushedByLabel(push: ImagePushView | null): string {
  if (!push) return '';
  if (push.via === 'pipeline') {
    const run = push.run !== null ? `run #${push.run}` : 'pipeline';
    return push.by ? `${run} (${push.by})` : run;
  }
  return push.by ?? 'anonymous';
}

/** GET /api/apps/:team/:app/environments[/:env] (docs/api.md: Environment). */
export interface DeployEnvironmentView extends EnvironmentView {
  syncStatus: 'Synced' | 'OutOfSync' | 'Unknown';
  digest: string | null;
  deployCommit: string | null;
  desiredCommit: string | null;
  target: string;
  sync: { automated: boolean; selfHeal: boolean; prune: boolean };
  drift: string[];
  lastSync: SyncRecordView | null;
}
export interface SyncRecordView {
  id: string;
  commit: string;
  sourceCommit: string | null;
  image: string | null;
  trigger: string | null;
  actor: string | null;
  status: string;
  message: string | null;
  startedAt: string;
  finishedAt: string | null;
}
export interface DeployRecordView {
  commit: string;
  subject: string;
  kind: string;
  image: string | null;
  digest: string | null;
  sourceCommit: string | null;
  author: string;
  date: string;
  promotedFrom: { environment: string; commit: string } | null;
  rolledBackTo: string | null;
  approvedBy: string | null;
  live: boolean;
}
export interface DiffItemView {
  resource: string;
  path: string;
  desired: unknown;
  live: unknown;
  prune?: boolean;
}
export interface EnvironmentDiffView {
  environment: string;
  syncStatus: string;
  desiredCommit: string | null;
  deployCommit: string | null;
  error: string | null;
  resources: {
    resource: string;
    file: string;
    line: number;
    health: string;
    status: string;
  }[];
  items: DiffItemView[];
  drift: string[];
}
export interface DeployApprovalView {
  id: string;
  kind: string;
  environment: string;
  summary: string;
  team: string;
  status: string;
  requestedBy: string;
  requestedAt: string;
  expiresAt: string;
  decidedBy: string | null;
  comment: string | null;
  commit: string | null;
}
/** POST .../deploy, .../promote, .../rollback */
export type ChangeResultView =
  | { status: 'committed'; commit: string; environment: string }
  | { status: 'pending'; approval: DeployApprovalView };

/** Red and green for diffs, on a terminal only (and never with NO_COLOR). */
export function paint(color: 'red' | 'green' | 'dim', text: string): string {
  if (!process.stdout.isTTY || process.env.NO_COLOR) return text;
  const code = { red: 31, green: 32, dim: 2 }[color];
  return `\x1b[${code}m${text}\x1b[0m`;
}
