/**
 * Server-side git operations on bare repositories, through the real `git` binary's plumbing
 * commands (no work tree): reading files at a commit, and committing files with a
 * compare-and-swap ref update so two writers can never lose each other's commit.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ValveError } from '../errors.js';

export const ZERO_OID = '0000000000000000000000000000000000000000';

export interface GitRunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  /** Exit codes that are answers, not failures (e.g. 1 from `rev-parse --verify`). */
  okCodes?: number[];
  /** Told the process id once it runs (to clean up after it). */
  onSpawn?: (pid: number | undefined) => void;
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
    options.onSpawn?.(child.pid);
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
  /** New content, or null to delete the path (a folder's path: everything under it). */
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

/** The branch fast-import builds on; never written (see commitFiles). */
const SCRATCH_BRANCH = 'refs/valve/commit-files';
const COMMITTER = 'Valve <valve@localhost>';

/**
 * Writes a commit on `branch` with the given file changes, without a work tree, in two git
 * processes: `git fast-import` writes the blobs, the trees and the commit, and `update-ref`
 * moves the branch only if it still points to the parent we built on (compare-and-swap). The
 * tip, when not given, is read from the branch's ref file (a rev-parse when it has none).
 *
 * Why this way (bench/promote, a promote's commit: 7 processes before, 3 now with
 * GitService's rev-parse): every git process costs a fork, an exec and git's start-up, tens
 * of milliseconds on a busy machine, whatever it does. A throw-away index took read-tree, a
 * hash-object per file (or one with --stdin-paths and temporary files), update-index,
 * write-tree, commit-tree and update-ref: six at best. `mktree --batch` needs every entry
 * of each tree it rewrites, so the parent's trees are read first: five. fast-import reads the
 * parent's trees itself and writes everything in one process.
 *
 * But fast-import's own ref update is no compare-and-swap: at its end it reads the ref again
 * and refuses only a non-fast-forward (builtin/fast-import.c, update_branch), so a branch
 * moved back (a forced push) meanwhile would be overwritten. So the commit is made on a
 * scratch branch that is `reset` before the end (fast-import writes no ref whose value is
 * null), its id is read with `get-mark`, and update-ref with the old value does the swap.
 *
 * fast-import takes idents and paths as given, where commit-tree and update-index check them
 * (git 2.39; fast-import checks paths only from 2.48), so they are checked here: names cleaned
 * as commit-tree does, and a path git would not put in a tree (update-index skipped it without
 * a word) refused with INPUT_INVALID before anything is written. Deleting a path that is a
 * folder deletes the folder (update-index left it alone); folders left empty are pruned, as
 * write-tree did. Dates are fast-import's `now`, the clock commit-tree read (GIT_AUTHOR_DATE
 * and GIT_COMMITTER_DATE are not read). Objects of a commit this small are written loose
 * (fastimport.unpackLimit, 100 by default: fast-import hands its pack to unpack-objects), as
 * hash-object and commit-tree did; keeping the pack would save that process but leave a pack
 * per commit, and nothing repacks these repositories.
 */
export async function commitFiles(gitDir: string, request: CommitRequest): Promise<string> {
  const ref = `refs/heads/${request.branch}`;
  const author = identOf(request.author);
  for (const path of Object.keys(request.changes)) {
    const problem = pathProblem(path);
    if (problem)
      throw new ValveError('INPUT_INVALID', `cannot commit ${JSON.stringify(path)}: ${problem}`);
  }
  // A line of fast-import's input names the parent: one word, as git names a revision.
  if (request.expectedParent && /[\0-\x20]/.test(request.expectedParent))
    throw new ValveError(
      'INPUT_INVALID',
      `not a revision: ${JSON.stringify(request.expectedParent)}`,
    );
  const parent =
    request.expectedParent === undefined
      ? await readBranchHead(gitDir, request.branch)
      : request.expectedParent;

  const stream: Buffer[] = [];
  const line = (command: string) => stream.push(Buffer.from(`${command}\n`));
  const data = (content: string | Buffer) => {
    const bytes = typeof content === 'string' ? Buffer.from(content) : content;
    line(`data ${bytes.length}`);
    stream.push(bytes, Buffer.from('\n'));
  };
  line(`commit ${SCRATCH_BRANCH}`);
  line('mark :1');
  line(`author ${author} now`);
  line(`committer ${COMMITTER} now`);
  data(request.message);
  if (parent) line(`from ${parent}`);
  if (request.replaceAll) line('deleteall');
  for (const [path, change] of Object.entries(request.changes)) {
    if (change.content === null) {
      line(`D ${quotePath(path)}`);
    } else {
      line(`M ${change.executable ? '100755' : '100644'} inline ${quotePath(path)}`);
      data(change.content);
    }
  }
  line('');
  line('get-mark :1');
  line(`reset ${SCRATCH_BRANCH}`);
  line('done');

  let pid: number | undefined;
  const imported = await runGit(gitDir, ['fast-import', '--quiet', '--done', '--date-format=now'], {
    input: Buffer.concat(stream),
    onSpawn: (child) => (pid = child),
  }).catch(async (error: unknown) => {
    // fast-import leaves a crash report in the repository when it dies; the error says enough.
    if (pid) await rm(join(gitDir, `fast_import_crash_${pid}`), { force: true });
    throw error;
  });
  const commit = imported.stdout.toString().trim();
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(commit))
    throw new ValveError('GIT_FAILED', `git fast-import answered ${JSON.stringify(commit)}`);
  const moved = await runGit(gitDir, ['update-ref', ref, commit, parent ?? ZERO_OID], {
    okCodes: [1, 128],
  });
  if (moved.code !== 0) {
    throw new ValveError('CONFLICT', `${request.branch} moved while committing; try again`);
  }
  return commit;
}

/**
 * `name <email>` as commit-tree writes it (ident.c, fmt_ident): "crud" (control characters,
 * spaces and `.,:;<>"\'`) trimmed from both ends of each, `<`, `>` and newlines dropped, and a
 * name with nothing else refused.
 */
function identOf({ name, email }: { name: string; email: string }): string {
  if (`${name}${email}`.includes('\0'))
    throw new ValveError('INPUT_INVALID', 'an author name or email with a NUL byte');
  if (!/[^\0-\x20.,:;<>"\\']/.test(name))
    throw new ValveError(
      'INPUT_INVALID',
      `author name ${JSON.stringify(name)} has no usable character`,
    );
  const clean = (value: string) =>
    value.replace(/^[\0-\x20.,:;<>"\\']+|[\0-\x20.,:;<>"\\']+$/g, '').replace(/[\n<>]/g, '');
  return `${clean(name)} <${clean(email)}>`;
}

/**
 * Why git would not put `path` in a tree (read-cache.c, verify_path, with core.protectNTFS
 * on as by default), or null: an empty, `.` or `..` component, a leading or trailing slash,
 * a `.git` component (or its NTFS aliases).
 */
function pathProblem(path: string): string | null {
  if (path.includes('\0')) return 'a NUL byte';
  for (const part of path.split('/')) {
    if (part === '') return 'an empty component';
    if (part === '.' || part === '..') return `a ${part} component`;
    if (part.split('\\').some((piece) => /^(?:\.git|git~1)[. ]*(?::|$)/i.test(piece)))
      return 'a .git component';
  }
  return null;
}

/** A path as fast-import reads it: C-style quoted, so any byte but NUL goes through. */
function quotePath(path: string): string {
  return `"${path.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`))}"`;
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
