import type { Command } from 'commander';
import { ApiClient, CliError, parseAppRef, parseRunNumber, runApiPath } from '../client.js';
import type { JobView, RunView } from '../views.js';

interface ApproveOptions {
  job?: string;
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

export function registerApprove(program: Command) {
  program
    .command('approve')
    .description('approve (or --reject) a deployment that waits for approval')
    .argument('<team/app>')
    .argument('<run>', 'run number')
    .option('-j, --job <key>', 'the waiting job, if the run waits for more than one')
    .option('--reject', 'reject it: the job fails and does not deploy')
    .option('-m, --comment <text>', 'why, kept with the decision')
    .action(async (ref: string, number: string, options: ApproveOptions) => {
      const runRef = { ...parseAppRef(ref), number: parseRunNumber(number) };
      const client = ApiClient.fromConfig();
      const job = pendingJob(await client.request<RunView>('GET', runApiPath(runRef)), options.job);
      const decision = options.reject ? 'reject' : 'approve';
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
