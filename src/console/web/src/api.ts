/**
 * The console's client for Valve's HTTP API (docs/api.md). Same origin, session cookie; every
 * failure becomes an ApiError carrying the API's `{error: {code, message}}`.
 */

export type Health = 'healthy' | 'progressing' | 'degraded' | 'missing';
export type RunStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export const finishedRunStatuses: readonly string[] = ['succeeded', 'failed', 'cancelled'];

export interface Membership {
  team: string;
  role: string;
  status: 'active' | 'pending';
}

export interface Me {
  username: string;
  teams: Membership[];
}

export interface Template {
  name: string;
  description: string;
}

export interface Instance {
  id: string;
  /** 0 while no process runs (e.g. waiting to restart). */
  pid: number;
  port: number;
  image: string;
  healthy: boolean;
  startedAt: string;
  /** starting, ready, unready, restarting, draining, stopping, stopped (targets that tell). */
  state?: string;
  restarts?: number;
}

export type SyncStatus = 'Synced' | 'OutOfSync' | 'Unknown';

export interface Environment {
  name: string;
  /** Stable address of the environment; null until the target has given it one. */
  url: string | null;
  health: Health;
  /** Desired (the deploy repo) against what was applied; Unknown when desired is unreadable. */
  syncStatus: SyncStatus;
  /** Image reference with digest last applied: the version. */
  image: string | null;
  digest: string | null;
  /** Null while nothing is deployed (as are deployCommit and deployedAt). */
  sourceCommit: string | null;
  /** Deploy-repo commit last applied. */
  deployCommit: string | null;
  /** Deploy-repo commit that last changed the environment's folder; null without one. */
  desiredCommit: string | null;
  deployedAt: string | null;
  /** Last reconcile error (file:line:column for a manifest), why it waits, or the target's note. */
  message: string | null;
  target: string;
  sync: SyncPolicy;
  /** What differs from what was applied, as last found. */
  drift: string[];
  instances: Instance[];
  lastSync: Sync | null;
  /** The last canary or blue-green rollout, where the API reports one. */
  rollout?: Rollout | null;
  /** Changes to it wait for a member of `team` (valve.yaml on main); null: they need none. */
  approval: { team: string; timeoutMinutes: number } | null;
  /** The change into it waiting for the approving team. */
  pendingApproval: DeployApproval | null;
}

export type JobStatus =
  'pending' | 'waiting' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'skipped';
export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired';
export type RunEvent = 'push' | 'workflow_dispatch' | 'schedule' | 'webhook' | 'rerun';
export const runStatuses: readonly RunStatus[] = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
];
export const runEvents: readonly RunEvent[] = [
  'push',
  'workflow_dispatch',
  'schedule',
  'webhook',
  'rerun',
];

export interface Step {
  index: number;
  name: string;
  /** "run", or the built-in step used, e.g. "valve/deploy@v1". */
  kind: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
}

export interface Approval {
  status: ApprovalStatus;
  /** The team whose members may decide. */
  team: string;
  requestedAt: string;
  expiresAt: string;
  decidedBy: string | null;
  decidedAt: string | null;
  comment: string | null;
}

export interface Job {
  /** Unique in the run: job id plus matrix values, e.g. "test (node 20)". */
  key: string;
  id: string;
  name: string;
  matrix: Record<string, unknown> | null;
  /** Keys of the jobs this one needs. */
  needs: string[];
  runsOn: string | string[] | null;
  status: JobStatus;
  startedAt: string | null;
  finishedAt: string | null;
  outputs: Record<string, string>;
  environment: { name: string; approval: Approval | null } | null;
  steps: Step[];
}

export interface Run {
  id: string;
  number: number;
  team: string;
  app: string;
  status: RunStatus;
  commit: string;
  ref: string;
  commitMessage: string | null;
  actor: string | null;
  trigger: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  error: string | null;
  /** The workflow file, e.g. .valve/workflows/ci.yml. */
  workflow: string;
  event: RunEvent;
  rerunOf: number | null;
  inputs: Record<string, unknown>;
  /** Markdown written by the steps. */
  summary: string | null;
  jobs: Job[];
}

