/**
 * Starts the real Valve server as a child process on 127.0.0.1 (port 0) with its own data
 * directory, and gives tests the public interfaces only: HTTP, real git, real HTTP to apps.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

export interface Valve {
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** Graceful stop (SIGTERM); app instances keep running. */
  stop(): Promise<void>;
  /** Hard kill (SIGKILL), as a crash would. */
  kill(): Promise<void>;
  /** Stops the server and every app instance it started, and removes the data directory. */
  destroy(): Promise<void>;
}

export async function startValve(
  options: { dataDir?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Valve> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'valve-test-'));
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(repoRoot, 'src/cli/main.ts'),
      'server',
      '--data-dir',
      dataDir,
      '--port',
      '0',
    ],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        VALVE_APP_PORT_BASE: String(20000 + Math.floor(Math.random() * 20000)),
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Valve listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]!);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('exit', (code) =>
      reject(new Error(`valve server exited (${code}) before listening:\n${output}`)),
    );
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(name);
    await exited;
  };
  return {
    url,
    dataDir,
    child,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
    async destroy() {
      await signal('SIGTERM');
      killProcessesUnder(dataDir);
      if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Kills every process whose working directory is inside `dir` (the app instances a test started). */
export function killProcessesUnder(dir: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // Gone, or not ours to read.
    }
  }
}

export interface Session {
  username: string;
  token: string;
  team: string;
}

export async function api<T = unknown>(
  valve: { url: string },
  token: string | null,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const response = await fetch(new URL(path, valve.url), {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
}

/** Signs up a user (creating the team) and returns an API token for git, the registry and the API. */
export async function signup(
  valve: { url: string },
  username: string,
  team: string,
  password = 'correct horse battery',
): Promise<Session> {
  const created = await fetch(new URL('/api/signup', valve.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password, team }),
  });
  if (created.status !== 201)
    throw new Error(`signup failed: ${created.status} ${await created.text()}`);
  const cookie = created.headers.get('set-cookie')!.split(';')[0]!;
  const token = await fetch(new URL('/api/tokens', valve.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie },
    body: JSON.stringify({ name: 'test' }),
  });
  return { username, team, token: ((await token.json()) as { token: string }).token };
}

/** Runs real git; throws with its output unless `allowFailure`. */
export function git(
  cwd: string,
  args: string[],
  options: { allowFailure?: boolean } = {},
): { code: number; output: string } {
  const result = spawnSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_TERMINAL_PROMPT: '0',
      GIT_AUTHOR_NAME: 'Test',
      GIT_AUTHOR_EMAIL: 'test@example.com',
      GIT_COMMITTER_NAME: 'Test',
      GIT_COMMITTER_EMAIL: 'test@example.com',
    },
  });
  const output = `${result.stdout}${result.stderr}`;
  if (result.status !== 0 && !options.allowFailure)
    throw new Error(`git ${args.join(' ')} failed (${result.status}):\n${output}`);
  return { code: result.status ?? -1, output };
}

export function cloneUrl(valve: { url: string }, session: Session, repo: string): string {
  const url = new URL(`/git/${repo}.git`, valve.url);
  url.username = session.username;
  url.password = session.token;
  return url.toString();
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 120_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface RunView {
  number: number;
  status: string;
  error: string | null;
  jobs: { steps: { name: string; status: string }[] }[];
}

export async function waitForRun(
  valve: Valve,
  session: Session,
  app: string,
  number: number,
  until: string[] = ['succeeded', 'failed', 'cancelled'],
): Promise<RunView> {
  return waitFor(
    `run #${number} of ${app} to be ${until.join('/')}`,
    async () => {
      const run = await api<RunView>(
        valve,
        session.token,
        'GET',
        `/api/apps/${app}/runs/${number}`,
      );
      return run.status === 200 && until.includes(run.body.status) ? run.body : undefined;
    },
    180_000,
  );
}

export async function runLog(
  valve: Valve,
  session: Session,
  app: string,
  number: number,
): Promise<string> {
  const lines = await api<{ text: string }[]>(
    valve,
    session.token,
    'GET',
    `/api/apps/${app}/runs/${number}/logs`,
  );
  return lines.body.map((l) => l.text).join('\n');
}
