/**
 * Server-side git operations on bare repositories, through the real `git` binary's plumbing
 * commands (no work tree): reading files at a commit, and committing files with a
 * compare-and-swap ref update so two writers can never lose each other's commit.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ValveError } from '../errors.js';

export const ZERO_OID = '0000000000000000000000000000000000000000';

export interface GitRunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Exit codes that are answers, not failures (e.g. 1 from `rev-parse --verify`). */
  okCodes?: number[];
}

export function runGit(
  gitDir: string,
  args: string[],
  options: GitRunOptions = {},
): Promise<{ stdout: Buffer; code: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', ['--git-dir', gitDir, ...args], {
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const exit = code ?? -1;
      if (exit === 0 || options.okCodes?.includes(exit)) {
        resolve({ stdout: Buffer.concat(out), code: exit });
      } else {
        const message = Buffer.concat(err).toString().trim();
        reject(new ValveError('GIT_FAILED', `git ${args[0]} failed: ${message}`));
      }
    });
    // A command that does not read its input may exit first: that is not an error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

const text = async (gitDir: string, args: string[], options?: GitRunOptions) =>
  (await runGit(gitDir, args, options)).stdout.toString().trim();

export async function initBareRepo(gitDir: string, defaultBranch = 'main'): Promise<void> {
  await mkdir(gitDir, { recursive: true });
  await runGit(gitDir, ['init', '--quiet', '--bare', `--initial-branch=${defaultBranch}`]);
  // Pushes over HTTP are authenticated by Valve; let receive-pack accept them.
  await runGit(gitDir, ['config', 'http.receivepack', 'true']);
}

