/**
 * One apply of one workload: the strategy (rolling, blue-green, canary), the set of objects it
 * applied, and the prune that follows. It is also the `RolloutOperations` the rollout backends
 * act through, so every object a rollout applies or removes is accounted for in the set.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { RolloutController, type RolloutBackends } from '../rollout.js';
import type { RolloutSpec, RolloutStatus, TargetLogger } from '../target.js';
import { apiErrorMessage, type KubeClient, type LiveObject } from './client.js';
import type { DeploymentWatch } from './deployment-watch.js';
import { differences } from './drift.js';
import { deploymentHealth, desiredReplicasOf, imageOfTemplate, serviceUrl } from './health.js';
import {
  SLOT_LABEL,
  deploymentSpec,
  inventoryOf,
  inventorySelector,
  managedKinds,
  objectId,
  objectsToPrune,
  type ManagedKind,
  type Manifest,
} from './inventory.js';
import {
  BlueGreenBackends,
  CanaryBackends,
  servingSlot,
  type RolloutOperations,
} from './rollout-backends.js';
import {
  blueGreenPlan,
  inApplyOrder,
  otherSlot,
  selectingServices,
  type Slot,
} from './workload-objects.js';

export interface WorkloadSyncOptions {
  key: string;
  client: KubeClient;
  watch: DeploymentWatch;
  namespace: string;
  rolloutTimeoutMs: number;
  logger: TargetLogger;
  progress(message: string): void;
  /** The canary or blue-green controller while it runs, then null (for promote and abort). */
  onController(controller: RolloutController | null): void;
  onRolloutStatus(status: RolloutStatus): void;
}

export class WorkloadSync implements RolloutOperations {
  /** `Kind/name` -> the manifest as applied; what drift is later compared with. */
  private readonly applied = new Map<string, Manifest>();
  /** Objects prune leaves besides the applied ones (an idle blue-green slot). */
  private readonly keep = new Set<string>();
  /** Per Deployment, its generation before this apply (to tell a re-apply that changed nothing). */
  private readonly previousGeneration = new Map<string, number | undefined>();
  private readonly selector: string;

  constructor(private readonly options: WorkloadSyncOptions) {
    this.selector = inventorySelector(inventoryOf(options.key));
  }

  /**
   * Applies the manifests with the rollout's strategy (blue-green and canary need exactly one
   * Deployment), then prunes the inventory's objects that are not in the set. Returns what was
   * applied. Throws on failure, before pruning anything.
   */
  async run(manifests: Manifest[], rollout: RolloutSpec): Promise<Manifest[]> {
    if (rollout.strategy === 'blue-green') await this.blueGreen(manifests, rollout);
    else if (rollout.strategy === 'canary') await this.canary(manifests, rollout);
    else await this.rolling(manifests);
    for (const id of this.applied.keys()) this.keep.add(id);
    await this.prune();
    return [...this.applied.values()];
  }

  /** Applies the manifests again as they are (repair), without a rollout or a prune. */
  async reapply(manifests: readonly Manifest[]): Promise<void> {
    await this.rolling(manifests);
  }

  // RolloutOperations

  async apply(manifest: Manifest): Promise<LiveObject> {
    const { name } = manifest.metadata;
    if (manifest.kind === 'Deployment')
      this.previousGeneration.set(name, this.options.watch.get(name)?.metadata.generation);
    const live = await this.options.client.apply(manifest);
    this.applied.set(objectId(manifest), manifest);
    return live;
  }

  async scale(name: string, replicas: number): Promise<void> {
    await this.options.client.mergePatch('Deployment', name, { spec: { replicas } });
    this.options.progress(`scaled ${name} to ${replicas}`);
  }

  async remove(kind: ManagedKind, name: string): Promise<void> {
    await this.options.client.delete(kind, name);
    this.applied.delete(`${kind}/${name}`);
  }

  /**
   * Waits (on the watch) until the controller has seen the applied generation and every
   * replica is updated and available. A re-apply that changed nothing also accepts a degraded
   * Deployment (it already serves what it can); `ProgressDeadlineExceeded` fails at once.
   */
  async waitAvailable(applied: LiveObject): Promise<void> {
    const { watch, progress } = this.options;
    const name = applied.metadata.name!;
    const generation = applied.metadata.generation ?? 0;
    const unchanged = this.previousGeneration.get(name) === generation;
    let detail: string | null = null;
    await watch.waitFor(
      () => {
        const live = watch.get(name);
        if (!live || (live.metadata.generation ?? 0) < generation) return undefined;
        const health = deploymentHealth(live);
        if (health.message && health.message !== detail) progress(health.message);
        detail = health.message;
        if (health.failed) throw new Error(health.message ?? `deployment ${name} failed`);
        if (health.health === 'healthy') return true;
        if (unchanged && health.health === 'degraded') return true;
        return undefined;
      },
      this.options.rolloutTimeoutMs,
      `deployment ${name} was not available`,
      () => detail,
    );
    progress(`deployment ${name} is available`);
  }

  deployment(name: string): LiveObject | undefined {
    return this.options.watch.get(name);
  }

  pods(variant: string): Promise<V1Pod[]> {
    return this.options.client.pods(`${this.selector},${SLOT_LABEL}=${variant}`);
  }

  serviceUrl(service: Manifest): string {
    return serviceUrl(service, this.options.namespace);
  }

  // Strategies