/** Filters of a runs list; each is a query parameter of GET /api/runs and .../runs. */
export interface RunFilters {
  app?: string;
  status?: string;
  event?: string;
  branch?: string;
  actor?: string;
}
export const runFilterNames = ['app', 'status', 'event', 'branch', 'actor'] as const;

export type WorkflowInputType = 'string' | 'number' | 'boolean' | 'choice' | 'environment';

export interface WorkflowInput {
  type?: WorkflowInputType;
  description?: string;
  required?: boolean;
  default?: string | number | boolean;
  options?: string[];
}

export interface Workflow {
  /** The workflow file, e.g. .valve/workflows/deploy.yml. */
  file: string;
  name: string;
  /** What starts it, e.g. ["push", "workflowDispatch"]. */
  triggers: string[];
  /** The `on.workflow_dispatch.inputs`, or null. */
  inputs: Record<string, WorkflowInput> | null;
  /** Why the file is invalid, or null. */
  error: string | null;
}

export interface Secret {
  name: string;
  scope: 'app' | 'team';
  updatedAt: string;
  updatedBy: string;
}

/** The combined state of a commit's runs (the newest run of each workflow); "none" without runs. */
export interface CommitStatus {
  state: 'none' | 'pending' | 'success' | 'failure';
  runs: { number: number; workflow: string; status: RunStatus }[];
}

/** An external repository whose push webhooks start this app's runs. */
export interface RepositoryLink {
  provider: string;
  url: string;
  username: string | null;
}

export interface App {
  /** `approver`: the user approves changes to it from another team, and sees no runs. */
  access: 'team' | 'approver';
  team: string;
  name: string;
  template: string;
  createdAt: string;
  gitUrl: string;
  deployGitUrl: string;
  image: string;
  environments: Environment[];
  lastRun: Run | null;
}

export interface LogLine {
  n: number;
  ts: string;
  step: string | null;
  text: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/**
 * Fired when the API says the session is gone (401 outside sign-in), so the shell can show the
 * sign-in page instead of every page handling it.
 */
export const sessionEvents = new EventTarget();
export const SESSION_LOST = 'session-lost';

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = {
    method,
    credentials: 'same-origin',
    headers: { accept: 'application/json' },
  };
  if (body !== undefined) {
    // Only with a body: fastify rejects an empty body declared as JSON.
    init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'NETWORK', 'cannot reach the Valve server');
  }
  const text = await response.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!response.ok) {
    const error = (data as { error?: { code?: string; message?: string } } | undefined)?.error;
    if (
      response.status === 401 &&
      !path.startsWith('/api/login') &&
      !path.startsWith('/api/signup')
    ) {
      sessionEvents.dispatchEvent(new Event(SESSION_LOST));
    }
    throw new ApiError(
      response.status,
      error?.code ?? `HTTP_${response.status}`,
      error?.message ?? `${response.status} ${response.statusText || 'request failed'}`,
    );
  }
  return data as T;
}

const appPath = (team: string, app: string) =>
  `/api/apps/${encodeURIComponent(team)}/${encodeURIComponent(app)}`;
const runPath = (team: string, app: string, run: number) => `${appPath(team, app)}/runs/${run}`;
const teamPath = (team: string) => `/api/teams/${encodeURIComponent(team)}`;

export const runLogsPath = (team: string, app: string, run: number) =>
  `${runPath(team, app, run)}/logs`;

/**
 * "?status=failed&limit=50": the filters that are set, and the limit. The app filter is
 * "team/app" in the console and `team` + `app` (its name) for the API.
 */
function runsQuery(filters: RunFilters, limit: number): string {
  const query = new URLSearchParams();
  for (const name of runFilterNames) {
    const value = filters[name];
    if (!value) continue;
    if (name === 'app') {
      const [team, app] = value.split('/', 2);
      if (team) query.set('team', team);
      if (app) query.set('app', app);
    } else {
      query.set(name, value);
    }
  }
  query.set('limit', String(limit));
  return `?${query.toString()}`;
}

