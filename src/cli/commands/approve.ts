import type { Command } from 'commander';
import {
  ApiClient,
  CliError,
  appApiPath,
  parseAppRef,
  parseRunNumber,
  runApiPath,
} from '../client.js';
import type { DeployApprovalView, JobView, RunView } from '../views.js';

interface ApproveOptions {
  job?: string;
  id?: string;
  reject?: boolean;
  comment?: string;
}

const describe = (job: JobView) =>
  `"${job.key}" (environment ${job.environment?.name}, approved by team ${job.environment?.approval?.team})`;

/** The job to decide on: the one named, or the run's only pending approval. */
export function pendingJob(run: RunView, name: string | undefined): JobView {
  const pending = run.jobs.filter((job) => job.environment?.approval?.status === 'pending');
  if (name !== undefined) {
    const job = run.jobs.find((j) => j.key === name) ?? pending.find((j) => j.id === name);
    if (!job) throw new CliError(`run #${run.number} has no job "${name}"`);
    const status = job.environment?.approval?.status;
    if (status !== 'pending')
      throw new CliError(
        `job "${job.key}" of run #${run.number} ${status ? `is already ${status}` : 'needs no approval'}`,
      );
    return job;
  }
  if (pending.length === 1) return pending[0]!;
  if (pending.length === 0)
    throw new CliError(`run #${run.number} is ${run.status} and waits for no approval`);
  throw new CliError(
    `run #${run.number} waits for ${pending.length} approvals; choose one with --job:\n${pending.map((j) => `  ${describe(j)}`).join('\n')}`,
  );
}

/** The deploy approval to decide: the one named, or the app's only pending one. */
export function pendingDeployApproval(
  approvals: DeployApprovalView[],
  id: string | undefined,
  app: string,
): DeployApprovalView {
  if (id !== undefined) {
    const found = approvals.find((a) => a.id === id);
    if (!found) throw new CliError(`${app} has no approval ${id} that you can decide`);
    if (found.status !== 'pending') throw new CliError(`approval ${id} is already ${found.status}`);
    return found;
  }
  const pending = approvals.filter((a) => a.status === 'pending');
  if (pending.length === 1) return pending[0]!;
  if (pending.length === 0) throw new CliError(`${app} has no deploy waiting for approval`);
  throw new CliError(
    `${app} has ${pending.length} deploys waiting for approval; choose one with --id:\n${pending.map((a) => `  ${a.id}  ${a.summary} (team ${a.team})`).join('\n')}`,
  );
}

export function registerApprove(program: Command) {
  program
    .command('approve')
    .description(
      "approve (or --reject) a deployment that waits for approval: a pipeline run's job, or without <run> a deploy, promotion or rollback",
    )
    .argument('<team/app>')
    .argument('[run]', 'run number (without it: a deploy approval of the app)')
    .option('-j, --job <key>', 'the waiting job, if the run waits for more than one')
    .option('--id <approval>', 'the deploy approval, if more than one waits')
    .option('--reject', 'reject it: the job fails and does not deploy')
    .option('-m, --comment <text>', 'why, kept with the decision')
    .action(async (ref: string, number: string | undefined, options: ApproveOptions) => {
      const client = ApiClient.fromConfig();
      const decision = options.reject ? 'reject' : 'approve';
      if (number === undefined) {
        const appRef = parseAppRef(ref);
        const approvals = await client.request<DeployApprovalView[]>(
          'GET',
          `${appApiPath(appRef)}/approvals`,
        );
        const approval = pendingDeployApproval(approvals, options.id, ref);
        const decided = await client.request<DeployApprovalView>(
          'POST',
          `${appApiPath(appRef)}/approvals/${encodeURIComponent(approval.id)}/${decision}`,
          options.comment ? { comment: options.comment } : {},
        );
        console.log(
          `${decision === 'approve' ? 'approved' : 'rejected'}: ${decided.summary}` +
            (decided.commit ? ` (deploy repo ${decided.commit.slice(0, 12)})` : ''),
        );
        return;
      }
      const runRef = { ...parseAppRef(ref), number: parseRunNumber(number) };
      const job = pendingJob(await client.request<RunView>('GET', runApiPath(runRef)), options.job);
      await client.request(
        'POST',
        `${runApiPath(runRef)}/jobs/${encodeURIComponent(job.key)}/approval`,
        { decision, ...(options.comment ? { comment: options.comment } : {}) },
      );
      console.log(
        `${decision === 'approve' ? 'approved' : 'rejected'} the deployment of "${job.key}" to ${job.environment?.name} (run #${runRef.number})`,
      );
    });
}
