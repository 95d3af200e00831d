/**
 * Approvals of changes (`deploy_approvals`): which team an environment's changes wait for
 * (`approvalPolicy`: valve.yaml on the source repo's main branch), and the rows of the changes
 * waiting: requested (a newer one supersedes the one still waiting), expired past their time,
 * listed, and decided by a member of the approving team. Approving commits the change through
 * the `commit` Promotions gives; a commit that fails leaves the approval `failed`.
 */
import type { Kysely } from 'kysely';
import { ValveError, notFound } from '../errors.js';
import { newId } from '../ids.js';
import { now } from '../store/index.js';
import { unknownApprovingTeam, type AppSpec } from './appspec.js';
import { parseSourceSpec, type ChangeReads } from './change-reads.js';
import { subjectOf, type ApprovedBy, type DeployChange } from './deploy-change.js';
import { appKey } from './desired-state.js';
import type { DeployTables } from './migrations.js';

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

/** A decision by a member of the approving team. */
export interface ApprovalDecision {
  team: string;
  app: string;
  id: string;
  decision: 'approve' | 'reject';
  comment?: string;
  username: string;
  isMember: (team: string) => Promise<boolean>;
}

/** What approvals need of the deploy repo (Promotions). */
export interface ApprovalCommits {
  /** Writes an approved change as one deploy-repo commit; its sha. */
  commit(
    team: string,
    app: string,
    change: DeployChange,
    username: string | null,
    approved: ApprovedBy,
  ): Promise<string>;
  /** The commit an approval made (its `Approval:` trailer), or null. */
  findCommit(team: string, app: string, environment: string, id: string): Promise<string | null>;
}

/**
 * Approval comes from valve.yaml on the source repo's main branch: the rule as it is now, so
 * an old image (whose spec may have had none) cannot slip past it. A valve.yaml on main
 * that does not validate leaves the rule to the image's spec; one that cannot be read
 * fails the change.
 */
export async function approvalPolicy(
  reads: ChangeReads,
  environment: string,
  spec: AppSpec | null,
) {
  const atMain = await reads
    .specAtMain()
    .then(parseSourceSpec)
    .catch((error: unknown) => {
      if (error instanceof ValveError && error.code === 'DEPLOY_SPEC_INVALID') return null;
      throw error;
    });
  return (
    atMain?.environments[environment]?.approval ?? spec?.environments[environment]?.approval ?? null
  );
}

/** The error for an approving team that does not exist, at its line of valve.yaml on main. */
export async function missingApprovingTeam(reads: ChangeReads, environment: string, team: string) {
  const text = await reads.specAtMain().catch(() => null);
  return new ValveError(
    'DEPLOY_APPROVAL_TEAM_UNKNOWN',
    unknownApprovingTeam(text?.toString() ?? null, environment, team),
  );
}

export class DeployApprovals {
  constructor(
    private readonly db: Kysely<DeployTables>,
    private readonly commits: ApprovalCommits,
  ) {}

  async request(
    team: string,
    app: string,
    change: DeployChange,
    approval: { team: string; timeoutMinutes: number },
    username: string,
  ): Promise<ApprovalView> {
    const key = appKey(team, app);
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
    // A newer request for the environment replaces one still waiting, in one transaction: two
    // requests at once leave one waiting (an index allows one pending row per environment).
    await this.db.transaction().execute(async (tx) => {
      await tx
        .updateTable('deploy_approvals')
        .set({ status: 'superseded', decided_at: now() })
        .where('app_key', '=', key)
        .where('environment', '=', change.environment)
        .where('status', '=', 'pending')
        .execute();
      await tx.insertInto('deploy_approvals').values(row).execute();
    });
    return approvalView(row);
  }

  /**
   * Approvals a stopped server left approved without their commit: the commit found by its
   * `Approval:` trailer is recorded; where there is none, the approval is `failed` (the change
   * was never made; asking again decides on the present, not on an old request). Run at start.
   */
  async recover(): Promise<number> {
    const rows = await this.db
      .selectFrom('deploy_approvals')
      .selectAll()
      .where('status', '=', 'approved')
      .where('commit', 'is', null)
      .execute();
    for (const row of rows) {
      const [team, app] = row.app_key.split('/') as [string, string];
      const commit = await this.commits.findCommit(team, app, row.environment, row.id);
      await this.db
        .updateTable('deploy_approvals')
        .set(
          commit
            ? { commit }
            : {
                status: 'failed',
                comment: `approved, but the server stopped before the change was committed; ask again`,
              },
        )
        .where('id', '=', row.id)
        .where('status', '=', 'approved')
        .execute();
    }
    return rows.length;
  }

  /** Marks pending approvals past their time as expired. */
  async expire(): Promise<void> {
    await this.db
      .updateTable('deploy_approvals')
      .set({ status: 'expired', decided_at: now() })
      .where('status', '=', 'pending')
      .where('expires_at', '<=', now())
      .execute();
  }

  async list(
    team: string,
    app: string,
    filter: { status?: string; teams?: string[] } = {},
  ): Promise<ApprovalView[]> {
    await this.expire();
    let query = this.db
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

  async get(team: string, app: string, id: string): Promise<ApprovalView | null> {
    await this.expire();
    const row = await this.db
      .selectFrom('deploy_approvals')
      .selectAll()
      .where('app_key', '=', appKey(team, app))
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? approvalView(row) : null;
  }

  /** A decision by a member of the approving team; approving commits the change. */
  async decide(input: ApprovalDecision): Promise<ApprovalView> {
    const found = await this.get(input.team, input.app, input.id);
    if (!found) throw notFound(`approval ${input.id}`);
    if (found.status !== 'pending')
      throw new ValveError('DEPLOY_APPROVAL_DECIDED', `the approval is already ${found.status}`);
    if (!(await input.isMember(found.team)))
      throw new ValveError(
        'AUTH_FORBIDDEN',
        `only members of team ${found.team} can approve deployments to ${found.environment}`,
      );
    const decided = await this.db
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
      const row = await this.db
        .selectFrom('deploy_approvals')
        .selectAll()
        .where('id', '=', input.id)
        .executeTakeFirstOrThrow();
      try {
        const commit = await this.commits.commit(
          input.team,
          input.app,
          JSON.parse(row.request) as DeployChange,
          row.requested_by,
          { by: input.username, id: input.id },
        );
        await this.db
          .updateTable('deploy_approvals')
          .set({ commit })
          .where('id', '=', input.id)
          .execute();
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        await this.db
          .updateTable('deploy_approvals')
          .set({ status: 'failed', comment: `approved, but the commit failed: ${message}` })
          .where('id', '=', input.id)
          .execute();
        throw error;
      }
    }
    return (await this.get(input.team, input.app, input.id))!;
  }
}

/** Approvals still waiting (read only: past their time they count as expired already). */
export async function pendingApprovals(
  db: Kysely<DeployTables>,
  team: string,
  app: string,
): Promise<ApprovalView[]> {
  const rows = await db
    .selectFrom('deploy_approvals')
    .selectAll()
    .where('app_key', '=', appKey(team, app))
    .where('status', '=', 'pending')
    .where('expires_at', '>', now())
    .orderBy('requested_at', 'desc')
    .execute();
  return rows.map(approvalView);
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
