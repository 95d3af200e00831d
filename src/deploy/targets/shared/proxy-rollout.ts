import { ValveError } from '../../../errors.js';
import type { Backend, BackendSet, TrafficStats, WorkloadProxy } from '../local/proxy.js';
import { probeOnce } from '../local/readiness.js';
import {
  RolloutController,
  unfinishedRolloutPhases,
  type RolloutBackends,
  type RolloutMetrics,
} from '../rollout.js';
import type { InstanceState, RolloutSpec, RolloutStatus, WorkloadSpec } from '../target.js';
import type { WorkloadAddresses } from './workload-addresses.js';
import { sameSpec } from './workload-status.js';

/**
 * Canary and blue-green rollouts for the targets whose instances sit behind their own proxy
 * (local, podman): the active instances (stable) and the candidates (the new version), the
 * workload's proxy splitting the stable address's requests between them by weight, and a
 * preview proxy serving only the candidates. The candidates' traffic is counted by the proxy
 * (its canary set) and by the preview proxy; their failed checks are the probes that fail at
 * each analysis, and any exit. `../rollout.ts` decides what happens when; `runProxyRollout`
 * runs one rollout for a target.
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

/** What a workload's persisted record holds for its addresses and rollouts. */
export interface ProxyWorkloadRecord extends RolloutRecord {
  key: string;
  proxyPort: number;
}

/** One workload of such a target (local, podman), as the target holds it in memory. */
export interface ProxyWorkload<
  R extends ProxyWorkloadRecord,
  I extends RolloutInstance,
> extends RolloutWorkload<I> {
  /** Persisted fields; `instances` is rebuilt from the live instances at each save. */
  record: R;
  proxy: WorkloadProxy | null;
  preview: WorkloadProxy | null;
  /** An apply (or a repair) is under way. */
  progressing: boolean;
  /** The canary or blue-green rollout under way. */
  rollout: { controller: RolloutController; backends: ProxyRolloutBackends<I> } | null;
}

/** A workload of `record` with no instances, no address yet and no rollout. */
export function newProxyWorkload<R extends ProxyWorkloadRecord, I extends RolloutInstance>(
  record: R,
): ProxyWorkload<R, I> {
  return {
    record,
    instances: [],
    proxy: null,
    progressing: false,
    canaryWeight: 0,
    preview: null,
    rollout: null,
  };
}

/** What the target lends one rollout, bound to its workload, spec and image. */
export interface ProxyRolloutHost<I extends RolloutInstance> {
  /** Starts `count` new candidates and resolves once ready; removes them and throws when not. */
  launchCandidates(count: number): Promise<I[]>;
  removeInstances(instances: I[]): Promise<void>;
  /** The candidates become the serving version in one step; the old one drains and stops. */
  switchTo(candidates: I[]): Promise<void>;
  /** The target's addresses, where the preview address is opened and closed. */
  addresses: WorkloadAddresses;
  drainTimeoutMs: number;
  /** Each new message of the rollout's status. */
  progress(message: string): void;
  /** Saves the state file without waiting (at each change of the rollout's status). */
  save(): void;
}

/**
 * Runs a canary or blue-green rollout of `spec` (`serving` the stable version): resolves once
 * promoted, throws DEPLOY_ROLLOUT_FAILED once rolled back. Each change of the rollout's status
 * goes into the workload's record and is saved; a new message is reported. However it ends, no
 * share of the requests is left for candidates and the preview address is closed. Promoted,
 * the workload is no longer progressing.
 */
export async function runProxyRollout<R extends ProxyWorkloadRecord, I extends RolloutInstance>(
  workload: ProxyWorkload<R, I>,
  spec: WorkloadSpec,
  serving: WorkloadSpec,
  host: ProxyRolloutHost<I>,
): Promise<void> {
  const backends = new ProxyRolloutBackends(host, workload, spec);
  const controller = new RolloutController({
    key: spec.key,
    spec: spec.rollout as RolloutSpec & { strategy: 'canary' | 'blue-green' },
    replicas: spec.replicas,
    canaryImage: spec.image.digest,
    stableImage: serving.image.digest,
    backends,
    onChange: (status) => {
      const before = workload.record.rollout?.message;
      workload.record.rollout = status;
      if (status.message !== before) host.progress(status.message);
      host.save();
    },
  });
  backends.onFailure = (reason) => controller.fail(reason);
  workload.rollout = { controller, backends };
  try {
    await controller.run();
  } finally {
    workload.rollout = null;
    workload.canaryWeight = 0;
    await host.addresses.closePreview(workload);
  }
  workload.progressing = false;
}

/**
 * The serving spec a canary or blue-green `spec` rolls out beside; null for a plain switch: a
 * rolling spec, or nothing to compare with (first deploy, no active instance ready) or to
 * scale (0 replicas).
 */
export function stableForRollout<R extends ProxyWorkloadRecord, I extends RolloutInstance>(
  workload: ProxyWorkload<R, I>,
  spec: WorkloadSpec,
): WorkloadSpec | null {
  const strategy = spec.rollout?.strategy ?? 'rolling';
  const stableServes = workload.instances.some(
    (instance) => instance.record.role === 'active' && instance.ready,
  );
  const serving = workload.record.serving;
  return strategy !== 'rolling' && serving && stableServes && spec.replicas > 0 ? serving : null;
}

/** The rollout under way on `workload` (of `key`), for `promote` and `abort`; CONFLICT when none. */
export function rolloutUnderWay(
  workload: { rollout: { controller: RolloutController } | null } | undefined,
  key: string,
): RolloutController {
  const controller = workload?.rollout?.controller;
  if (!controller) throw new ValveError('CONFLICT', `no rollout of ${key} is under way`);
  return controller;
}

/** Every change of an instance of the workload: the addresses follow, and the rollout sees it. */
export function instanceChanged<R extends ProxyWorkloadRecord, I extends RolloutInstance>(
  workload: ProxyWorkload<R, I>,
  instance: I,
): void {
  routeThroughProxies(workload);
  workload.rollout?.backends.instanceChanged(instance);
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
    private readonly workload: ProxyWorkload<ProxyWorkloadRecord, I>,
    private readonly spec: WorkloadSpec,
  ) {
    this.baseline = workload.proxy?.totals('canary') ?? { requests: 0, errors5xx: 0 };
  }

  async scaleCanary(count: number): Promise<void> {
    if (count <= this.candidates.length) return;
    const started = await this.host.launchCandidates(count - this.candidates.length);
    this.candidates.push(...started);
    routeThroughProxies(this.workload);
  }

  setWeight(weight: number): void {
    this.workload.canaryWeight = weight;
    routeThroughProxies(this.workload);
  }

  async openPreview(): Promise<string> {
    await this.host.addresses.openPreview(this.workload);
    routeThroughProxies(this.workload);
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
    await this.host.addresses.closePreview(this.workload);
  }

  async rollback(): Promise<void> {
    this.leaving = true;
    this.workload.canaryWeight = 0;
    await this.host.addresses.closePreview(this.workload);
    routeThroughProxies(this.workload);
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
