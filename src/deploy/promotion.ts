/**
 * Changes to what an environment runs, each one commit on the deploy repo: a deploy (an image
 * of the registry), a promotion (the exact digest another environment runs, rendered with the
 * target environment's settings, never rebuilt) and a rollback (the environment's folder as it
 * was at an earlier deploy). The subject reads as what happened, the author is the user, and
 * trailers carry the image, the source commit and where it came from. Where the environment
 * asks for approval (`environments.<env>.approval` in valve.yaml on the source repo's main
 * branch), the change waits in `deploy_approvals` until a member of the approving team
 * approves; only then is it committed.
 *
 * This file holds `Promotions`: the three changes, and a change submitted (committed, or
 * waiting for approval) and committed. The parts: deploy-change.ts (the change and its commit
 * message), change-reads.ts (the reads of a change and the files it writes),
 * image-resolution.ts (an image pinned by digest and its source commit), deploy-history.ts
 * (deploys read back from Git), deploy-approvals.ts (approval policy and rows). Their names
 * are exported from here.
 */
import type { Kysely } from 'kysely';
import { ValveError } from '../errors.js';
import { logCommits, type GitService } from '../git/index.js';
import type { AppSpec } from './appspec.js';
import { ChangeReads, renderedChanges, rollbackChanges, specFor } from './change-reads.js';
import {
  DeployApprovals,
  approvalPolicy,
  missingApprovingTeam,
  type ApprovalDecision,
  type ApprovalView,
} from './deploy-approvals.js';
import {
  authorOf,
  deployCommitMessage,
  parseTrailers,
  shortSha,
  type ApprovedBy,
  type DeployChange,
} from './deploy-change.js';
import { currentDeploy, historyOf, type DeployRecord } from './deploy-history.js';
import { resolveImage, sourceCommitOf, type ResolvedImage } from './image-resolution.js';
import type { DeployTables } from './migrations.js';
import { deployRepoPath, envDir, insertEnvironment } from './reconciler.js';
import { renderEnvironment } from './render.js';
import type { ImageSource } from './targets/target.js';

export {
  VALVE_AUTHOR,
  authorOf,
  deployCommitMessage,
  parseTrailers,
  type DeployChange,
} from './deploy-change.js';
export type { DeployRecord } from './deploy-history.js';
export {
  approvalView,
  type ApprovalDecision,
  type ApprovalStatus,
  type ApprovalView,
} from './deploy-approvals.js';
export type { ResolvedImage } from './image-resolution.js';

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

/** How often a commit is computed again when `main` moved while it was being made. */
const COMMIT_ATTEMPTS = 3;

export class Promotions {
  private readonly approvalRows: DeployApprovals;

  constructor(private readonly options: PromotionOptions) {
    this.approvalRows = new DeployApprovals(options.db, {
      commit: (team, app, change, username, approved) =>
        this.commit(team, app, change, username, approved),
      findCommit: (team, app, environment, id) =>
        this.findApprovalCommit(team, app, environment, id),
    });
  }

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
      const sourceCommit = await sourceCommitOf(this.options, team, app, resolved);
      const spec = await specFor(reads, team, app, environment, sourceCommit);
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
      const current = await currentDeploy(reads, team, app, from);
      const spec = await specFor(reads, team, app, to, current.sourceCommit);
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
      const deploys = (await historyOf(reads, environment, 1000)).filter((d) => d.image);
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
    const approval = await approvalPolicy(reads, change.environment, spec);
    if (approval) {
      if (this.options.teamExists && !(await this.options.teamExists(approval.team)))
        throw await missingApprovingTeam(reads, change.environment, approval.team);
      return {
        status: 'pending',
        approval: await this.approvalRows.request(team, app, change, approval, username),
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
    approved: ApprovedBy | null,
    spec?: AppSpec | null,
  ): Promise<string> {
    return this.withReads(team, app, (reads) =>
      this.write(reads, team, app, change, username, approved, spec),
    );
  }

  /** The deploy-repo commit an approval made (its `Approval:` trailer), among the folder's last. */
  async findApprovalCommit(
    team: string,
    app: string,
    environment: string,
    id: string,
  ): Promise<string | null> {
    const gitDir = this.options.git.pathOf(deployRepoPath(team, app));
    const commits = await logCommits(gitDir, 'refs/heads/main', {
      limit: 100,
      path: envDir(environment),
    }).catch(() => []);
    return commits.find((commit) => parseTrailers(commit.body).Approval === id)?.sha ?? null;
  }

  private async write(
    reads: ChangeReads,
    team: string,
    app: string,
    change: DeployChange,
    username: string | null,
    approved: ApprovedBy | null,
    spec?: AppSpec | null,
  ): Promise<string> {
    const dir = envDir(change.environment);
    const rendered =
      change.kind === 'rollback'
        ? null
        : renderEnvironment({
            spec:
              spec ?? (await specFor(reads, team, app, change.environment, change.sourceCommit)),
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
            message: deployCommitMessage(app, change, approved),
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
    return this.withReads(team, app, (reads) => historyOf(reads, environment, limit));
  }

  // ---- images ----

  /** An image of the team's registry, pinned by digest: `{reference, repo, digest}`. */
  resolveImage(team: string, app: string, input: string): Promise<ResolvedImage> {
    return resolveImage(this.options, team, app, input);
  }

  // ---- approvals ----

  /** Marks pending approvals past their time as expired. */
  expireApprovals(): Promise<void> {
    return this.approvalRows.expire();
  }

  /** Settles approvals a stopped server left approved without their commit (at start). */
  recoverApprovals(): Promise<number> {
    return this.approvalRows.recover();
  }

  approvals(
    team: string,
    app: string,
    filter: { status?: string; teams?: string[] } = {},
  ): Promise<ApprovalView[]> {
    return this.approvalRows.list(team, app, filter);
  }

  approval(team: string, app: string, id: string): Promise<ApprovalView | null> {
    return this.approvalRows.get(team, app, id);
  }

  /** A decision by a member of the approving team; approving commits the change. */
  decide(input: ApprovalDecision): Promise<ApprovalView> {
    return this.approvalRows.decide(input);
  }
}
