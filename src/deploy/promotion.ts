/**
 * Changes to what an environment runs, each one commit on the deploy repo: a deploy (an image
 * of the registry), a promotion (the exact digest another environment runs, rendered with the
 * target environment's settings, never rebuilt) and a rollback (the environment's folder as it
 * was at an earlier deploy). The subject reads as what happened, the author is the user, and
 * trailers carry the image, the source commit and where it came from. Where the environment
 * asks for approval (`environments.<env>.approval` in valve.yaml on the source repo's main
 * branch), the change waits in `deploy_approvals` until a member of the approving team
 * approves; only then is it committed.
 */
import { text } from 'node:stream/consumers';
import type { Kysely } from 'kysely';
import { ValveError, notFound } from '../errors.js';
import { FileValidationError } from '../formats/yaml.js';
import {
  logCommits,
  openObjectReader,
  readBranchHead,
  type CommitInfo,
  type GitService,
  type ObjectReader,
  type TreeFile,
} from '../git/index.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import { APP_SPEC_FILE, parseAppSpec, unknownApprovingTeam, type AppSpec } from './appspec.js';
import { repositoryOf } from './manifests.js';
import type { DeployTables } from './migrations.js';
import {
  appKey,
  deployRepoPath,
  envDir,
  insertEnvironment,
  readDesiredState,
} from './reconciler.js';
import { RENDERED_FILES, renderEnvironment } from './render.js';
import type { ImageSource } from './targets/target.js';

/** Commits Valve makes on its own behalf. */
export const VALVE_AUTHOR = { name: 'Valve', email: 'valve@localhost' } as const;
export const authorOf = (username: string | null) =>
  username && username !== 'valve' ? { name: username, email: `${username}@valve` } : VALVE_AUTHOR;

/** `hello@sha256:0123456789ab` */
const imageLabel = (app: string, digest: string) => `${app}@${digest.slice(0, 19)}`;
const digestOf = (reference: string) => reference.slice(reference.indexOf('@') + 1);
const shortSha = (sha: string | null | undefined) => (sha ? sha.slice(0, 7) : 'unknown');

/** A change waiting to be committed (and the JSON of an approval's `request`). */
export interface DeployChange {
  kind: 'deploy' | 'promote' | 'rollback';
  environment: string;
  /** Image reference pinned by digest. */
  image: string;
  sourceCommit: string | null;
  /** promote: the environment and deploy commit the digest was taken from. */
  from?: { environment: string; commit: string };
  /** rollback: the earlier deploy commit whose folder comes back. */
  rollbackTo?: string;
}

export function deployCommitMessage(
  app: string,
  change: DeployChange,
  approvedBy?: string | null,
): string {
  const subject = subjectOf(app, change);
  const trailers = [
    `Image: ${change.image}`,
    `Source-Commit: ${change.sourceCommit ?? 'unknown'}`,
    ...(change.from ? [`Promoted-From: ${change.from.environment} ${change.from.commit}`] : []),
    ...(change.rollbackTo ? [`Rolled-Back-To: ${change.rollbackTo}`] : []),
    ...(approvedBy ? [`Approved-By: ${approvedBy}`] : []),
  ];
  return `${subject}\n\n${trailers.join('\n')}\n`;
}

function subjectOf(app: string, change: DeployChange): string {
  const image = imageLabel(app, digestOf(change.image));
  switch (change.kind) {
    case 'deploy':
      return `deploy ${change.environment}: ${image} (source ${shortSha(change.sourceCommit)})`;
    case 'promote':
      return `promote ${change.from!.environment} -> ${change.environment}: ${image} (source ${shortSha(change.sourceCommit)})`;
    case 'rollback':
      return `rollback ${change.environment} to ${shortSha(change.rollbackTo)} (deploy of ${image})`;
  }
}

/** `Key: value` lines of a commit body. */
export function parseTrailers(body: string): Record<string, string> {
  const trailers: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const match = /^([A-Za-z][A-Za-z-]*): (.+)$/.exec(line.trim());
    if (match) trailers[match[1]!] = match[2]!;
  }
  return trailers;
}

