/**
 * Canary and blue-green on Kubernetes through Service selectors (no mesh, no ingress
 * weights): the `RolloutBackends` the shared `RolloutController` (../rollout.ts) drives.
 *
 * - Blue-green: the new version runs as `<name>-<slot>` (slot label on its pods) beside the
 *   serving slot; a `<service>-preview` Service selects only it; the switch is applying the
 *   Service(s) with the new slot in their selector, after the new Deployment is available. The
 *   old slot is then scaled to zero (kept, so the next rollout reuses its name).
 * - Canary (`'replica-ratio'`): `<name>-canary` runs the new version with the same labels the
 *   Service selects, so it gets requests in proportion to its ready replicas. A weight is
 *   approximated by scaling the stable Deployment down: `stable = round(canary × (100 − w) / w)`,
 *   between 1 and its replicas, so a small weight with few replicas is coarse (1 canary beside
 *   1 stable is 50%). Promotion applies the new template to the stable Deployment (a rolling
 *   update) and deletes the canary.
 *
 * Metrics: without a mesh there are no request counts; `failedChecks` is the new version's
 * container restarts plus its running pods that are not ready, so the analysis judges health
 * checks alone (as the controller does below `minRequests`).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { RolloutBackends, RolloutMetrics } from '../rollout.js';
import type { LiveObject } from './client.js';
import { SLOT_LABEL, type ManagedKind, type Manifest } from './inventory.js';
import { variantOf, withReplicas, type BlueGreenPlan, type Slot } from './workload-objects.js';

/** What a rollout may do to the cluster; the target implements it for one apply. */
export interface RolloutOperations {
  /** Server-side apply; the object joins the applied set. */
  apply(manifest: Manifest): Promise<LiveObject>;
  /** Scales a Deployment (merge patch of `spec.replicas`), outside the applied set. */
  scale(name: string, replicas: number): Promise<void>;
  /** Deletes an object and takes it out of the applied set. */
  remove(kind: ManagedKind, name: string): Promise<void>;
  /** Resolves once the applied Deployment's rollout is done; throws when it failed or timed out. */
  waitAvailable(applied: LiveObject): Promise<void>;
  /** A Deployment as the watch last saw it. */
  deployment(name: string): LiveObject | undefined;
  /** Pods of the workload with `SLOT_LABEL=<variant>`. */
  pods(variant: string): Promise<V1Pod[]>;
  /** The cluster address of a Service. */
  serviceUrl(service: Manifest): string;
}

export function metricsOf(pods: V1Pod[]): RolloutMetrics {
  let failedChecks = 0;
  for (const pod of pods) {
    if (pod.metadata?.deletionTimestamp) continue;
    for (const container of pod.status?.containerStatuses ?? [])
      failedChecks += container.restartCount ?? 0;
    const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    if (pod.status?.phase === 'Running' && !ready) failedChecks++;
  }
  return { requests: 0, errors5xx: 0, failedChecks };
}

export class BlueGreenBackends implements RolloutBackends {
  constructor(
    private readonly ops: RolloutOperations,
    private readonly plan: BlueGreenPlan,
    /** The slot that serves now; null on a first rollout. */
    private readonly serving: Slot | null,
  ) {}

  async scaleCanary(count: number): Promise<void> {
    const applied = await this.ops.apply(withReplicas(this.plan.deployment, count));
    await this.ops.waitAvailable(applied);
  }

  setWeight(): void {
    // Blue-green moves no traffic before the switch (promote).
  }

  async openPreview(): Promise<string> {
    for (const preview of this.plan.previews) await this.ops.apply(preview);
    return this.ops.serviceUrl(this.plan.previews[0]!);
  }

  async metrics(): Promise<RolloutMetrics> {
    return metricsOf(await this.ops.pods(this.plan.slot));
  }

  /** The switch: Services (and autoscalers) to the new slot, then the old slot to zero. */
  async promote(): Promise<void> {
    for (const service of this.plan.services) await this.ops.apply(service);
    for (const autoscaler of this.plan.autoscalers) await this.ops.apply(autoscaler);
    const old = this.serving && `${this.plan.base}-${this.serving}`;
    if (old && this.ops.deployment(old)) await this.ops.scale(old, 0);
    await this.removePreviews();
  }

  async rollback(): Promise<void> {
    if (this.ops.deployment(this.plan.deployment.metadata.name))
      await this.ops.scale(this.plan.deployment.metadata.name, 0);
    await this.removePreviews();
  }

  private async removePreviews(): Promise<void> {
    for (const preview of this.plan.previews)
      await this.ops.remove('Service', preview.metadata.name);
  }
}

export class CanaryBackends implements RolloutBackends {
  private canaryReplicas = 0;
  private readonly canary: Manifest;

  constructor(
    private readonly ops: RolloutOperations,
    /** The Deployment as the manifests have it (the new version, full replicas). */
    private readonly desired: Manifest,
    /** The stable Deployment's replicas before the rollout. */
    private readonly stableReplicas: number,
  ) {
    this.canary = variantOf(desired, 'canary');
  }

  async scaleCanary(count: number): Promise<void> {
    this.canaryReplicas = count;
    const applied = await this.ops.apply(withReplicas(this.canary, count));
    await this.ops.waitAvailable(applied);
  }

  async setWeight(weight: number): Promise<void> {
    await this.ops.scale(
      this.desired.metadata.name,
      stableReplicasFor(this.canaryReplicas, weight, this.stableReplicas),
    );
  }

  openPreview(): Promise<string> {
    return Promise.reject(new Error('a canary has no preview address'));
  }

  async metrics(): Promise<RolloutMetrics> {
    return metricsOf(await this.ops.pods('canary'));
  }

  /** The new template on the stable Deployment (a rolling update), then the canary goes. */
  async promote(): Promise<void> {
    const applied = await this.ops.apply(this.desired);
    await this.ops.waitAvailable(applied);
    await this.ops.remove('Deployment', this.canary.metadata.name);
  }

  async rollback(): Promise<void> {
    if (this.ops.deployment(this.desired.metadata.name))
      await this.ops.scale(this.desired.metadata.name, this.stableReplicas);
    await this.ops.remove('Deployment', this.canary.metadata.name);
  }
}

/**
 * Stable replicas that put `weight`% of the pods behind the Service on `canary` replicas:
 * `round(canary × (100 − weight) / weight)`, at least 1, at most what the stable one had.
 */
export function stableReplicasFor(canary: number, weight: number, stable: number): number {
  if (weight >= 100) return 1;
  const wanted = Math.round((canary * (100 - weight)) / Math.max(1, weight));
  return Math.min(stable, Math.max(1, wanted));
}

/** The slot a live Service's selector points at, if any. */
export function servingSlot(service: LiveObject | undefined): Slot | null {
  const slot = (service?.spec as { selector?: Record<string, string> } | undefined)?.selector?.[
    SLOT_LABEL
  ];
  return slot === 'blue' || slot === 'green' ? slot : null;
}