export const api = {
  me: () => request<Me>('GET', '/api/me'),
  signup: (body: { username: string; password: string; team: string }) =>
    request<{ user: { username: string }; membership: Membership }>('POST', '/api/signup', body),
  login: (body: { username: string; password: string }) =>
    request<{ user: { username: string } }>('POST', '/api/login', body),
  logout: () => request<void>('POST', '/api/logout'),
  templates: () => request<Template[]>('GET', '/api/templates'),
  apps: () => request<App[]>('GET', '/api/apps'),
  createApp: (body: { team: string; name: string; template: string }) =>
    request<App>('POST', '/api/apps', body),
  app: (team: string, app: string) => request<App>('GET', appPath(team, app)),

  allRuns: (filters: RunFilters, limit: number) =>
    request<Run[]>('GET', `/api/runs${runsQuery(filters, limit)}`),
  runs: (team: string, app: string, limit: number, filters: RunFilters = {}) =>
    request<Run[]>('GET', `${appPath(team, app)}/runs${runsQuery(filters, limit)}`),
  run: (team: string, app: string, run: number) => request<Run>('GET', runPath(team, app, run)),
  runLogs: (team: string, app: string, run: number) =>
    request<LogLine[]>('GET', runLogsPath(team, app, run)),
  cancelRun: (team: string, app: string, run: number) =>
    request<void>('POST', `${runPath(team, app, run)}/cancel`),
  rerun: (team: string, app: string, run: number, failedOnly: boolean) =>
    request<Run>('POST', `${runPath(team, app, run)}/rerun`, { failedOnly }),
  decideApproval: (
    team: string,
    app: string,
    run: number,
    job: string,
    body: { decision: 'approve' | 'reject'; comment: string },
  ) =>
    request<Run>(
      'POST',
      `${runPath(team, app, run)}/jobs/${encodeURIComponent(job)}/approval`,
      body,
    ),

  workflows: (team: string, app: string) =>
    request<Workflow[]>('GET', `${appPath(team, app)}/workflows`),
  dispatch: (
    team: string,
    app: string,
    body: { workflow: string; ref: string; inputs: Record<string, string | number | boolean> },
  ) => request<Run>('POST', `${appPath(team, app)}/dispatch`, body),
  commitStatus: (team: string, app: string, sha: string) =>
    request<CommitStatus>('GET', `${appPath(team, app)}/commits/${encodeURIComponent(sha)}/status`),

  appSecrets: (team: string, app: string) =>
    request<Secret[]>('GET', `${appPath(team, app)}/secrets`),
  teamSecrets: (team: string) => request<Secret[]>('GET', `${teamPath(team)}/secrets`),
  setSecret: (scope: SecretScope, name: string, value: string) =>
    request<void>('PUT', `${secretsPath(scope)}/${encodeURIComponent(name)}`, { value }),
  deleteSecret: (scope: SecretScope, name: string) =>
    request<void>('DELETE', `${secretsPath(scope)}/${encodeURIComponent(name)}`),

  repository: (team: string, app: string) =>
    request<RepositoryLink | null>('GET', `${appPath(team, app)}/external`),
  linkRepository: (
    team: string,
    app: string,
    body: { provider: string; url: string; secret: string; username?: string; password?: string },
  ) => request<void>('PUT', `${appPath(team, app)}/external`, body),
  unlinkRepository: (team: string, app: string) =>
    request<void>('DELETE', `${appPath(team, app)}/external`),

  teamImages: (team: string) => request<ImageRepository[]>('GET', `${teamPath(team)}/images`),
  imageTags: (team: string, app: string) =>
    request<ImageTag[]>('GET', `${imagesPath(team, app)}/tags`),
  imageManifest: (team: string, app: string, reference: string) =>
    request<ImageManifest>(
      'GET',
      `${imagesPath(team, app)}/manifests/${encodeURIComponent(reference)}`,
    ),
  deleteImageTag: (team: string, app: string, tag: string) =>
    request<void>('DELETE', `${imagesPath(team, app)}/tags/${encodeURIComponent(tag)}`),

  environments: (team: string, app: string) =>
    request<Environment[]>('GET', `${appPath(team, app)}/environments`),
  environmentDiff: (team: string, app: string, env: string) =>
    request<EnvironmentDiff>('GET', `${envPath(team, app, env)}/diff`),
  environmentHistory: (team: string, app: string, env: string, limit: number) =>
    request<DeployHistory>('GET', `${envPath(team, app, env)}/history?limit=${limit}`),
  syncEnvironment: (team: string, app: string, env: string) =>
    request<{ environment: Environment; sync: Sync | null }>(
      'POST',
      `${envPath(team, app, env)}/sync`,
      {},
    ),
  promote: (team: string, app: string, body: { from: string; to: string }) =>
    request<DeployChange>('POST', `${appPath(team, app)}/promote`, body),
  rollback: (team: string, app: string, env: string, body: { commit: string }) =>
    request<DeployChange>('POST', `${envPath(team, app, env)}/rollback`, body),
  deployApprovals: (team: string, app: string, status?: DeployApprovalStatus) =>
    request<DeployApproval[]>(
      'GET',
      `${appPath(team, app)}/approvals${status ? `?status=${status}` : ''}`,
    ),
  decideDeployApproval: (
    team: string,
    app: string,
    id: string,
    decision: 'approve' | 'reject',
    comment: string,
  ) =>
    request<DeployApproval>(
      'POST',
      `${appPath(team, app)}/approvals/${encodeURIComponent(id)}/${decision}`,
      comment ? { comment } : {},
    ),
};

