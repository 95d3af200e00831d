import type { RolloutBackends, RolloutMetrics } from '../rollout.js';
import type { WorkloadSpec } from '../target.js';
import type { Instance } from './instance.js';
import type { TrafficStats } from './proxy.js';
import { probeOnce } from './readiness.js';
import { routeWorkload, type PreparedImage, type Workload } from './workload.js';

/**
 * The two versions of one canary or blue-green rollout on the local target: the active
 * instances (stable) and the candidates (the new version), behind the workload's proxy. The
 * candidates' traffic is counted by the proxy (the canary set) and by the preview proxy;
 * their failed checks are the probes that fail at each analysis, and any exit.
 */

/** What the local target lends a rollout. */
export interface LocalRolloutHost {
  /** Starts `count` new candidates and resolves once ready; removes them and throws when not. */
  launchCandidates(
    workload: Workload,
    spec: WorkloadSpec,
    image: PreparedImage,
    count: number,
  ): Promise<Instance[]>;
  removeInstances(workload: Workload, instances: Instance[]): Promise<void>;
  /** The candidates become the serving version in one step; the old one drains and stops. */
  switchTo(workload: Workload, spec: WorkloadSpec, candidates: Instance[]): Promise<void>;
  openPreview(workload: Workload): Promise<void>;
  closePreview(workload: Workload): Promise<void>;
  drainTimeoutMs: number;
}

export class LocalRolloutBackends implements RolloutBackends {
  /** Called when a candidate exits: the controller rolls back. */
  onFailure: (reason: string) => void = () => {};
  private readonly candidates: Instance[] = [];
  /** The proxy's canary counts before the rollout: the analysis sees only its own requests. */
  private readonly baseline: TrafficStats;
  private failedChecks = 0;
  /** Promoting or rolling back: the candidates' stops and role changes are ours. */
  private leaving = false;

  constructor(
    private readonly host: LocalRolloutHost,
    private readonly workload: Workload,
    private readonly spec: WorkloadSpec,
    private readonly image: PreparedImage,
  ) {
    this.baseline = workload.proxy?.totals('canary') ?? { requests: 0, errors5xx: 0 };
  }

  async scaleCanary(count: number): Promise<void> {
    if (count <= this.candidates.length) return;
    const started = await this.host.launchCandidates(
      this.workload,
      this.spec,
      this.image,
      count - this.candidates.length,
    );
    this.candidates.push(...started);
    routeWorkload(this.workload);
  }

  setWeight(weight: number): void {
    this.workload.canaryWeight = weight;
    routeWorkload(this.workload);
  }

  async openPreview(): Promise<string> {
    await this.host.openPreview(this.workload);
    routeWorkload(this.workload);
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
    await this.host.switchTo(this.workload, this.spec, this.candidates);
    await this.host.closePreview(this.workload);
  }

  async rollback(): Promise<void> {
    this.leaving = true;
    this.workload.canaryWeight = 0;
    await this.host.closePreview(this.workload);
    routeWorkload(this.workload);
    await this.workload.proxy?.waitForIdle(
      this.candidates.map((instance) => instance.id),
      this.host.drainTimeoutMs,
    );
    await this.host.removeInstances(this.workload, this.candidates);
  }

  /** Every change of an instance of the workload. */
  instanceChanged(instance: Instance): void {
    if (this.leaving || !this.candidates.includes(instance)) return;
    if (instance.state === 'stopped' || instance.state === 'restarting') {
      this.failedChecks++;
      this.onFailure(`new instance ${instance.id} ${instance.problem ?? 'stopped'}`);
    }
  }
}