  /** Everything applied in kind order, then every Deployment waited for. */
  private async rolling(manifests: readonly Manifest[]): Promise<void> {
    const deployments: LiveObject[] = [];
    for (const manifest of inApplyOrder(manifests)) {
      const live = await this.apply(manifest);
      if (manifest.kind === 'Deployment') deployments.push(live);
    }
    this.options.progress(`applied ${manifests.length} object(s) (server-side apply)`);
    await Promise.all(deployments.map((live) => this.waitAvailable(live)));
  }

  /**
   * The slot the Service selects serves; the other one gets the new version. When the serving
   * slot already runs these manifests, they are just applied again (a no-op).
   */
  private async blueGreen(manifests: Manifest[], rollout: RolloutSpec): Promise<void> {
    const deployment = manifests.find((m) => m.kind === 'Deployment')!;
    const service = selectingServices(manifests, deployment)[0]!;
    const liveServices = await this.options.client.list('Service', this.selector);
    const serving = servingSlot(
      liveServices.items.find((s) => s.metadata.name === service.metadata.name),
    );
    if (serving) {
      this.keep.add(`Deployment/${deployment.metadata.name}-${otherSlot(serving)}`);
      const current = blueGreenPlan(manifests, serving);
      const live = this.deployment(current.deployment.metadata.name);
      if (live && sameDeployment(current.deployment, live)) {
        this.options.progress(`${current.deployment.metadata.name} already runs this version`);
        const { rest, services, autoscalers } = current;
        return this.rolling([...rest, current.deployment, ...services, ...autoscalers]);
      }
    }
    const slot: Slot = serving ? otherSlot(serving) : 'blue';
    const plan = blueGreenPlan(manifests, slot);
    for (const manifest of inApplyOrder(plan.rest)) await this.apply(manifest);
    if (serving) this.keep.add(`Deployment/${plan.base}-${serving}`);
    const stable = serving ? this.deployment(`${plan.base}-${serving}`) : undefined;
    await this.runRollout(
      rollout,
      new BlueGreenBackends(this, plan, serving),
      plan.deployment,
      stable,
    );
  }

  /** Without a stable Deployment that serves, or with one already at this version: rolling. */
  private async canary(manifests: Manifest[], rollout: RolloutSpec): Promise<void> {
    const deployment = manifests.find((m) => m.kind === 'Deployment')!;
    const stable = this.deployment(deployment.metadata.name);
    const stableReplicas = stable ? desiredReplicasOf(stable) : 0;
    if (!stable || stableReplicas === 0 || sameDeployment(deployment, stable)) {
      this.options.progress(
        stable && stableReplicas > 0
          ? `${deployment.metadata.name} already runs this version`
          : 'nothing serves yet: no canary, a plain rollout',
      );
      return this.rolling(manifests);
    }
    for (const manifest of inApplyOrder(manifests.filter((m) => m !== deployment)))
      await this.apply(manifest);
    const backends = new CanaryBackends(this, deployment, stableReplicas);
    await this.runRollout(rollout, backends, deployment, stable);
  }

  /**
   * The shared controller when something serves; a first rollout (nothing to compare with, no
   * traffic to protect) just starts the new version and switches to it.
   */
  private async runRollout(
    rollout: RolloutSpec,
    backends: RolloutBackends,
    desired: Manifest,
    stable: LiveObject | undefined,
  ): Promise<void> {
    const { key, logger, progress } = this.options;
    const replicas = Math.max(1, deploymentSpec(desired).replicas ?? 1);
    if (!stable) {
      try {
        await backends.scaleCanary(replicas);
        await backends.promote();
      } catch (error) {
        await backends
          .rollback()
          .catch((e: unknown) =>
            logger.warn({ workload: key, err: apiErrorMessage(e) }, 'rollback failed'),
          );
        throw error;
      }
      return;
    }
    const stableTemplate = (stable.spec as { template?: { spec?: unknown } } | undefined)?.template;
    const controller = new RolloutController({
      key,
      spec: rollout as RolloutSpec & { strategy: 'canary' | 'blue-green' },
      replicas,
      canaryImage: imageOfTemplate(deploymentSpec(desired).template?.spec)?.digest ?? '',
      stableImage: imageOfTemplate(stableTemplate?.spec)?.digest ?? null,
      backends,
      onChange: (status) => {
        this.options.onRolloutStatus(status);
        progress(status.message);
      },
    });
    this.options.onController(controller);
    try {
      await controller.run();
    } finally {
      this.options.onController(null);
    }
  }

  /** Lists each managed kind by the inventory label and deletes what is not kept. */
  private async prune(): Promise<void> {
    const { client, progress } = this.options;
    for (const { kind } of managedKinds) {
      const { items } = await client.list(kind, this.selector);
      for (const object of objectsToPrune(this.keep, items)) {
        await client.delete(kind, object.metadata.name!);
        progress(`pruned ${objectId(object)}`);
      }
    }
  }
}

/** The live Deployment runs the desired template at the desired replicas. */
function sameDeployment(desired: Manifest, live: LiveObject): boolean {
  const spec = deploymentSpec(structuredClone(desired));
  const liveSpec = (live.spec ?? {}) as { replicas?: number; template?: unknown };
  return (
    (spec.replicas ?? 1) === (liveSpec.replicas ?? 1) &&
    differences(spec.template, liveSpec.template).length === 0
  );
}