const envPath = (team: string, app: string, env: string) =>
  `${appPath(team, app)}/environments/${encodeURIComponent(env)}`;

/** Where secrets live: an app's own, or its team's (every app of the team sees them). */
export type SecretScope = { team: string; app: string | null };
const secretsPath = (scope: SecretScope) =>
  scope.app === null
    ? `${teamPath(scope.team)}/secrets`
    : `${appPath(scope.team, scope.app)}/secrets`;

const imagesPath = (team: string, app: string) =>
  `${teamPath(team)}/images/${encodeURIComponent(app)}`;

/** Who pushed an image: over the registry, or a pipeline run's build step. */
export interface ImagePush {
  by: string | null;
  at: string;
  via: 'registry' | 'pipeline';
  /** The run that pushed (via "pipeline"), when known. */
  run: number | null;
}

export interface ImageRepository {
  /** "team/app" */
  repository: string;
  app: string;
  tagCount: number;
  /** Bytes of the distinct blobs its tags reach. */
  size: number;
  lastPush: (ImagePush & { tag: string | null; digest: string }) | null;
}

export interface ImagePlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageTag {
  tag: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  platforms: ImagePlatform[];
  created: string | null;
  pushed: ImagePush | null;
}

export interface ImageDescriptor {
  digest: string;
  mediaType: string;
  size: number;
}

export interface ImageConfig extends ImageDescriptor {
  os: string | null;
  architecture: string | null;
  variant: string | null;
  created: string | null;
  entrypoint: string[] | null;
  cmd: string[] | null;
  env: string[];
  ports: string[];
  user: string | null;
  workdir: string | null;
  labels: Record<string, string>;
}

export interface ImageManifest {
  repository: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  created: string | null;
  tags: string[];
  pushed: ImagePush | null;
  platforms: ImagePlatform[];
  config: ImageConfig | null;
  layers: ImageDescriptor[];
  manifests: (ImageDescriptor & { platform: ImagePlatform | null })[];
  subject: ImageDescriptor | null;
  artifactType: string | null;
  annotations: Record<string, string>;
  referrers?: (ImageDescriptor & {
    artifactType: string | null;
    annotations: Record<string, string>;
  })[];
}

