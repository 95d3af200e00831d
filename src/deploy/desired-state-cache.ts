/**
 * Each environment's desired state as the deploy repo's `main` says, kept per environment by
 * the tree id of its folder `envs/<env>`: a deploy commit to one environment re-reads that
 * environment only. A head that did not move costs nothing. A moved head is read through one
 * `git cat-file --batch`: the `envs` tree of the new head (commit -> tree -> `envs`), the files
 * of each folder whose tree id changed, and the commits since the head read before, walked to
 * find the commit that last changed each folder (what `git log -1 -- envs/<env>` names: history,
 * trigger and author come from it). One `git log` then describes the commits found; only a
 * folder the walk cannot settle (a merge on the way, a head that is not a descendant of the one
 * read before, a long way back) is asked of git alone, `git log -1 -- envs/<env>`.
 */
import { FileValidationError } from '../formats/yaml.js';
import { logCommits, openObjectReader, type CommitInfo, type ObjectReader } from '../git/index.js';
import { desiredHash, envDir, readDesiredState, type DesiredState } from './desired-state.js';

/** What an environment's folder at a deploy-repo head says. */
export interface DesiredRead {
  /** False: no folder (holding a file) at this head. */
  folder: boolean;
  /** The commit that last changed the folder (null: no folder). */
  revision: CommitInfo | null;
  desired: DesiredState | null;
  /** desiredHash of `desired`, when it has a workload (otherwise it depends on the row). */
  hash: string | null;
  error: { key: string; message: string } | null;
}

/** A folder's files as parsed: the same tree id has the same files, so it is parsed once. */
interface FolderContent {
  tree: string;
  /** False: the folder holds no file (e.g. only a submodule), which counts as no folder. */
  files: boolean;
  desired: DesiredState | null;
  hash: string | null;
  /** Why the manifests cannot be read (file:line:column: field). */
  invalid: string | null;
}

/** A folder read at a head; a failure (not a manifest error) fails that environment's pass only. */
type FolderRead = { content: FolderContent; read: DesiredRead } | { failure: unknown };

/** An app's deploy repo at one head. */
interface Snapshot {
  head: string;
  /** The names in `envs/` (a folder, or a file put there). */
  entries: string[];
  folders: Map<string, FolderRead>;
  /** A folder could not be read: the next ask for this head reads it again. */
  failed: boolean;
}

/** A tree entry: `40000` (a tree), `100644`, `100755`, `120000` or `160000`, and its object. */
interface TreeEntry {
  mode: string;
  oid: string;
}

const TREE_MODE = '40000';
/** Commits walked back from a new head at most; past them git's own `log -1 -- <folder>` is asked. */
const WALK_LIMIT = 64;

const noFolder = (): DesiredRead => ({
  folder: false,
  revision: null,
  desired: null,
  hash: null,
  error: null,
});

export class DesiredStateCache {
  /**
   * Per app (`team/app`), the snapshot at the head last asked for, or its read under way. A new
   * head's read starts from it (and waits for it), so one app's reads never overlap.
   */
  private readonly snapshots = new Map<string, { head: string; snapshot: Promise<Snapshot> }>();

  /** The names in the app's `envs/` at `head`: each folder is an environment. */
  async entries(gitDir: string, app: string, head: string): Promise<string[]> {
    return (await this.snapshot(gitDir, app, head)).entries;
  }

  /** The environment's folder at `head` (null: the branch does not exist, so no folder). */
  async read(
    gitDir: string,
    app: string,
    environment: string,
    head: string | null,
  ): Promise<DesiredRead> {
    if (!head) return noFolder();
    const folder = (await this.snapshot(gitDir, app, head)).folders.get(environment);
    if (folder && 'failure' in folder) throw folder.failure;
    return folder?.read ?? noFolder();
  }