/** One commit that changed an environment's folder. */
export interface DeployRecord {
  commit: string;
  subject: string;
  kind: 'deploy' | 'promote' | 'rollback' | 'create' | 'edit';
  /** Image reference pinned by digest; null where the folder had no workload. */
  image: string | null;
  digest: string | null;
  sourceCommit: string | null;
  author: string;
  email: string;
  date: string;
  promotedFrom: { environment: string; commit: string } | null;
  rolledBackTo: string | null;
  approvedBy: string | null;
}

export type ApprovalStatus =
  'pending' | 'approved' | 'rejected' | 'expired' | 'superseded' | 'failed';

export interface ApprovalView {
  id: string;
  kind: DeployChange['kind'];
  environment: string;
  /** The commit subject it will make, e.g. `promote stage -> prod: hello@sha256:… (source 1a2b3c4)`. */
  summary: string;
  image: string;
  sourceCommit: string | null;
  from: { environment: string; commit: string } | null;
  rollbackTo: string | null;
  /** The approving team. */
  team: string;
  status: ApprovalStatus;
  requestedBy: string;
  requestedAt: string;
  expiresAt: string;
  decidedBy: string | null;
  decidedAt: string | null;
  comment: string | null;
  /** The deploy-repo commit made once approved. */
  commit: string | null;
}

export type ChangeResult =
  | { status: 'committed'; commit: string; environment: string }
  | { status: 'pending'; approval: ApprovalView };

export interface PromotionOptions {
  db: Kysely<DeployTables>;
  git: GitService;
  images: ImageSource;
  /** host:port clients pull images from, e.g. 127.0.0.1:7080 */
  registryHost: () => string;
  /** An app's source repo under the git root (apps' convention: `team/app.git`). */
  sourceRepoPath?: (team: string, app: string) => string;
  /**
   * Whether a team of this name exists. An approval for a team nobody has created is refused:
   * whoever signed up first under that name would otherwise approve (and read) the app's
   * deployments. Without it, every team is taken to exist.
   */
  teamExists?: (name: string) => Promise<boolean>;
}

/**
 * The reads of one change: each repository through one `git cat-file --batch`, opened on first
 * use, and the deploy repo at one head. (A git process per file read made a promotion spawn
 * about 20 of them, tens of milliseconds each on a busy machine.)
 */