// ---- Deploy (docs/api.md, "Deploy") ----

/** `environments.<env>.sync` of valve.yaml. */
export interface SyncPolicy {
  automated: boolean;
  selfHeal: boolean;
  prune: boolean;
}

/** One time the reconciler applied (or found drift in) an environment. */
export interface Sync {
  id: string;
  /** Deploy-repo commit synced. */
  commit: string;
  sourceCommit: string | null;
  image: string | null;
  /** auto, manual, promote, rollback, self-heal or prune. */
  trigger: string | null;
  /** A username, or "valve". */
  actor: string | null;
  /** running, succeeded, failed or drifted (differences found, recorded without applying). */
  status: string;
  message: string | null;
  startedAt: string;
  finishedAt: string | null;
}

/** Where a canary or blue-green rollout stands (a target's `RolloutStatus`). */
export interface Rollout {
  strategy: 'canary' | 'blue-green';
  phase: 'progressing' | 'paused' | 'analyzing' | 'promoted' | 'rolled-back' | 'failed';
  /** 1-based step under way; 0 before the first. */
  step: number;
  steps: number;
  /** Percent of requests the new version gets now. */
  weight: number;
  canaryImage: string;
  stableImage: string | null;
  previewUrl: string | null;
  message: string;
  analysis: { requests: number; errors5xx: number; errorRate: number; failedChecks: number };
  startedAt: string;
  updatedAt: string;
}

/** One commit that changed an environment's folder of the deploy repo. */
export interface DeployRecord {
  commit: string;
  subject: string;
  /** edit: a commit by hand; create: the folder's first commit. */
  kind: 'deploy' | 'promote' | 'rollback' | 'create' | 'edit';
  image: string | null;
  digest: string | null;
  sourceCommit: string | null;
  author: string;
  email: string;
  date: string;
  promotedFrom: { environment: string; commit: string } | null;
  rolledBackTo: string | null;
  approvedBy: string | null;
  /** The commit the environment runs. */
  live: boolean;
}

export interface DeployHistory {
  deploys: DeployRecord[];
  syncs: Sync[];
}

export interface DiffResource {
  /** "Deployment/hello" */
  resource: string;
  kind: string;
  name: string;
  file: string;
  line: number;
  health: Health;
  status: 'Synced' | 'OutOfSync';
}

/** One difference: a field (`path`), or a whole resource (`path` ""). */
export interface DiffItem {
  resource: string;
  path: string;
  /** null on the side that lacks it. */
  desired: unknown;
  live: unknown;
  /** Live only: a sync with prune deletes it. */
  prune?: true;
}

export interface EnvironmentDiff {
  environment: string;
  syncStatus: SyncStatus;
  desiredCommit: string | null;
  deployCommit: string | null;
  /** file:line:column of a broken manifest, or the target problem. */
  error: string | null;
  resources: DiffResource[];
  items: DiffItem[];
  drift: string[];
}

export type DeployApprovalStatus =
  'pending' | 'approved' | 'rejected' | 'expired' | 'superseded' | 'failed';

/** A deploy, promotion or rollback waiting for (or decided by) the approving team. */
export interface DeployApproval {
  id: string;
  kind: 'deploy' | 'promote' | 'rollback';
  environment: string;
  /** The subject of the commit it will make. */
  summary: string;
  image: string;
  sourceCommit: string | null;
  from: { environment: string; commit: string } | null;
  rollbackTo: string | null;
  /** The approving team. */
  team: string;
  status: DeployApprovalStatus;
  requestedBy: string;
  requestedAt: string;
  expiresAt: string;
  decidedBy: string | null;
  decidedAt: string | null;
  comment: string | null;
  /** The deploy-repo commit made once approved. */
  commit: string | null;
}

/** What a deploy, promotion or rollback did: committed at once, or waits for approval. */
export type DeployChange =
  | { status: 'committed'; commit: string; environment: string }
  | { status: 'pending'; approval: DeployApproval };