  private snapshot(gitDir: string, app: string, head: string): Promise<Snapshot> {
    const current = this.snapshots.get(app);
    if (current?.head === head) return current.snapshot;
    const snapshot: Promise<Snapshot> = (current?.snapshot ?? Promise.resolve(null))
      .catch(() => null)
      .then((previous) => readSnapshot(gitDir, app, head, previous))
      .then(
        (read) => {
          if (read.failed) this.forget(app, snapshot);
          return read;
        },
        (error: unknown) => {
          this.forget(app, snapshot);
          throw error;
        },
      );
    this.snapshots.set(app, { head, snapshot });
    return snapshot;
  }

  private forget(app: string, snapshot: Promise<Snapshot>): void {
    if (this.snapshots.get(app)?.snapshot === snapshot) this.snapshots.delete(app);
  }
}

/** Reads the app's folders at `head`, reusing from `previous` every folder whose tree id is the same. */
async function readSnapshot(
  gitDir: string,
  app: string,
  head: string,
  previous: Snapshot | null,
): Promise<Snapshot> {
  const reader = openObjectReader(gitDir);
  try {
    const envs = await readEnvs(reader, head);
    const contents = await Promise.all(
      [...envs]
        .filter(([, entry]) => entry.mode === TREE_MODE)
        .map(async ([name, entry]): Promise<[string, FolderContent | { failure: unknown }]> => {
          const before = previous?.folders.get(name);
          if (before && 'content' in before && before.content.tree === entry.oid)
            return [name, before.content];
          try {
            return [name, await readFolder(reader, head, name, `${app}/${name}`, entry.oid)];
          } catch (failure) {
            return [name, { failure }];
          }
        }),
    );
    const withFiles = contents.flatMap(([name, c]) => ('files' in c && c.files ? [name] : []));
    const revisions = await lastChanges(gitDir, reader, head, envs, withFiles, previous);
    const folders = new Map<string, FolderRead>();
    for (const [name, content] of contents) {
      if ('failure' in content) {
        folders.set(name, content);
        continue;
      }
      const revision = revisions.get(name) ?? null;
      const before = previous?.folders.get(name);
      const unchanged =
        before &&
        'read' in before &&
        before.content === content &&
        before.read.revision === revision;
      folders.set(name, { content, read: unchanged ? before.read : describe(content, revision) });
    }
    return {
      head,
      entries: [...envs.keys()],
      folders,
      failed: contents.some(([, content]) => 'failure' in content),
    };
  } finally {
    reader.close();
  }
}

function describe(content: FolderContent, revision: CommitInfo | null): DesiredRead {
  return {
    folder: content.files,
    revision: content.files ? revision : null,
    desired: content.desired,
    hash: content.hash,
    error: content.invalid ? { key: `manifest:${revision?.sha}`, message: content.invalid } : null,
  };
}

/** An environment's folder: its files listed and its manifests read and parsed. */
async function readFolder(
  reader: ObjectReader,
  head: string,
  environment: string,
  key: string,
  tree: string,
): Promise<FolderContent> {
  const files = [...(await reader.listFiles(head, envDir(environment))).keys()];
  const content: FolderContent = {
    tree,
    files: files.length > 0,
    desired: null,
    hash: null,
    invalid: null,
  };
  if (!content.files) return content;
  const texts = await Promise.all(
    files
      .filter((path) => /\.ya?ml$/.test(path))
      .map(async (path) => ({ path, text: (await reader.readFile(head, path))!.toString() })),
  );
  try {
    content.desired = readDesiredState(texts, key);
    if (content.desired.workload) content.hash = desiredHash(key, content.desired);
  } catch (error) {
    if (!(error instanceof FileValidationError)) throw error;
    content.invalid = `deploy repo: ${error.message}`;
  }
  return content;
}

/**
 * The commit that last changed each named folder up to `head`, as `git log -1 -- envs/<name>`
 * names it. The commits since `previous.head` are walked through the reader (two reads each:
 * the parent commit and its `envs` tree), comparing each folder's tree id with the parent's;
 * on a line of single-parent commits that is git's own rule, and a folder no commit since then
 * changed keeps its commit. One `git log` describes the commits found.
 */
