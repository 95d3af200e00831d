/**
 * What the deploy pages derive from the deploy API: whether an environment is busy (polled
 * every 2 s, else every 10 s), who may change or approve, where an environment promotes to,
 * and its history as one timeline of deploy-repo commits and the syncs nobody committed for.
 */
import { useCallback, useEffect, useState } from 'react';
import {
  api,
  finishedRunStatuses,
  type App,
  type DeployHistory,
  type DeployRecord,
  type Environment,
  type Me,
  type Rollout,
} from '../api.js';
import { usePoll, type Polled } from '../polling.js';

/** How often data nobody is waiting on is fetched again. */
export const SLOW_POLL_INTERVAL_MS = 10_000;

/**
 * `usePoll` every POLL_INTERVAL_MS while `fast`, else every SLOW_POLL_INTERVAL_MS: an idle
 * environment is still seen changing (a push, a drift), without a request every 2 s.
 */
export function useLivePoll<T>(key: string, load: () => Promise<T>, fast: boolean): Polled<T> {
  const polled = usePoll(key, load, fast);
  const { reload } = polled;
  useEffect(() => {
    if (fast) return;
    const timer = setInterval(reload, SLOW_POLL_INTERVAL_MS);
    return () => clearInterval(timer);
  }, [fast, reload]);
  return polled;
}

/** How long to poll fast after a change the API cannot show yet. */
export const HURRY_MS = 20_000;

/**
 * A commit the reconciler has not looked at yet looks like nothing is happening (the
 * environment still says Synced): after a change, and when a page opens (perhaps right after a
 * change made elsewhere), poll fast for HURRY_MS. Returns whether to hurry now, and `hurry()`.
 */
export function useHurry(now: number): [boolean, () => void] {
  const [until, setUntil] = useState(() => Date.now() + HURRY_MS);
  const hurry = useCallback(() => setUntil(Date.now() + HURRY_MS), []);
  return [now < until, hurry];
}

const rolloutUnderWay: readonly string[] = ['progressing', 'paused', 'analyzing'];

/** Runs looked through for the run that built a deployed commit. */
const RUNS_SEARCHED = 100;

/**
 * The run that built each of `commits` (its newest successful run, else its newest), fetched
 * again only when the set of commits changes.
 */
export function useRunOfCommit(
  team: string,
  app: string,
  commits: (string | null | undefined)[],
): (commit: string) => number | null {
  const wanted = [...new Set(commits.filter((c): c is string => !!c))].sort().join(',');
  const runs = usePoll(
    `${team}/${app}/runs-of/${wanted}`,
    () => (wanted ? api.runs(team, app, RUNS_SEARCHED) : Promise.resolve([])),
    false,
  );
  const data = runs.data;
  return useCallback(
    (commit: string) => {
      const ofCommit = (data ?? []).filter((run) => run.commit === commit);
      return (ofCommit.find((run) => run.status === 'succeeded') ?? ofCommit[0])?.number ?? null;
    },
    [data],
  );
}

/** A canary or blue-green rollout that has not reached its end yet. */
export const rolloutActive = (rollout: Rollout | null | undefined): boolean =>
  !!rollout && rolloutUnderWay.includes(rollout.phase);

/**
 * Something is about to change: instances starting, a sync running, a rollout moving, or a
 * commit an automatic sync has not applied yet (one whose sync failed waits for a new commit).
 */
export function environmentBusy(env: Environment): boolean {
  return (
    env.health === 'progressing' ||
    env.lastSync?.status === 'running' ||
    rolloutActive(env.rollout) ||
    (env.syncStatus === 'OutOfSync' && env.sync.automated && env.lastSync?.status !== 'failed')
  );
}

/**
 * An app whose run may deploy any moment (or just did, and the deploy may be settling), or one
 * of whose environments is busy.
 */
export function appBusy(app: App, now: number): boolean {
  const run = app.lastRun;
  const runBusy =
    run !== null &&
    (!finishedRunStatuses.includes(run.status) ||
      (run.finishedAt !== null && now - Date.parse(run.finishedAt) < HURRY_MS));
  return runBusy || app.environments.some(environmentBusy);
}

