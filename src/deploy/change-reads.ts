/**
 * What a change reads, and the files it writes: `ChangeReads` reads the deploy repo and the
 * source repo through one `git cat-file --batch` each; `specFor` picks the app spec an
 * environment is rendered with; `renderedChanges` and `rollbackChanges` turn a change into the
 * files of its commit, only those that differ from the folder at the deploy repo's head.
 */
import { ValveError } from '../errors.js';
import { FileValidationError } from '../formats/yaml.js';
import {
  openObjectReader,
  readBranchHead,
  type ObjectReader,
  type TreeFile,
} from '../git/index.js';
import { APP_SPEC_FILE, parseAppSpec, type AppSpec } from './appspec.js';
import { RENDERED_FILES } from './render.js';

/**
 * The reads of one change: each repository through one `git cat-file --batch`, opened on first
 * use, and the deploy repo at one head. (A git process per file read made a promotion spawn
 * about 20 of them, tens of milliseconds each on a busy machine.)
 */
export class ChangeReads {
  private deployReader: ObjectReader | undefined;
  private sourceReader: ObjectReader | undefined;
  private headRead: Promise<string | null> | undefined;
  private mainSpecRead: Promise<Buffer | null> | undefined;

  constructor(
    readonly deployGitDir: string,
    private readonly sourceGitDir: string,
  ) {}

  get deploy(): ObjectReader {
    return (this.deployReader ??= openObjectReader(this.deployGitDir));
  }

  private get source(): ObjectReader {
    return (this.sourceReader ??= openObjectReader(this.sourceGitDir));
  }

  /** The deploy repo's `main` (null: no commit yet), read once until `forgetHead`. */
  head(): Promise<string | null> {
    return (this.headRead ??= readBranchHead(this.deployGitDir, 'main'));
  }

  /** `main` moved: the next `head()` reads it again. */
  forgetHead(): void {
    this.headRead = undefined;
  }

  /** valve.yaml on the source repo's main branch, read once; asked early, it is read beside the rest. */
  specAtMain(): Promise<Buffer | null> {
    if (!this.mainSpecRead) {
      this.mainSpecRead = this.source.readFile('refs/heads/main', APP_SPEC_FILE);
      // Read ahead: a failure is the caller's when it awaits the read, not an unhandled one.
      this.mainSpecRead.catch(() => undefined);
    }
    return this.mainSpecRead;
  }

  specAt(commit: string): Promise<Buffer | null> {
    return this.source.readFile(commit, APP_SPEC_FILE);
  }

  /** The contents of files of the deploy repo, in their order. */
  contents(files: [string, TreeFile][]): Promise<{ path: string; content: Buffer }[]> {
    return Promise.all(
      files.map(async ([path, file]) => {
        const blob = await this.deploy.read(file.oid);
        if (!blob)
          throw new ValveError('GIT_FAILED', `deploy repo: ${path} (${file.oid}) is missing`);
        return { path, content: blob.content };
      }),
    );
  }

  close(): void {
    this.deployReader?.close();
    this.sourceReader?.close();
  }
}

/** valve.yaml's content as an app spec; null for none. */
export function parseSourceSpec(content: Buffer | null): AppSpec | null {
  if (!content) return null;
  try {
    return parseAppSpec(content.toString(), APP_SPEC_FILE);
  } catch (error) {
    if (error instanceof FileValidationError)
      throw new ValveError('DEPLOY_SPEC_INVALID', error.message);
    throw error;
  }
}

/** The app spec to render `environment` with: the image's own commit's, else main's. */
export async function specFor(
  reads: ChangeReads,
  team: string,
  app: string,
  environment: string,
  sourceCommit: string | null,
): Promise<AppSpec> {
  const atSource = sourceCommit
    ? await reads
        .specAt(sourceCommit)
        .then(parseSourceSpec)
        .catch(() => null)
    : null;
  if (atSource?.environments[environment]) return atSource;
  const atMain = parseSourceSpec(await reads.specAtMain());
  if (atMain?.environments[environment]) return atMain;
  throw new ValveError(
    'DEPLOY_ENV_UNKNOWN',
    `environment ${environment} is not in ${APP_SPEC_FILE} of ${team}/${app}`,
  );
}

/** The files of a commit, by path: the content to write, or null to delete. */
export type FileChanges = Record<string, { content: string | Buffer | null; executable?: boolean }>;

/**
 * The rendered files that differ from the folder at `head`, and the deletion of a file the
 * renderer wrote last time but not now (e.g. hpa.yaml); empty when the folder holds them.
 */
export async function renderedChanges(
  reads: ChangeReads,
  head: string | null,
  dir: string,
  rendered: Record<string, string>,
): Promise<FileChanges> {
  const present = head ? await reads.deploy.listFiles(head, dir) : new Map<string, TreeFile>();
  const same = [...present].filter(([path]) => Object.hasOwn(rendered, path.slice(dir.length + 1)));
  const current = new Map(
    (await reads.contents(same)).map(({ path, content }) => [path, content] as const),
  );
  const changes: FileChanges = {};
  for (const [name, content] of Object.entries(rendered)) {
    const path = `${dir}/${name}`;
    if (!current.get(path)?.equals(Buffer.from(content))) changes[path] = { content };
  }
  for (const path of present.keys()) {
    const name = path.slice(dir.length + 1);
    if ((RENDERED_FILES as readonly string[]).includes(name) && !(name in rendered))
      changes[path] = { content: null };
  }
  return changes;
}

/** What makes the folder at `head` what it was at `commit`: files deleted, files written back. */
export async function rollbackChanges(
  reads: ChangeReads,
  head: string | null,
  dir: string,
  commit: string,
): Promise<FileChanges> {
  const [wanted, present] = await Promise.all([
    reads.deploy.listFiles(commit, dir),
    head ? reads.deploy.listFiles(head, dir) : new Map<string, TreeFile>(),
  ]);
  const changes: FileChanges = {};
  for (const path of present.keys()) if (!wanted.has(path)) changes[path] = { content: null };
  // Same blob, same content: only the others are read and written.
  const differing = [...wanted].filter(([path, file]) => present.get(path)?.oid !== file.oid);
  for (const { path, content } of await reads.contents(differing))
    changes[path] = { content, executable: wanted.get(path)!.mode === '100755' };
  return changes;
}
