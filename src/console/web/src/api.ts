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
}

export interface Environment {
  name: string;
  /** Stable address of the environment; null until the target has given it one. */
  url: string | null;
  health: Health;
  image: string | null;
  sourceCommit: string | null;
  deployCommit: string | null;
  deployedAt: string | null;
  message: string | null;
  instances: Instance[];
}

export interface Step {
  index: number;
  name: string;
  status: string;
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
}

export interface Job {
  id: string;
  name: string;
  status: string;
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
  jobs: Job[];
}

export interface App {
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

export const runLogsPath = (team: string, app: string, run: number) =>
  `${appPath(team, app)}/runs/${run}/logs`;

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
  runs: (team: string, app: string, limit: number) =>
    request<Run[]>('GET', `${appPath(team, app)}/runs?limit=${limit}`),
  run: (team: string, app: string, run: number) =>
    request<Run>('GET', `${appPath(team, app)}/runs/${run}`),
  runLogs: (team: string, app: string, run: number) =>
    request<LogLine[]>('GET', runLogsPath(team, app, run)),
  cancelRun: (team: string, app: string, run: number) =>
    request<void>('POST', `${appPath(team, app)}/runs/${run}/cancel`),
};