/** Roles that deploy, promote, roll back and sync (viewers only read). */
const changeRoles: readonly string[] = ['developer', 'admin'];

/** Whether `me` may change the team's environments (the API checks again). */
export const canChangeEnvironments = (me: Me, team: string) =>
  me.teams.some((m) => m.team === team && m.status === 'active' && changeRoles.includes(m.role));

/** Whether `me` is an active member of the team, in any role. */
export const isActiveMember = (me: Me, team: string) =>
  me.teams.some((m) => m.team === team && m.status === 'active');

/** Whether `me` decides approvals of the approving team: any active member does. */
export const isApprover = isActiveMember;

/**
 * Where `from` promotes to: the environments after it, in the app's order (the order
 * valve.yaml gave them); none from the last one.
 */
export function promotionTargets(environments: Environment[], from: string): Environment[] {
  const at = environments.findIndex((env) => env.name === from);
  return at < 0 ? [] : environments.slice(at + 1);
}

/** One line of an environment's history. */
export interface HistoryEntry {
  key: string;
  /** Deploy-repo commit. */
  commit: string;
  /** deploy, promote, rollback, create, edit (by hand), manual sync, self-heal, prune, drift. */
  trigger: string;
  image: string | null;
  sourceCommit: string | null;
  /** Who: the commit's author, or the sync's actor. */
  author: string | null;
  /** The outcome of applying it: running, succeeded, failed, drifted; null before any sync. */
  result: string | null;
  /** Why it failed, what drifted, or the commit subject. */
  message: string | null;
  at: string;
  /** The deploy a rollback can return to (a commit with an image); null for sync lines. */
  deploy: DeployRecord | null;
  /** The commit the environment runs. */
  live: boolean;
}

const syncTriggerLabels: Record<string, string> = {
  manual: 'manual sync',
  'self-heal': 'self-heal',
  prune: 'prune',
};

/**
 * Deploy-repo commits (each with the result of its own sync) and the syncs that were no
 * commit's (a manual sync, a self-heal, a prune, drift found), newest first.
 */
export function historyTimeline(history: DeployHistory): HistoryEntry[] {
  const entries: HistoryEntry[] = history.deploys.map((deploy) => {
    // Syncs come newest first: the first of the commit is its latest outcome.
    const sync = history.syncs.find(
      (s) => s.commit === deploy.commit && s.status !== 'drifted' && s.trigger !== 'self-heal',
    );
    return {
      key: `deploy-${deploy.commit}`,
      commit: deploy.commit,
      trigger: deploy.kind,
      image: deploy.image,
      sourceCommit: deploy.sourceCommit,
      author: deploy.author,
      result: sync?.status ?? null,
      message: sync?.status === 'failed' ? sync.message : deploy.subject,
      at: deploy.date,
      deploy: deploy.image ? deploy : null,
      live: deploy.live,
    };
  });
  for (const sync of history.syncs) {
    const label =
      sync.status === 'drifted' ? 'drift' : (syncTriggerLabels[sync.trigger ?? ''] ?? null);
    if (!label) continue;
    entries.push({
      key: `sync-${sync.id}`,
      commit: sync.commit,
      trigger: label,
      image: sync.image,
      sourceCommit: sync.sourceCommit,
      author: sync.actor,
      result: sync.status,
      message: sync.message,
      at: sync.startedAt,
      deploy: null,
      live: false,
    });
  }
  return entries.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
}

/**
 * The deploys a rollback can return to: every one with an image but the newest (what the
 * folder holds) and the one the newest rolled back to (the folder holds that already).
 */
export function rollbackCandidates(deploys: DeployRecord[]): Set<string> {
  const [newest, ...earlier] = deploys.filter((deploy) => deploy.image);
  return new Set(
    earlier
      .filter((deploy) => deploy.commit !== newest?.rolledBackTo)
      .map((deploy) => deploy.commit),
  );
}