async function lastChanges(
  gitDir: string,
  reader: ObjectReader,
  head: string,
  envs: Map<string, TreeEntry>,
  names: string[],
  previous: Snapshot | null,
): Promise<Map<string, CommitInfo | null>> {
  const pending = new Set(names);
  const found = new Map<string, { sha: string; depth: number }>();
  let sha = head;
  let entries = envs;
  let commit = pending.size > 0 ? await reader.read(head) : null;
  let reachedPrevious = false;
  for (let depth = 0; pending.size > 0; depth++) {
    if (sha === previous?.head) {
      reachedPrevious = true;
      break;
    }
    if (commit?.type !== 'commit' || depth === WALK_LIMIT) break;
    const parents = parentsOf(commit.content);
    // A merge: which side git's history simplification follows is git's to say.
    if (parents.length > 1) break;
    const parent = parents[0];
    const parentCommit = parent ? await reader.read(parent) : null;
    if (parent && parentCommit?.type !== 'commit') break;
    const parentEntries = parent ? await readEnvs(reader, parent) : new Map<string, TreeEntry>();
    for (const name of pending) {
      if (entryId(entries.get(name)) !== entryId(parentEntries.get(name))) {
        found.set(name, { sha, depth });
        pending.delete(name);
      }
    }
    if (!parent) break; // the root commit added every folder still pending
    sha = parent;
    entries = parentEntries;
    commit = parentCommit;
  }

  const revisions = new Map<string, CommitInfo | null>();
  const alone: string[] = [];
  if (found.size > 0) {
    // The walk followed single parents from head, so these are the first commits of `git log`.
    const limit = Math.max(...[...found.values()].map((f) => f.depth)) + 1;
    const commits = await logCommits(gitDir, head, { limit });
    for (const [name, { sha: changed }] of found) {
      const info = commits.find((c) => c.sha === changed);
      if (info) revisions.set(name, info);
      else alone.push(name);
    }
  }
  for (const name of pending) {
    const before = reachedPrevious ? previous?.folders.get(name) : undefined;
    const kept = before && 'read' in before ? before.read.revision : null;
    if (kept) revisions.set(name, kept);
    else alone.push(name);
  }
  await Promise.all(
    alone.map(async (name) => {
      const [revision] = await logCommits(gitDir, head, { limit: 1, path: envDir(name) });
      revisions.set(name, revision ?? null);
    }),
  );
  return revisions;
}

const entryId = (entry: TreeEntry | undefined) => (entry ? `${entry.mode} ${entry.oid}` : '');

/** The entries of `<rev>:envs`, by name (none when there is no such folder). */
async function readEnvs(reader: ObjectReader, rev: string): Promise<Map<string, TreeEntry>> {
  const entries = new Map<string, TreeEntry>();
  const tree = await reader.read(`${rev}:envs`);
  if (tree?.type !== 'tree') return entries;
  // Entries: `<mode> <name>\0` and the object id in binary.
  const { content } = tree;
  const idBytes = tree.oid.length / 2;
  for (let at = 0; at < content.length;) {
    const space = content.indexOf(32, at);
    const nul = content.indexOf(0, space);
    entries.set(content.toString('utf8', space + 1, nul), {
      mode: content.toString('latin1', at, space),
      oid: content.toString('hex', nul + 1, nul + 1 + idBytes),
    });
    at = nul + 1 + idBytes;
  }
  return entries;
}

/** The `parent` lines of a commit object's header. */
function parentsOf(commit: Buffer): string[] {
  const text = commit.toString('latin1');
  const end = text.indexOf('\n\n');
  return (end < 0 ? text : text.slice(0, end))
    .split('\n')
    .filter((line) => line.startsWith('parent '))
    .map((line) => line.slice('parent '.length));
}
