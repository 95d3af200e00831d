import type { Backend, BackendSet, TrafficStats } from '../local/proxy.js';
import { probeOnce } from '../local/readiness.js';
import { unfinishedRolloutPhases, type RolloutBackends, type RolloutMetrics } from '../rollout.js';
import type { InstanceState, RolloutStatus, WorkloadSpec } from '../target.js';
import { sameSpec } from './workload-status.js';

/**
 * Canary and blue-green rollouts for the targets whose instances sit behind their own proxy
 * (local, podman): the active instances (stable) and the candidates (the new version), the
 * workload's proxy splitting the stable address's requests between them by weight, and a
 * preview proxy serving only the candidates. The candidates' traffic is counted by the proxy
 * (its canary set) and by the preview proxy; their failed checks are the probes that fail at
 * each analysis, and any exit. `../rollout.ts` decides what happens when.
 */

/** What a rollout needs of an instance. */
export interface RolloutInstance {
  readonly id: string;
  readonly state: InstanceState;
  readonly ready: boolean;
  problem: string | null;
  readonly record: { role: string; port: number };
  readonly probe: { path: string; timeoutMs: number };
}

/** What a rollout needs of a proxy (`local/proxy.ts`'s WorkloadProxy). */
export interface RolloutProxy {
  readonly url: string;
  setBackends(backends: Backend[]): void;
  setCanary(backends: Backend[], weight: number): void;
  totals(set: BackendSet): TrafficStats;
  waitForIdle(ids: string[], timeoutMs: number): Promise<boolean>;
}

/** What a rollout needs of a workload. */
export interface RolloutWorkload<I extends RolloutInstance> {
  instances: I[];
  /** The stable address. */
  proxy: RolloutProxy | null;
  /** Share (0-100) of the stable address's requests for ready candidates: a canary. */
  canaryWeight: number;
  /** Blue-green: an address serving only the candidates, until the switch. */
  preview: RolloutProxy | null;
}

/**
 * Points the addresses at the instances that pass readiness: the stable address at the active
 * ones, plus the candidates at `canaryWeight`; the preview address at the candidates.
 */
export function routeThroughProxies<I extends RolloutInstance>(workload: RolloutWorkload<I>): void {
  const ready = (role: 'active' | 'candidate') =>
    workload.instances
      .filter((instance) => instance.record.role === role && instance.ready)
      .map((instance) => ({ id: instance.id, port: instance.record.port }));
  workload.proxy?.setBackends(ready('active'));
  workload.proxy?.setCanary(ready('candidate'), workload.canaryWeight);
  workload.preview?.setBackends(ready('candidate'));
}

/** What the target lends one rollout, bound to its workload, spec and image. */
export interface ProxyRolloutHost<I extends RolloutInstance> {
  /** Starts `count` new candidates and resolves once ready; removes them and throws when not. */
  launchCandidates(count: number): Promise<I[]>;
  removeInstances(instances: I[]): Promise<void>;
  /** The candidates become the serving version in one step; the old one drains and stops. */
  switchTo(candidates: I[]): Promise<void>;
  openPreview(): Promise<void>;
  closePreview(): Promise<void>;
  /** Routes the workload's addresses after a change of candidates or weight. */
  route(): void;
  drainTimeoutMs: number;
}

export class ProxyRolloutBackends<I extends RolloutInstance> implements RolloutBackends {
  /** Called when a candidate exits: the controller rolls back. */
  onFailure: (reason: string) => void = () => {};
  private readonly candidates: I[] = [];
  /** The proxy's canary counts before the rollout: the analysis sees only its own requests. */
  private readonly baseline: TrafficStats;
  private failedChecks = 0;
  /** Promoting or rolling back: the candidates' stops and role changes are ours. */
  private leaving = false;

  constructor(
    private readonly host: ProxyRolloutHost<I>,
    private readonly workload: RolloutWorkload<I>,
    private readonly spec: WorkloadSpec,
  ) {
    this.baseline = workload.proxy?.totals('canary') ?? { requests: 0, errors5xx: 0 };
  }

  async scaleCanary(count: number): Promise<void> {
    if (count <= this.candidates.length) return;
    const started = await this.host.launchCandidates(count - this.candidates.length);
    this.candidates.push(...started);
    this.host.route();
  }

  setWeight(weight: number): void {
    this.workload.canaryWeight = weight;
    this.host.route();
  }

  async openPreview(): Promise<string> {
    await this.host.openPreview();
    this.host.route();
    return this.workload.preview!.url;
  }

  async metrics(): Promise<RolloutMetrics> {
    const canary = this.workload.proxy?.totals('canary') ?? this.baseline;
    const traffic: TrafficStats[] = [
      {
        requests: canary.requests - this.baseline.requests,
        errors5xx: canary.errors5xx - this.baseline.errors5xx,
      },
      // A preview proxy lives for one rollout: all of its requests are the new version's.
      this.workload.preview?.totals('stable') ?? { requests: 0, errors5xx: 0 },
    ];
    const running = this.candidates.filter(
      (instance) => instance.state === 'ready' || instance.state === 'unready',
    );
    const probes = await Promise.all(
      running.map((instance) =>
        probeOnce(instance.record.port, instance.probe.path, instance.probe.timeoutMs),
      ),
    );
    this.failedChecks += probes.filter((probe) => !probe.ok).length;
    return {
      requests: traffic.reduce((sum, stats) => sum + stats.requests, 0),
      errors5xx: traffic.reduce((sum, stats) => sum + stats.errors5xx, 0),
      failedChecks: this.failedChecks,
    };
  }

  async promote(): Promise<void> {
    await this.scaleCanary(this.spec.replicas);
    this.leaving = true;
    await this.host.switchTo(this.candidates);
    await this.host.closePreview();
  }

  async rollback(): Promise<void> {
    this.leaving = true;
    this.workload.canaryWeight = 0;
    await this.host.closePreview();
    this.host.route();
    await this.workload.proxy?.waitForIdle(
      this.candidates.map((instance) => instance.id),
      this.host.drainTimeoutMs,
    );
    await this.host.removeInstances(this.candidates);
  }

  /** Every change of an instance of the workload. */
  instanceChanged(instance: I): void {
    if (this.leaving || !this.candidates.includes(instance)) return;
    if (instance.state === 'stopped' || instance.state === 'restarting') {
      this.failedChecks++;
      this.onFailure(`new instance ${instance.id} ${instance.problem ?? 'stopped'}`);
    }
  }
}

/** What settling a rollout reads and writes of a workload's persisted record. */
export interface RolloutRecord {
  rollout?: RolloutStatus | null;
  serving: WorkloadSpec | null;
  desired: WorkloadSpec | null;
  message: string | null;
}

/**
 * A rollout the previous server did not finish: recovery removes its candidates, so it is
 * rolled back, unless its switch was saved (then it was promoted).
 */
export function settleUnfinishedRollout(record: RolloutRecord): void {
  const { rollout, serving, desired } = record;
  if (!rollout || !unfinishedRolloutPhases.includes(rollout.phase)) return;
  const promoted =
    serving !== null &&
    desired !== null &&
    serving.image.digest === rollout.canaryImage &&
    sameSpec(serving, desired);
  const message = promoted
    ? 'promoted (its switch was saved before the server restarted)'
    : `rolled back: the server restarted during the rollout at step ${rollout.step}; the stable version serves`;
  record.rollout = {
    ...rollout,
    phase: promoted ? 'promoted' : 'rolled-back',
    weight: promoted ? 100 : 0,
    previewUrl: null,
    message,
    updatedAt: new Date().toISOString(),
  };
  if (!promoted) record.message = message;
}