/** The commit a ref points to, or null if it does not exist. */
export async function resolveRef(gitDir: string, ref: string): Promise<string | null> {
  const { stdout, code } = await runGit(
    gitDir,
    ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`],
    {
      okCodes: [1, 128],
    },
  );
  return code === 0 ? stdout.toString().trim() : null;
}

/**
 * The commit a branch points to, or null. Read from the branch's loose ref file when it has
 * one (git's files backend keeps `<gitDir>/refs/heads/<branch>` as the hex object name and a
 * newline, written to a lock file and renamed, so a read never sees half of it; see
 * gitrepository-layout(5)); otherwise (packed refs, reftable, a symbolic ref) through
 * `git rev-parse`. By hand because the reconciler reads the head of every deploy repo on each
 * poll: a git process per read costs milliseconds of CPU, the file read microseconds.
 */
export async function readBranchHead(gitDir: string, branch: string): Promise<string | null> {
  try {
    const text = await readFile(join(gitDir, 'refs', 'heads', branch), 'latin1');
    if (/^(?:[0-9a-f]{40}|[0-9a-f]{64})\n?$/.test(text)) return text.trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
  }
  return resolveRef(gitDir, `refs/heads/${branch}`);
}

/** All refs with the commit they point to. */
export async function listRefs(gitDir: string): Promise<Map<string, string>> {
  const out = await text(gitDir, ['for-each-ref', '--format=%(refname) %(objectname)']);
  const refs = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [name, oid] = line.split(' ');
    if (name && oid) refs.set(name, oid);
  }
  return refs;
}

/** A file's content at a revision, or null when the path does not exist there. */
export async function readFileAt(
  gitDir: string,
  rev: string,
  path: string,
): Promise<Buffer | null> {
  const { stdout, code } = await runGit(gitDir, ['cat-file', 'blob', `${rev}:${path}`], {
    okCodes: [128],
  });
  return code === 0 ? stdout : null;
}

/** Paths of the files under `dir` at a revision (recursive), relative to the repo root. */
export async function listFilesAt(gitDir: string, rev: string, dir: string): Promise<string[]> {
  const { stdout, code } = await runGit(
    gitDir,
    ['ls-tree', '-r', '--name-only', '-z', rev, '--', dir],
    {
      okCodes: [128],
    },
  );
  if (code !== 0) return [];
  return stdout.toString().split('\0').filter(Boolean);
}

export interface CommitInfo {
  sha: string;
  parents: string[];
  author: string;
  email: string;
  date: string;
  subject: string;
  body: string;
}

export async function readCommit(gitDir: string, rev: string): Promise<CommitInfo | null> {
  const commits = await logCommits(gitDir, rev, { limit: 1 });
  return commits[0] ?? null;
}

export async function logCommits(
  gitDir: string,
  rev: string,
  options: { limit?: number; path?: string } = {},
): Promise<CommitInfo[]> {
  const args = ['log', '-z', `--format=%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%s%x1f%b`];
  if (options.limit) args.push(`-n${options.limit}`);
  args.push(rev);
  if (options.path) args.push('--', options.path);
  const { stdout, code } = await runGit(gitDir, args, { okCodes: [128] });
  if (code !== 0) return [];
  return stdout
    .toString()
    .split('\0')
    .filter(Boolean)
    .map((record) => {
      const [sha = '', parents = '', author = '', email = '', date = '', subject = '', body = ''] =
        record.split('\x1f');
      return {
        sha,
        parents: parents.split(' ').filter(Boolean),
        author,
        email,
        date,
        subject,
        body: body.trim(),
      };
    });
}

export interface FileChange {
  /** New content, or null to delete the path. */
  content: string | Buffer | null;
  executable?: boolean;
}

export interface CommitRequest {
  branch: string;
  changes: Record<string, FileChange>;
  message: string;
  author: { name: string; email: string };
  /** Commit the branch must still point to (null: must not exist yet). Omit to use its tip. */
  expectedParent?: string | null;
  /** Drop every file not named in `changes` (a full snapshot instead of a patch). */
  replaceAll?: boolean;
}

/**
 * Writes a commit on `branch` with the given file changes, without a work tree: blobs are
 * written with hash-object, a throw-away index builds the tree, and update-ref moves the branch
 * only if it still points to the parent we built on (compare-and-swap).
 */
export async function commitFiles(gitDir: string, request: CommitRequest): Promise<string> {
  const ref = `refs/heads/${request.branch}`;
  const parent =
    request.expectedParent === undefined ? await resolveRef(gitDir, ref) : request.expectedParent;
  const scratch = mkdtempSync(join(tmpdir(), 'valve-index-'));
  const env = { GIT_INDEX_FILE: join(scratch, 'index') };
  try {
    if (parent && !request.replaceAll) await runGit(gitDir, ['read-tree', parent], { env });
    else await runGit(gitDir, ['read-tree', '--empty'], { env });
    const entries: string[] = [];
    for (const [path, change] of Object.entries(request.changes)) {
      if (change.content === null) {
        entries.push(`0 ${ZERO_OID}\t${path}`);
        continue;
      }
      const oid = await text(gitDir, ['hash-object', '-w', '--stdin'], { input: change.content });
      entries.push(`${change.executable ? '100755' : '100644'} ${oid}\t${path}`);
    }
    if (entries.length) {
      await runGit(gitDir, ['update-index', '--index-info'], {
        env,
        input: entries.join('\n') + '\n',
      });
    }
    const tree = await text(gitDir, ['write-tree'], { env });
    const commitEnv = {
      GIT_AUTHOR_NAME: request.author.name,
      GIT_AUTHOR_EMAIL: request.author.email,
      GIT_COMMITTER_NAME: 'Valve',
      GIT_COMMITTER_EMAIL: 'valve@localhost',
    };
    const commit = await text(gitDir, ['commit-tree', tree, ...(parent ? ['-p', parent] : [])], {
      env: commitEnv,
      input: request.message,
    });
    const moved = await runGit(gitDir, ['update-ref', ref, commit, parent ?? ZERO_OID], {
      okCodes: [1, 128],
    });
    if (moved.code !== 0) {
      throw new ValveError('CONFLICT', `${request.branch} moved while committing; try again`);
    }
    return commit;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** An object of a repository, read by name. */
export interface GitObject {
  oid: string;
  type: 'blob' | 'tree' | 'commit' | 'tag';
  content: Buffer;
}

/** A file in a tree: its blob and its mode (`100644`, `100755`, `120000`). */
export interface TreeFile {
  oid: string;
  mode: string;
}

/**
 * Many reads through one `git cat-file --batch` process instead of a process each (on a busy
 * machine every git process costs tens of milliseconds). Answers come in the order asked.
 * Meant for the reads of one request: `close()` ends the process.
 */
export interface ObjectReader {
  /** An object by name (`<rev>:<path>`, a ref, an object id), or null when it names none. */
  read(name: string): Promise<GitObject | null>;
  /** A file's content at a revision, or null when `<rev>:<path>` is no file. */
  readFile(rev: string, path: string): Promise<Buffer | null>;
  /**
   * The files under `dir` at a revision, recursive, by path from the repo root, in the order
   * `git ls-tree -r` lists them (submodules left out); empty when there is no such folder.
   */
  listFiles(rev: string, dir: string): Promise<Map<string, TreeFile>>;
  /** Ends the process once the reads asked for are answered. */
  close(): void;
}

export function openObjectReader(gitDir: string): ObjectReader {
  const child = spawn('git', ['--git-dir', gitDir, 'cat-file', '--batch'], {
    env: { ...process.env, GIT_TERMINAL_PROMPT: '0' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const waiting: { resolve: (found: GitObject | null) => void; reject: (error: Error) => void }[] =
    [];
  const stderr: Buffer[] = [];
  let output: Buffer = Buffer.alloc(0);
  let ended: Error | null = null;
  let closed = false;
  const end = (error: Error) => {
    ended ??= error;
    for (const read of waiting.splice(0)) read.reject(ended);
  };
  child.on('error', end);
  child.on('close', (code) => {
    const message = Buffer.concat(stderr).toString().trim();
    end(
      new ValveError(
        'GIT_FAILED',
        code === 0 && !message
          ? 'git cat-file: the reader is closed'
          : `git cat-file failed: ${message || `exit ${code}`}`,
      ),
    );
  });
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  child.stdin.on('error', () => undefined);
  child.stdout.on('data', (chunk: Buffer) => {
    output = output.length ? Buffer.concat([output, chunk]) : chunk;
    for (;;) {
      const newline = output.indexOf(10);
      if (newline < 0) return;
      // `<oid> <type> <size>` and the content, or `<name> missing` (or `ambiguous`).
      const header = /^([0-9a-f]{40}|[0-9a-f]{64}) (blob|tree|commit|tag) (\d+)$/.exec(
        output.toString('latin1', 0, newline),
      );
      if (!header) {
        output = output.subarray(newline + 1);
        waiting.shift()?.resolve(null);
        continue;
      }
      const start = newline + 1;
      const size = Number(header[3]);
      if (output.length < start + size + 1) return;
      const content = Buffer.from(output.subarray(start, start + size));
      output = output.subarray(start + size + 1);
      waiting.shift()?.resolve({ oid: header[1]!, type: header[2] as GitObject['type'], content });
    }
  });

  const read = (name: string): Promise<GitObject | null> => {
    if (ended) return Promise.reject(ended);
    if (closed)
      return Promise.reject(new ValveError('GIT_FAILED', 'git cat-file: the reader is closed'));
    if (name.includes('\n'))
      return Promise.reject(new Error(`object name with a newline: ${name}`));
    return new Promise((resolve, reject) => {
      waiting.push({ resolve, reject });
      child.stdin.write(`${name}\n`);
    });
  };
  const walk = async (name: string, prefix: string, files: Map<string, TreeFile>) => {
    const tree = await read(name);
    if (tree?.type !== 'tree') return;
    // Entries: `<mode> <name>\0` and the object id in binary.
    const { content } = tree;
    const idBytes = tree.oid.length / 2;
    for (let at = 0; at < content.length;) {
      const space = content.indexOf(32, at);
      const nul = content.indexOf(0, space);
      const mode = content.toString('latin1', at, space);
      const path = `${prefix ? `${prefix}/` : ''}${content.toString('utf8', space + 1, nul)}`;
      const oid = content.toString('hex', nul + 1, nul + 1 + idBytes);
      at = nul + 1 + idBytes;
      if (mode === '40000') await walk(oid, path, files);
      else if (mode !== '160000') files.set(path, { oid, mode });
    }
  };
  return {
    read,
    async readFile(rev, path) {
      const found = await read(`${rev}:${path}`);
      return found?.type === 'blob' ? found.content : null;
    },
    async listFiles(rev, dir) {
      const files = new Map<string, TreeFile>();
      await walk(`${rev}:${dir}`, dir.replace(/\/+$/, ''), files);
      return files;
    },
    close() {
      closed = true;
      child.stdin.end();
    },
  };
}
