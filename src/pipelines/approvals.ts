/**
 * Approval gates: a job whose `environment` asks for approval (in the app spec) waits until a
 * member of the approving team approves or rejects it, or until it expires.
 */
import type { Kysely } from 'kysely';
import { ValveError, forbidden, notFound } from '../errors.js';
import type { EventBus } from '../events.js';
import { now } from '../store/index.js';
import type { PipelineTables } from './migrations.js';

export type ApprovalDecision = 'approve' | 'reject';
export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'expired';

export class ApprovalGate {
  constructor(
    private readonly db: Kysely<PipelineTables>,
    private readonly events: EventBus,
  ) {}

  /** Records the request and waits for its outcome. */
  async wait(
    request: {
      runId: string;
      appId: string;
      jobKey: string;
      environment: string;
      team: string;
      timeoutMinutes: number;
    },
    signal: AbortSignal,
  ): Promise<ApprovalStatus> {
    const expiresAt = new Date(Date.now() + request.timeoutMinutes * 60_000).toISOString();
    await this.db
      .insertInto('approvals')
      .values({
        run_id: request.runId,
        job_key: request.jobKey,
        environment: request.environment,
        team: request.team,
        status: 'pending',
        requested_at: now(),
        expires_at: expiresAt,
        decided_by: null,
        decided_at: null,
        comment: null,
      })
      .onConflict((oc) =>
        oc.columns(['run_id', 'job_key']).doUpdateSet({
          status: 'pending',
          requested_at: now(),
          expires_at: expiresAt,
          decided_by: null,
          decided_at: null,
          comment: null,
        }),
      )
      .execute();
    this.events.emit('run.updated', { runId: request.runId, appId: request.appId });
    for (;;) {
      const row = await this.db
        .selectFrom('approvals')
        .select(['status', 'expires_at'])
        .where('run_id', '=', request.runId)
        .where('job_key', '=', request.jobKey)
        .executeTakeFirstOrThrow();
      if (row.status !== 'pending') return row.status as ApprovalStatus;
      if (signal.aborted) return 'pending';
      if (row.expires_at <= now()) {
        await this.db
          .updateTable('approvals')
          .set({ status: 'expired', decided_at: now() })
          .where('run_id', '=', request.runId)
          .where('job_key', '=', request.jobKey)
          .where('status', '=', 'pending')
          .execute();
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          off();
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(1000, Date.parse(row.expires_at) - Date.now() + 5));
        const off = this.events.on('run.updated', ({ runId }) => runId === request.runId && done());
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** A decision by a member of the approving team (checked by `isMember`). */
  async decide(input: {
    runId: string;
    appId: string;
    jobKey: string;
    decision: ApprovalDecision;
    comment?: string;
    username: string;
    isMember: (team: string) => Promise<boolean>;
  }): Promise<void> {
    const row = await this.db
      .selectFrom('approvals')
      .selectAll()
      .where('run_id', '=', input.runId)
      .where('job_key', '=', input.jobKey)
      .executeTakeFirst();
    if (!row) throw notFound(`approval for job ${input.jobKey}`);
    if (row.status !== 'pending')
      throw new ValveError('CONFLICT', `the approval is already ${row.status}`);
    if (!(await input.isMember(row.team)))
      throw forbidden(
        `only members of team ${row.team} can approve deployments to ${row.environment}`,
      );
    const result = await this.db
      .updateTable('approvals')
      .set({
        status: input.decision === 'approve' ? 'approved' : 'rejected',
        decided_by: input.username,
        decided_at: now(),
        comment: input.comment ?? null,
      })
      .where('run_id', '=', input.runId)
      .where('job_key', '=', input.jobKey)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0)
      throw new ValveError('CONFLICT', 'the approval was decided meanwhile');
    this.events.emit('run.updated', { runId: input.runId, appId: input.appId });
  }
}