class ChangeReads {
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
function parseSourceSpec(content: Buffer | null): AppSpec | null {
  if (!content) return null;
  try {
    return parseAppSpec(content.toString(), APP_SPEC_FILE);
  } catch (error) {
    if (error instanceof FileValidationError)
      throw new ValveError('DEPLOY_SPEC_INVALID', error.message);
    throw error;
  }
}

type FileChanges = Record<string, { content: string | Buffer | null; executable?: boolean }>;

/**
 * The rendered files that differ from the folder at `head`, and the deletion of a file the
 * renderer wrote last time but not now (e.g. hpa.yaml); empty when the folder holds them.
 */
async function renderedChanges(
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
async function rollbackChanges(
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

/** How often a commit is computed again when `main` moved while it was being made. */
const COMMIT_ATTEMPTS = 3;

export class Promotions {
  constructor(private readonly options: PromotionOptions) {}

  // ---- the three changes ----

  /** Deploys an image already in the registry (a digest, `repo@digest`, `repo:tag` or a tag). */
  async deploy(
    team: string,
    app: string,
    environment: string,
    image: string,
    username: string,
  ): Promise<ChangeResult> {
    const resolved = await this.resolveImage(team, app, image);
    return this.withReads(team, app, async (reads) => {
      void reads.specAtMain();
      const sourceCommit = await this.sourceCommitOf(team, app, resolved);
      const spec = await this.specFor(reads, team, app, environment, sourceCommit);
      const change: DeployChange = {
        kind: 'deploy',
        environment,
        image: resolved.reference,
        sourceCommit,
      };
      return this.submit(reads, team, app, change, spec, username);
    });
  }

  /** Moves the digest `from` runs to `to`, rendered with `to`'s settings. */
  async promote(
    team: string,
    app: string,
    from: string,
    to: string,
    username: string,
  ): Promise<ChangeResult> {
    if (from === to)
      throw new ValveError('INPUT_INVALID', 'to: expected another environment than from');
    return this.withReads(team, app, async (reads) => {
      void reads.specAtMain();
      const current = await this.currentDeploy(reads, team, app, from);
      const spec = await this.specFor(reads, team, app, to, current.sourceCommit);
      const change: DeployChange = {
        kind: 'promote',
        environment: to,
        image: current.image,
        sourceCommit: current.sourceCommit,
        from: { environment: from, commit: current.commit },
      };
      return this.submit(reads, team, app, change, spec, username);
    });
  }

  /** Brings back the folder of an earlier deploy: `commit` (a prefix will do) or `stepsBack` deploys ago. */
  async rollback(
    team: string,
    app: string,
    environment: string,
    to: { commit?: string; stepsBack?: number },
    username: string,
  ): Promise<ChangeResult> {
    if (to.commit && !/^[0-9a-f]{4,40}$/.test(to.commit.toLowerCase()))
      throw new ValveError('INPUT_INVALID', 'commit: expected a commit id (4-40 hex digits)');
    return this.withReads(team, app, async (reads) => {
      void reads.specAtMain();
      const deploys = (await this.historyOf(reads, environment, 1000)).filter((d) => d.image);
      const current = deploys[0];
      if (!current)
        throw new ValveError(
          'DEPLOY_NOTHING_DEPLOYED',
          `nothing was deployed to ${environment} yet`,
        );
      let target: DeployRecord | undefined;
      if (to.commit) {
        const prefix = to.commit.toLowerCase();
        target = deploys.find((d) => d.commit.startsWith(prefix));
        if (!target)
          throw new ValveError(
            'DEPLOY_REVISION_UNKNOWN',
            `${to.commit} is not a deploy of ${environment}; \`valve history\` lists them`,
          );
      } else {
        const steps = to.stepsBack ?? 1;
        target = deploys[steps];
        if (!target)
          throw new ValveError(
            'DEPLOY_REVISION_UNKNOWN',
            `${environment} has ${deploys.length - 1} earlier deploy(s); cannot go ${steps} back`,
          );
      }
      if (target.commit === current.commit)
        throw new ValveError(
          'CONFLICT',
          `${shortSha(target.commit)} is what ${environment} runs already`,
        );
      const change: DeployChange = {
        kind: 'rollback',
        environment,
        image: target.image!,
        sourceCommit: target.sourceCommit,
        rollbackTo: target.commit,
      };
      return this.submit(reads, team, app, change, null, username);
    });
  }

  private async withReads<T>(
    team: string,
    app: string,
    work: (reads: ChangeReads) => Promise<T>,
  ): Promise<T> {
    const sourceRepoPath = this.options.sourceRepoPath ?? ((t, a) => `${t}/${a}.git`);
    const reads = new ChangeReads(
      this.options.git.pathOf(deployRepoPath(team, app)),
      this.options.git.pathOf(sourceRepoPath(team, app)),
    );
    try {
      return await work(reads);
    } finally {
      reads.close();
    }
  }

  /** Commits at once, or asks the approving team first. */
  private async submit(
    reads: ChangeReads,
    team: string,
    app: string,
    change: DeployChange,
    spec: AppSpec | null,
    username: string,
  ): Promise<ChangeResult> {
    const approval = await this.approvalPolicy(reads, change.environment, spec);
    if (approval) {
      if (this.options.teamExists && !(await this.options.teamExists(approval.team)))
        throw await this.missingApprovingTeam(reads, change.environment, approval.team);
      return {
        status: 'pending',
        approval: await this.requestApproval(team, app, change, approval, username),
      };
    }
    const commit = await this.write(reads, team, app, change, username, null, spec);
    return { status: 'committed', commit, environment: change.environment };
  }

  /** Writes the change as one deploy-repo commit. */
  async commit(
    team: string,
    app: string,
    change: DeployChange,
    username: string | null,
    approvedBy: string | null,
    spec?: AppSpec | null,
  ): Promise<string> {
    return this.withReads(team, app, (reads) =>
      this.write(reads, team, app, change, username, approvedBy, spec),
    );
  }

  private async write(
    reads: ChangeReads,
    team: string,
    app: string,
    change: DeployChange,
    username: string | null,
    approvedBy: string | null,
    spec?: AppSpec | null,
  ): Promise<string> {
    const dir = envDir(change.environment);
    const rendered =
      change.kind === 'rollback'
        ? null
        : renderEnvironment({
            spec:
              spec ??
              (await this.specFor(reads, team, app, change.environment, change.sourceCommit)),
            app,
            team,
            environment: change.environment,
            image: change.image,
            sourceCommit: change.sourceCommit ?? '',
          });
    // The row first: whoever waits for the environment finds it.
    await insertEnvironment(this.options.db, team, app, change.environment);
    for (let attempt = 1; ; attempt++) {
      const head = await reads.head();
      const changes = rendered
        ? await renderedChanges(reads, head, dir, rendered)
        : await rollbackChanges(reads, head, dir, change.rollbackTo!);
      // The folder holds this already (a re-run, a rollback to what runs): no empty commit; the
      // commit that wrote it stands for the change.
      if (head && Object.keys(changes).length === 0) {
        const [revision] = await logCommits(reads.deployGitDir, head, { limit: 1, path: dir });
        if (revision) return revision.sha;
      }
      try {
        return await this.options.git.commit(
          deployRepoPath(team, app),
          {
            branch: 'main',
            changes,
            message: deployCommitMessage(app, change, approvedBy),
            author: authorOf(username),
            // Only what differs from `head` is written, so the commit must go on `head`.
            expectedParent: head,
          },
          username ?? 'valve',
        );
      } catch (error) {
        // main moved meanwhile (a push, a pipeline's deploy): compare with the new head.
        if (!(error instanceof ValveError && error.code === 'CONFLICT')) throw error;
        if (attempt === COMMIT_ATTEMPTS) throw error;
        reads.forgetHead();
      }
    }
  }

  // ---- history ----

  /** Commits that changed the environment's folder, newest first, read from Git. */
  async history(
    team: string,
    app: string,
    environment: string,
    limit = 50,
  ): Promise<DeployRecord[]> {
    return this.withReads(team, app, (reads) => this.historyOf(reads, environment, limit));
  }

  private async historyOf(
    reads: ChangeReads,
    environment: string,
    limit: number,
  ): Promise<DeployRecord[]> {
    const head = await reads.head();
    if (!head) return [];
    const commits = await logCommits(reads.deployGitDir, head, {
      limit,
      path: envDir(environment),
    });
    return Promise.all(commits.map((commit) => this.record(reads, environment, commit)));
  }

  private async record(
    reads: ChangeReads,
    environment: string,
    commit: CommitInfo,
  ): Promise<DeployRecord> {
    const trailers = parseTrailers(commit.body);
    let image = trailers.Image ?? null;
    let sourceCommit = trailers['Source-Commit'] ?? null;
    if (!image) {
      // A commit by hand: read the image and source from its manifests.
      const found = await this.manifestFacts(reads, commit.sha, environment);
      image = found.image;
      sourceCommit = found.sourceCommit;
    }
    const [fromEnv, fromCommit] = (trailers['Promoted-From'] ?? '').split(' ');
    const verb = commit.subject.split(' ')[0];
    const kind: DeployRecord['kind'] =
      verb === 'deploy' || verb === 'promote' || verb === 'rollback'
        ? verb
        : verb === 'create'
          ? 'create'
          : 'edit';
    return {
      commit: commit.sha,
      subject: commit.subject,
      kind,
      image,
      digest: image ? digestOf(image) : null,
      sourceCommit: sourceCommit === 'unknown' ? null : sourceCommit,
      author: commit.author,
      email: commit.email,
      date: commit.date,
      promotedFrom: fromEnv && fromCommit ? { environment: fromEnv, commit: fromCommit } : null,
      rolledBackTo: trailers['Rolled-Back-To'] ?? null,
      approvedBy: trailers['Approved-By'] ?? null,
    };
  }

  private async manifestFacts(reads: ChangeReads, commit: string, environment: string) {
    const files = await reads.deploy.listFiles(commit, envDir(environment));
    const manifests = await reads.contents([...files].filter(([path]) => /\.ya?ml$/.test(path)));
    let image: string | null = null;
    let sourceCommit: string | null = null;
    for (const { content } of manifests) {
      const text = content.toString();
      image ??= /\bimage:\s*["']?([^\s"']+@sha256:[a-f0-9]{64})/.exec(text)?.[1] ?? null;
      sourceCommit ??= /valve\.dev\/source-commit:\s*["']?([0-9a-f]{7,40})/.exec(text)?.[1] ?? null;
    }
    return { image, sourceCommit };
  }

  /** What an environment's folder pins now: image, source commit and the commit that wrote it. */
  private async currentDeploy(reads: ChangeReads, team: string, app: string, environment: string) {
    const dir = envDir(environment);
    const head = await reads.head();
    const [files, [revision]] = head
      ? await Promise.all([
          reads.deploy.listFiles(head, dir),
          logCommits(reads.deployGitDir, head, { limit: 1, path: dir }),
        ])
      : [new Map<string, TreeFile>(), []];
    const manifests = await reads.contents([...files].filter(([path]) => /\.ya?ml$/.test(path)));
    let desired;
    try {
      desired = readDesiredState(
        manifests.map(({ path, content }) => ({ path, text: content.toString() })),
        `${team}/${app}/${environment}`,
      );
    } catch (error) {
      if (error instanceof FileValidationError)
        throw new ValveError('DEPLOY_MANIFEST_INVALID', `deploy repo: ${error.message}`);
      throw error;
    }
    if (!desired.workload || !revision)
      throw new ValveError('DEPLOY_NOTHING_DEPLOYED', `nothing is deployed to ${environment}`);
    return {
      image: desired.workload.image.reference,
      sourceCommit: desired.sourceCommit,
      commit: revision.sha,
    };
  }

  // ---- app spec and images ----

  /** The app spec to render `environment` with: the image's own commit's, else main's. */
  private async specFor(
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

  /**
   * Approval comes from valve.yaml on the source repo's main branch: the rule as it is now, so
   * an old image (whose spec may have had none) cannot slip past it. A valve.yaml on main
   * that does not validate leaves the rule to the image's spec; one that cannot be read
   * fails the change.
   */
  private async approvalPolicy(reads: ChangeReads, environment: string, spec: AppSpec | null) {
    const atMain = await reads
      .specAtMain()
      .then(parseSourceSpec)
      .catch((error: unknown) => {
        if (error instanceof ValveError && error.code === 'DEPLOY_SPEC_INVALID') return null;
        throw error;
      });
    return (
      atMain?.environments[environment]?.approval ??
      spec?.environments[environment]?.approval ??
      null
    );
  }

  /** The error for an approving team that does not exist, at its line of valve.yaml on main. */
  private async missingApprovingTeam(reads: ChangeReads, environment: string, team: string) {
    const text = await reads.specAtMain().catch(() => null);
    return new ValveError(
      'DEPLOY_APPROVAL_TEAM_UNKNOWN',
      unknownApprovingTeam(text?.toString() ?? null, environment, team),
    );
  }

  /** An image of the team's registry, pinned by digest: `{reference, repo, digest}`. */
  async resolveImage(team: string, app: string, input: string) {
    const value = input.trim();
    let repo = `${team}/${app}`;
    let reference = value;
    if (!/^sha256:[a-f0-9]{64}$/.test(value)) {
      const at = value.lastIndexOf('@');
      const colon = value.lastIndexOf(':');
      let name = '';
      if (at > 0) {
        name = value.slice(0, at);
        reference = value.slice(at + 1);
      } else if (colon > value.lastIndexOf('/')) {
        name = value.slice(0, colon);
        reference = value.slice(colon + 1);
      } else if (value.includes('/')) {
        throw new ValveError(
          'INPUT_INVALID',
          `image: expected a tag or digest in "${value}" (e.g. ${repo}:v1 or ${repo}@sha256:...)`,
        );
      }
      if (name) repo = repositoryOf(name);
    }
    if (!repo.startsWith(`${team}/`))
      throw new ValveError('INPUT_INVALID', `image: ${repo} is not a repository of team ${team}`);
    let manifest;
    try {
      manifest = await this.options.images.getManifest(repo, reference);
    } catch {
      throw new ValveError('INPUT_INVALID', `image: "${value}" is not an image reference`);
    }
    if (!manifest)
      throw new ValveError(
        'DEPLOY_IMAGE_UNAVAILABLE',
        `image ${repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference} is not in the registry`,
      );
    return {
      repo,
      digest: manifest.digest,
      reference: `${this.options.registryHost()}/${repo}@${manifest.digest}`,
    };
  }

  /** The commit an image was built from: its revision label, else an earlier deploy's trailer. */
  private async sourceCommitOf(
    team: string,
    app: string,
    image: { repo: string; digest: string },
  ): Promise<string | null> {
    try {
      const label = await this.revisionLabel(image.repo, image.digest);
      if (label) return label;
    } catch {
      // Unreadable config: fall back to the deploy history.
    }
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    for (const commit of await logCommits(gitDir, 'refs/heads/main', { limit: 500 })) {
      const trailers = parseTrailers(commit.body);
      const source = trailers['Source-Commit'];
      if (trailers.Image?.endsWith(image.digest) && source && source !== 'unknown') return source;
    }
    return null;
  }

  private async revisionLabel(repo: string, digest: string): Promise<string | null> {
    const { images } = this.options;
    let manifest = JSON.parse((await images.getManifest(repo, digest))!.body.toString()) as {
      manifests?: { digest: string }[];
      config?: { digest: string };
    };
    if (manifest.manifests?.[0]) {
      const first = await images.getManifest(repo, manifest.manifests[0].digest);
      if (!first) return null;
      manifest = JSON.parse(first.body.toString()) as typeof manifest;
    }
    if (!manifest.config) return null;
    const blob = await images.openBlob(manifest.config.digest);
    if (!blob) return null;
    const config = JSON.parse(
      await text(blob as NodeJS.ReadableStream & AsyncIterable<Buffer>),
    ) as {
      config?: { Labels?: Record<string, string> };
    };
    const revision = config.config?.Labels?.['org.opencontainers.image.revision'];
    return revision && /^[0-9a-f]{7,64}$/.test(revision) ? revision : null;
  }

  // ---- approvals ----

  private async requestApproval(
    team: string,
    app: string,
    change: DeployChange,
    approval: { team: string; timeoutMinutes: number },
    username: string,
  ): Promise<ApprovalView> {
    const key = appKey(team, app);
    // A newer request for the environment replaces one still waiting.
    await this.options.db
      .updateTable('deploy_approvals')
      .set({ status: 'superseded', decided_at: now() })
      .where('app_key', '=', key)
      .where('environment', '=', change.environment)
      .where('status', '=', 'pending')
      .execute();
    const row: DeployTables['deploy_approvals'] = {
      id: newId('appr'),
      app_key: key,
      kind: change.kind,
      environment: change.environment,
      request: JSON.stringify(change),
      summary: subjectOf(app, change),
      team: approval.team,
      status: 'pending',
      requested_by: username,
      requested_at: now(),
      expires_at: new Date(Date.now() + approval.timeoutMinutes * 60_000).toISOString(),
      decided_by: null,
      decided_at: null,
      comment: null,
      commit: null,
    };
    await this.options.db.insertInto('deploy_approvals').values(row).execute();
    return approvalView(row);
  }

  /** Marks pending approvals past their time as expired. */
  async expireApprovals(): Promise<void> {
    await this.options.db
      .updateTable('deploy_approvals')
      .set({ status: 'expired', decided_at: now() })
      .where('status', '=', 'pending')
      .where('expires_at', '<=', now())
      .execute();
  }

  async approvals(
    team: string,
    app: string,
    filter: { status?: string; teams?: string[] } = {},
  ): Promise<ApprovalView[]> {
    await this.expireApprovals();
    let query = this.options.db
      .selectFrom('deploy_approvals')
      .selectAll()
      .where('app_key', '=', appKey(team, app));
    if (filter.status) query = query.where('status', '=', filter.status);
    if (filter.teams) {
      if (filter.teams.length === 0) return [];
      query = query.where('team', 'in', filter.teams);
    }
    const rows = await query.orderBy('requested_at', 'desc').limit(200).execute();
    return rows.map(approvalView);
  }

  async approval(team: string, app: string, id: string): Promise<ApprovalView | null> {
    await this.expireApprovals();
    const row = await this.options.db
      .selectFrom('deploy_approvals')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? approvalView(row) : null;
  }

  /** A decision by a member of the approving team; approving commits the change. */
  async decide(input: {
    team: string;
    app: string;
    id: string;
    decision: 'approve' | 'reject';
    comment?: string;
    username: string;
    isMember: (team: string) => Promise<boolean>;
  }): Promise<ApprovalView> {
    const found = await this.approval(input.team, input.app, input.id);
    if (!found) throw notFound(`approval ${input.id}`);
    if (found.status !== 'pending')
      throw new ValveError('DEPLOY_APPROVAL_DECIDED', `the approval is already ${found.status}`);
    if (!(await input.isMember(found.team)))
      throw new ValveError(
        'AUTH_FORBIDDEN',
        `only members of team ${found.team} can approve deployments to ${found.environment}`,
      );
    const decided = await this.options.db
      .updateTable('deploy_approvals')
      .set({
        status: input.decision === 'approve' ? 'approved' : 'rejected',
        decided_by: input.username,
        decided_at: now(),
        comment: input.comment ?? null,
      })
      .where('id', '=', input.id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(decided.numUpdatedRows) === 0)
      throw new ValveError('DEPLOY_APPROVAL_DECIDED', 'the approval was decided meanwhile');
    if (input.decision === 'approve') {
      const row = await this.options.db
        .selectFrom('deploy_approvals')
        .selectAll()
        .where('id', '=', input.id)
        .executeTakeFirstOrThrow();
      try {
        const commit = await this.commit(
          input.team,
          input.app,
          JSON.parse(row.request) as DeployChange,
          row.requested_by,
          input.username,
        );
        await this.options.db
          .updateTable('deploy_approvals')
          .set({ commit })
          .where('id', '=', input.id)
          .execute();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        await this.options.db
          .updateTable('deploy_approvals')
          .set({ status: 'failed', comment: `approved, but the commit failed: ${message}` })
          .where('id', '=', input.id)
          .execute();
        throw error;
      }
    }
    return (await this.approval(input.team, input.app, input.id))!;
  }
}

export function approvalView(row: DeployTables['deploy_approvals']): ApprovalView {
  const change = JSON.parse(row.request) as DeployChange;
  return {
    id: row.id,
    kind: row.kind as DeployChange['kind'],
    environment: row.environment,
    summary: row.summary,
    image: change.image,
    sourceCommit: change.sourceCommit,
    from: change.from ?? null,
    rollbackTo: change.rollbackTo ?? null,
    team: row.team,
    status: row.status as ApprovalStatus,
    requestedBy: row.requested_by,
    requestedAt: row.requested_at,
    expiresAt: row.expires_at,
    decidedBy: row.decided_by,
    decidedAt: row.decided_at,
    comment: row.comment,
    commit: row.commit,
  };
}
