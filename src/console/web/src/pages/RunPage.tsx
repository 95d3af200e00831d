/**
 * One pipeline run: its job graph as it progresses, approvals it waits for, its summary, and
 * the selected job's steps and live log. The selected job is in the URL (`?job=<key>`).
 */
import { useState } from 'react';
import { api, finishedRunStatuses, type Job, type Run } from '../api.js';
import { ApprovalBox } from '../components/ApprovalBox.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { JobDetail } from '../components/JobDetail.js';
import { JobGraph } from '../components/JobGraph.js';
import { jobOfStep, LogView } from '../components/LogView.js';
import { Markdown } from '../components/Markdown.js';
import { RunHeader } from '../components/RunHeader.js';
import { useNow, usePoll } from '../polling.js';
import { Link, updateQuery, useQuery } from '../router.js';

export function RunPage({ team, name, number }: { team: string; name: string; number: number }) {
  const [streamEnded, setStreamEnded] = useState(false);
  const [finished, setFinished] = useState(false);
  // Poll until the run or its log says it is over; stopping triggers one last, final fetch.
  const polled = usePoll(
    `${team}/${name}/${number}`,
    () => api.run(team, name, number),
    !streamEnded && !finished,
  );
  const run = polled.data;
  const runFinished = run ? finishedRunStatuses.includes(run.status) : false;
  if (runFinished !== finished) setFinished(runFinished);
  const now = useNow(!runFinished);
  const selectedKey = useQuery().get('job');
  const appPath = `/apps/${team}/${name}`;

  const onEnd = () => {
    setStreamEnded(true);
    polled.reload();
  };

  const selected = run?.jobs.find((job) => job.key === selectedKey) ?? null;
  // Without a choice, the steps shown are those of the job that matters now.
  const shown = selected ?? (run ? jobInFocus(run.jobs) : null);
  const pendingApprovals =
    run?.jobs.filter((job) => job.environment?.approval?.status === 'pending') ?? [];

  return (
    <main className="page">
      <nav className="breadcrumbs">
        <Link to="/apps">Apps</Link> / <span>{team}</span> /{' '}
        <Link to={appPath} data-testid="run-app-link">
          {name}
        </Link>{' '}
        / <span>run #{number}</span>
      </nav>
      {!run ? (
        polled.error ? (
          <ErrorNote error={polled.error} />
        ) : (
          <p className="muted">Loading…</p>
        )
      ) : (
        <>
          <RunHeader run={run} now={now} onChanged={polled.reload} />
          <ErrorNote error={polled.error} />
          {run.error && (
            <p className="error-note" data-testid="run-error">
              {run.error}
            </p>
          )}
          {pendingApprovals.map((job) => (
            <ApprovalBox key={job.key} run={run} job={job} now={now} onDecided={polled.reload} />
          ))}
          <section className="card graph-card">
            {run.jobs.length === 0 ? (
              <p className="muted">Planning…</p>
            ) : (
              <JobGraph
                jobs={run.jobs}
                selected={selected?.key ?? null}
                onSelect={(key) => updateQuery({ job: key === selectedKey ? null : key })}
                now={now}
              />
            )}
          </section>
          {run.summary && (
            <section className="card run-summary">
              <h2>Summary</h2>
              <Markdown source={run.summary} testId="run-summary" />
            </section>
          )}
          <div className="run-layout">
            {shown ? <JobDetail job={shown} now={now} /> : <aside />}
            <div className="log-column">
              <div className="log-heading">
                <span data-testid="log-scope">
                  {selected ? (
                    <>
                      Log of <strong>{selected.key}</strong>
                    </>
                  ) : (
                    'Log of all jobs'
                  )}
                </span>
                {selected && (
                  <button
                    type="button"
                    className="button-small"
                    onClick={() => updateQuery({ job: null })}
                    data-testid="log-all-jobs"
                  >
                    All jobs
                  </button>
                )}
              </div>
              <LogView
                team={team}
                app={name}
                run={number}
                job={selected?.key ?? null}
                stepLabel={(step) => stepLabel(run, step)}
                onEnd={onEnd}
              />
            </div>
          </div>
        </>
      )}
    </main>
  );
}

/** The job to look at: one waiting for approval, else running, else failed, else the first. */
function jobInFocus(jobs: Job[]): Job | null {
  return (
    jobs.find((job) => job.environment?.approval?.status === 'pending') ??
    jobs.find((job) => job.status === 'running') ??
    jobs.find((job) => job.status === 'failed') ??
    jobs[0] ??
    null
  );
}

/** "build/2" -> "build › Run tests", from the run's own job keys and step names. */
function stepLabel(run: Run, step: string): string {
  const key = jobOfStep(step);
  const part = step.slice(key.length + 1);
  if (!part) return step;
  const found = run.jobs
    .find((job) => job.key === key)
    ?.steps.find((s) => String(s.index) === part);
  // Lines of the job's own (e.g. "build/setup") keep their part's name.
  return `${key} › ${found?.name ?? part}`;
}
