import { ProxyRolloutBackends } from '../shared/proxy-rollout.js';
import type { WorkloadSpec } from '../target.js';
import type { Instance } from './instance.js';
import { routeWorkload, type PreparedImage, type Workload } from './workload.js';

/**
 * The two versions of one canary or blue-green rollout on the local target: the shared
 * proxy rollout (`../shared/proxy-rollout.ts`) over the workload's processes.
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

export class LocalRolloutBackends extends ProxyRolloutBackends<Instance> {
  constructor(
    host: LocalRolloutHost,
    workload: Workload,
    spec: WorkloadSpec,
    image: PreparedImage,
  ) {
    super(
      {
        launchCandidates: (count) => host.launchCandidates(workload, spec, image, count),
        removeInstances: (instances) => host.removeInstances(workload, instances),
        switchTo: (candidates) => host.switchTo(workload, spec, candidates),
        openPreview: () => host.openPreview(workload),
        closePreview: () => host.closePreview(workload),
        route: () => routeWorkload(workload),
        drainTimeoutMs: host.drainTimeoutMs,
      },
      workload,
      spec,
    );
  }
}
