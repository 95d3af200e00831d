/**
 * Copies one pushed commit from an external repository into the app's hosted bare repository,
 * with the real `git fetch`, and points the branch (or tag) at exactly that commit: the one the
 * webhook named, not whatever the remote's branch points to by the time we fetch.
 *
 * Credentials reach git only through GIT_CONFIG_* environment variables of the one `git fetch`
 * process (an `http.extraHeader`), so they are never written to disk, into the repository's
 * config, or onto a command line other users can read; credential helpers are switched off so
 * none of them stores them either, and git never prompts.
 */
import { spawn } from 'node:child_process';
import { ValveError } from '../../errors.js';

export interface MirrorCommitOptions {
  /** Valve's bare source repository for the app. */
  gitDir: string;
  /** The external repository's clone URL (https or http; file only with `allowFileUrls`). */
  url: string;
  /** Full ref the commit was pushed to: `refs/heads/<branch>` or `refs/tags/<tag>`. */
  ref: string;
  /** Object id the ref must point to afterwards (for a tag, the tag object or the commit). */
  commit: string;
  credentials?: { username: string; password: string };
  /** Move the ref only if it still points here (null: only if it does not exist yet). */
  expectedOld?: string | null;
  signal?: AbortSignal;
  /**
   * Allow `file://` URLs. Off by default: a link to a path on the Valve host would let an app
   * copy any repository the server can read, other teams' included. Tests turn it on.
   */
  allowFileUrls?: boolean;
}

const OBJECT_ID = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

export async function mirrorCommit(options: MirrorCommitOptions): Promise<void> {
  const { gitDir, ref, commit, signal } = options;
  const url = checkUrl(options.url, options.allowFileUrls ?? false);
  if (!OBJECT_ID.test(commit)) {
    throw new ValveError('INPUT_INVALID', `commit: expected a hex object id, got "${commit}"`);
  }
  const kind = ref.startsWith('refs/heads/')
    ? 'branch'
    : ref.startsWith('refs/tags/')
      ? 'tag'
      : null;
  const validRef =
    kind !== null &&
    (await git(gitDir, ['check-ref-format', ref], { signal, okCodes: [1] })).code === 0;
  if (!validRef) {
    throw new ValveError(
      'INPUT_INVALID',
      `ref: expected refs/heads/<branch> or refs/tags/<tag>, got "${ref}"`,
    );
  }

  const fetch = (what: string) => fetchObjects(gitDir, url, what, options);
  // Usually the pushed commit is still the ref's tip, or an ancestor of it if the remote moved
  // on since; fetching the ref brings it. If the ref was force-pushed elsewhere (or deleted),
  // ask for the commit by id, which servers speaking protocol v2 answer by default.
  if (!(await hasObject(gitDir, commit, signal))) {
    const byRef = await fetch(ref);
    if (!(await hasObject(gitDir, commit, signal))) {
      const bySha = await fetch(commit);
      if (!(await hasObject(gitDir, commit, signal))) {
        // Both fetches failing is the remote's or the link's problem (address, credentials),
        // not evidence that the commit does not exist.
        if (byRef && bySha) {
          throw new ValveError(
            'GIT_FAILED',
            `could not fetch ${commit} from ${redactUrl(url)}: ${byRef}` +
              (bySha === byRef ? '' : `; by id: ${bySha}`),
          );
        }
        throw new ValveError(
          'NOT_FOUND',
          `commit ${commit} was not found at ${redactUrl(url)}: fetching ${ref} ` +
            (byRef ? `failed (${byRef})` : 'did not bring it') +
            `, and fetching it by id failed (${bySha ?? 'no error, but no commit either'})`,
        );
      }
    }
  }

  const type = (await git(gitDir, ['cat-file', '-t', commit], { signal })).stdout.trim();
  const peeled = (
    await git(gitDir, ['rev-parse', '--verify', '--quiet', `${commit}^{commit}`], {
      signal,
      okCodes: [1, 128],
    })
  ).stdout.trim();
  const acceptable = type === 'commit' || (kind === 'tag' && type === 'tag' && peeled !== '');
  if (!acceptable) {
    throw new ValveError(
      'INPUT_INVALID',
      `commit: ${commit} is a ${type}, not a commit${kind === 'tag' ? ' or a tag of one' : ''}`,
    );
  }

  const args = ['update-ref', '-m', `valve: mirror ${ref} from ${redactUrl(url)}`, ref, commit];
  const { expectedOld } = options;
  if (expectedOld === undefined) {
    await git(gitDir, args, { signal });
    return;
  }
  // Compare-and-swap: update-ref refuses if the ref is not where the caller last saw it.
  args.push(expectedOld ?? '0'.repeat(commit.length));
  const moved = await git(gitDir, args, { signal, okCodes: [128] });
  if (moved.code !== 0) {
    const where = expectedOld === null ? 'already exists' : `no longer points to ${expectedOld}`;
    throw new ValveError('CONFLICT', `${ref} ${where}; not moving it to ${commit}`);
  }
}

