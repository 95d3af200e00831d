/**
 * Following a run from the terminal: its log lines as they arrive (Server-Sent Events, every
 * job's lines in one stream, optionally only some jobs'), and its progress (each job's state
 * changes, approvals it waits for) on standard error, until the run is finished.
 */
import type { RunLogLine } from '../events.js';
import { ApiClient, CliError, runApiPath, type RunRef } from './client.js';
import { duration, finishedStatuses, type JobView, type RunView } from './views.js';

// How often progress is read while a run is followed (the log itself is pushed, not polled).
const PROGRESS_POLL_MS = 1000;

/** "test (node 20)/3" -> "test (node 20)": the job key is all before the last slash. */
export const jobOfStep = (step: string) => step.slice(0, Math.max(0, step.lastIndexOf('/')));

export function formatLogLine(line: RunLogLine): string {
  const job = line.step === null ? '' : `${jobOfStep(line.step)} | `;
  return `${String(line.n).padStart(5)}  ${line.ts.slice(11, 23)}  ${job}${line.text}`;
}

/**
 * The job keys a `--job` value names: a key ("test (node 20)"), or a job id that stands for
 * all its matrix entries ("test"). Unknown names are an error that lists the jobs.
 */
export function selectJobs(run: RunView, name: string): Set<string> {
  const exact = run.jobs.filter((job) => job.key === name);
  const chosen = exact.length ? exact : run.jobs.filter((job) => job.id === name);
  if (chosen.length === 0) {
    throw new CliError(
      `run #${run.number} has no job "${name}"; its jobs: ${run.jobs.map((j) => j.key).join(', ') || '(none yet)'}`,
    );
  }
  return new Set(chosen.map((job) => job.key));
}

/** Which lines to print: all, or only those of some jobs. */
export const lineFilter = (jobs: Set<string> | null) => (line: RunLogLine) =>
  jobs === null || (line.step !== null && jobs.has(jobOfStep(line.step)));

/** One line saying where a job is; printed whenever it changes. */
function jobProgress(ref: RunRef, job: JobView): string {
  const approval = job.environment?.approval;
  if (approval?.status === 'pending') {
    return `${job.key}: waiting for approval to deploy to ${job.environment?.name} by team ${approval.team} (until ${approval.expiresAt}); run: valve approve ${ref.team}/${ref.app} ${ref.number} --job '${job.key}'`;
  }
  const time = finishedStatuses.includes(job.status)
    ? ` in ${duration(job.startedAt, job.finishedAt)}`
    : '';
  return `${job.key}: ${job.status}${time}`;
}

/**
 * Streams the run's log to stdout (filtered by `jobs`) while printing progress to stderr;
 * resolves with the run's final status.
 */
export async function followRun(
  client: ApiClient,
  ref: RunRef,
  options: { jobs: Set<string> | null; progress: boolean },
): Promise<string> {
  const shown = lineFilter(options.jobs);
  let status = '';
  let stop = false;
  // The runner's own lines (of no step) mark job changes: each one brings the next look early.
  let nudged = false;
  let wake = () => {};
  const nudge = () => {
    nudged = true;
    wake();
  };
  const said = new Map<string, string>();
  const progress = async () => {
    for (;;) {
      // Once the log has ended, one last look shows every job's final state.
      const last = stop;
      nudged = false;
      try {
        const run = await client.request<RunView>('GET', runApiPath(ref));
        for (const job of run.jobs) {
          const line = jobProgress(ref, job);
          // Every job starts pending: only changes from there are news.
          if (said.get(job.key) !== line && (said.has(job.key) || job.status !== 'pending')) {
            process.stderr.write(`==> ${line}\n`);
          }
          said.set(job.key, line);
        }
        if (finishedStatuses.includes(run.status)) return;
      } catch {
        // Progress is a convenience: the log stream carries on and says how the run ended.
      }
      if (last) return;
      if (!nudged) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, PROGRESS_POLL_MS);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  };
  const progressDone = options.progress ? progress() : Promise.resolve();
  try {
    await client.events(`${runApiPath(ref)}/logs?follow=1`, (event, data) => {
      if (event === 'line') {
        const line = JSON.parse(data) as RunLogLine;
        if (shown(line)) console.log(formatLogLine(line));
        if (line.step === null) nudge();
      }
      if (event === 'end') status = (JSON.parse(data) as { status: string }).status;
    });
  } finally {
    stop = true;
    nudge();
    await progressDone;
  }
  if (!status) throw new CliError(`the log stream of run #${ref.number} ended before the run did`);
  return status;
}

/** The last words on a followed run, and the exit code: 0 only when it succeeded. */
export function reportEnd(ref: RunRef, status: string): void {
  process.stderr.write(`==> run #${ref.number} of ${ref.team}/${ref.app} ${status}\n`);
  if (status !== 'succeeded') process.exitCode = 1;
}