function checkUrl(raw: string, allowFileUrls: boolean): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ValveError('INPUT_INVALID', 'url: expected an http(s) clone URL');
  }
  const allowed = ['https:', 'http:', ...(allowFileUrls ? ['file:'] : [])];
  if (!allowed.includes(url.protocol)) {
    throw new ValveError(
      'INPUT_INVALID',
      `url: expected an http(s) clone URL, got a ${url.protocol.slice(0, -1)} URL`,
    );
  }
  if (url.username || url.password) {
    throw new ValveError(
      'INPUT_INVALID',
      'url: must not contain credentials; pass them as credentials instead',
    );
  }
  return url;
}

/** The URL as it may appear in logs and messages: no query (some hosts put tokens there). */
function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

async function hasObject(gitDir: string, oid: string, signal?: AbortSignal): Promise<boolean> {
  const result = await git(gitDir, ['cat-file', '-e', oid], { signal, okCodes: [1, 128] });
  return result.code === 0;
}

/**
 * Fetches `what` (a ref name or an object id) from the remote into the object store, without
 * creating or moving any ref, not even FETCH_HEAD. Returns null on success, or git's complaint.
 */
async function fetchObjects(
  gitDir: string,
  url: URL,
  what: string,
  options: MirrorCommitOptions,
): Promise<string | null> {
  const config: [string, string][] = [
    // An empty helper list: no helper is asked for, or stores, credentials.
    ['credential.helper', ''],
    // Only the transports we allow, also for anything the remote redirects us to.
    ['protocol.allow', 'never'],
    ['protocol.https.allow', 'always'],
    ['protocol.http.allow', 'always'],
    ['protocol.file.allow', options.allowFileUrls ? 'always' : 'never'],
  ];
  // Some hosts take tokens in the query string; git repeats the URL in its complaints.
  const secrets: string[] = url.search ? [url.search] : [];
  if (options.credentials) {
    const { username, password } = options.credentials;
    const basic = Buffer.from(`${username}:${password}`).toString('base64');
    config.push(['http.extraHeader', `Authorization: Basic ${basic}`]);
    secrets.push(password, basic);
  }
  const env: NodeJS.ProcessEnv = {
    GIT_TERMINAL_PROMPT: '0',
    GIT_ASKPASS: '',
    SSH_ASKPASS: '',
    GIT_CONFIG_COUNT: String(config.length),
  };
  config.forEach(([key, value], index) => {
    env[`GIT_CONFIG_KEY_${index}`] = key;
    env[`GIT_CONFIG_VALUE_${index}`] = value;
  });
  const result = await git(
    gitDir,
    [
      'fetch',
      '--quiet',
      '--no-tags',
      '--no-write-fetch-head',
      '--no-recurse-submodules',
      '--',
      url.href,
      what,
    ],
    { env, signal: options.signal, okCodes: [1, 128], secrets },
  );
  if (result.code === 0) return null;
  const complaint = result.stderr
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .join(' ');
  return redact(complaint, secrets) || `git fetch exited with ${result.code}`;
}

interface GitOptions {
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal | undefined;
  /** Exit codes that are answers, not failures. */
  okCodes?: number[];
  /** Strings that must never appear in an error message. */
  secrets?: string[];
}

function redact(text: string, secrets: string[]): string {
  return secrets.reduce((out, secret) => (secret ? out.split(secret).join('***') : out), text);
}

/** Runs git on the bare repository; aborting the signal kills it and its helpers. */
function git(
  gitDir: string,
  args: string[],
  options: GitOptions = {},
): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortError(options.signal));
      return;
    }
    const child = spawn('git', ['--git-dir', gitDir, ...args], {
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that aborting also stops the remote helper (git-remote-http)
      // that `git fetch` starts, which would otherwise hang on in a stalled download.
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const onAbort = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGTERM');
      } catch {
        // The group is already gone.
      }
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      options.signal?.removeEventListener('abort', onAbort);
      reject(error);
    });
    child.on('close', (code) => {
      options.signal?.removeEventListener('abort', onAbort);
      if (options.signal?.aborted) {
        reject(abortError(options.signal));
        return;
      }
      const exit = code ?? -1;
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (exit === 0 || options.okCodes?.includes(exit)) {
        resolve({ stdout, stderr, code: exit });
      } else {
        const message = redact(stderr.trim(), options.secrets ?? []);
        reject(new ValveError('GIT_FAILED', `git ${args[0]} failed: ${message}`));
      }
    });
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error
    ? signal.reason
    : new DOMException('mirroring was aborted', 'AbortError');
}
