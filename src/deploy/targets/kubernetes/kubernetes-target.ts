import { ValveError, invalidInput } from '../../../errors.js';
import { defaultRollout, rolloutSpecSchema } from '../../rollout-spec.js';
import type { RolloutController } from '../rollout.js';
import {
  silentLogger,
  workloadSpecSchema,
  type RolloutSpec,
  type RolloutStatus,
  type Target,
  type TargetCapabilities,
  type TargetLogger,
  type WorkloadSpec,
  type WorkloadStatus,
} from '../target.js';
import {
  KubeClient,
  apiErrorMessage,
  kubeConfigFor,
  type KubeConnectionOptions,
} from './client.js';
import { DeploymentWatch } from './deployment-watch.js';
import { driftOf, withoutAutoscaledReplicas } from './drift.js';
import { instanceOf, workloadStatus } from './health.js';
import {
  INVENTORY_LABEL,
  ROLLOUT_ANNOTATION,
  inventoryOf,
  inventorySelector,
  labelled,
  managedKinds,
  readManifests,
  resourceNameOf,
  type ManagedKind,
  type Manifest,
} from './inventory.js';
import { WorkloadSync } from './sync.js';
import { blueGreenPlan, workloadManifests } from './workload-objects.js';

export interface KubernetesTargetOptions extends KubeConnectionOptions {
  /** The target's name (the registry passes the name the team gave it). */
  name?: string;
  /** Field manager of every server-side apply (default `valve`). */
  fieldManager?: string;
  logger?: TargetLogger;
  /** Listing interval when the API refuses watches (default 5 s). */
  pollMs?: number;
  /** How long a Deployment may take to be available (default 10 min, the API's default progress deadline). */
  rolloutTimeoutMs?: number;
}

export interface ApplyManifestsOptions {
  onProgress?: (message: string) => void;
  /** Default: the Deployment's `valve.dev/rollout` annotation, else a rolling update. */
  rollout?: RolloutSpec;
}

const rolling: RolloutSpec = defaultRollout;

/**
 * Runs workloads on a Kubernetes cluster, in one namespace, through the official client.
 * Applies with server-side apply (field manager `valve`, forced), labels every object with the
 * workload's inventory and prunes what an apply no longer has, reads health from the
 * Deployments' status (kept current by a watch), and rolls out canary and blue-green through
 * Service selectors. See README.md: verified against a stand-in for the API server only.
 */
export class KubernetesTarget implements Target {
  readonly name: string;
  readonly capabilities = {
    rollingUpdate: true,
    canary: 'replica-ratio',
    blueGreen: true,
    restartOnCrash: true,
    selfHeal: true,
    logs: true,
    prune: true,
  } as const satisfies TargetCapabilities;
  readonly namespace: string;
  private readonly client: KubeClient;
  private readonly logger: TargetLogger;
  private readonly pollMs: number;
  private readonly rolloutTimeoutMs: number;
  private watch: DeploymentWatch | null = null;
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly applying = new Set<string>();
  /** Per key: what the last failed apply said (cleared by a successful one). */
  private readonly failures = new Map<string, string>();
  /** Per key: the objects the last successful apply left, as applied (drift compares with them). */
  private readonly applied = new Map<string, Manifest[]>();
  private readonly rollouts = new Map<string, RolloutStatus>();
  private readonly controllers = new Map<string, RolloutController>();
  private closed = false;

  constructor(options: KubernetesTargetOptions) {
    this.name = options.name ?? 'kubernetes';
    this.namespace = options.namespace;
    this.logger = options.logger ?? silentLogger;
    this.pollMs = options.pollMs ?? 5000;
    this.rolloutTimeoutMs = options.rolloutTimeoutMs ?? 600_000;
    this.client = new KubeClient(
      kubeConfigFor(options),
      options.namespace,
      options.fieldManager ?? 'valve',
    );
  }

  /**
   * Applies a Deployment and a Service made from the spec alone (`workloadManifests`), named
   * after the key (`team-a/hello/dev` -> `team-a-hello-dev`), with `spec.rollout`.
   */
  async apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus> {
    const parsed = workloadSpecSchema.safeParse(spec);
    if (!parsed.success)
      throw invalidInput(
        `workload spec: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    const manifests = workloadManifests(parsed.data, resourceNameOf(spec.key));
    return this.applyManifests(spec.key, manifests, {
      onProgress,
      rollout: parsed.data.rollout ?? rolling,
    });
  }

  /**
   * Applies rendered manifests (what the deploy repo holds for the environment: plain objects,
   * or manifests.ts's `{ file, kind, name, object, line }`) as the workload `key`: each with
   * the inventory label, in the target's namespace; a rollout strategy other than rolling needs
   * exactly one Deployment. Resolves when every Deployment is available (or the rollout is
   * promoted), after pruning the inventory's objects that are no longer in the set. On failure
   * nothing is pruned, the message is kept for `status()`, and it throws DEPLOY_ROLLOUT_FAILED.
   */
  async applyManifests(
    key: string,
    resources: readonly object[],
    options: ApplyManifestsOptions = {},
  ): Promise<WorkloadStatus> {
    this.assertOpen();
    const manifests = readManifests(resources, this.namespace).map((m) =>
      labelled(m, key, this.namespace),
    );
    const deployments = manifests.filter((m) => m.kind === 'Deployment');
    const rollout = options.rollout ?? this.rolloutOf(deployments) ?? rolling;
    if (rollout.strategy !== 'rolling' && deployments.length !== 1)
      throw invalidInput(
        `a ${rollout.strategy} rollout needs exactly one Deployment; the manifests have ${deployments.length}`,
      );
    if (rollout.strategy === 'blue-green') blueGreenPlan(manifests, 'blue'); // refuses without a Service
    const progress = (message: string) => {
      this.logger.debug({ workload: key }, message);
      options.onProgress?.(message);
    };
    return this.exclusive(key, () => this.sync(key, manifests, rollout, progress));
  }

  async status(key: string, options: { verify?: boolean } = {}): Promise<WorkloadStatus> {
    const watch = await this.deployments();
    const inventory = inventoryOf(key);
    const selector = inventorySelector(inventory);
    // `verify` reads the Deployments again rather than trusting the watch to be current.
    const deployments = options.verify
      ? (await this.client.list('Deployment', selector)).items
      : watch.all().filter((d) => d.metadata.labels?.[INVENTORY_LABEL] === inventory);
    const [services, ingresses, pods] = await Promise.all([
      this.client.list('Service', selector),
      this.client.list('Ingress', selector),
      this.client.pods(selector),
    ]);
    const live = [...deployments, ...services.items, ...ingresses.items];
    const compared: ManagedKind[] = ['Deployment', 'Service', 'Ingress'];
    if (options.verify) {
      for (const kind of ['ConfigMap', 'HorizontalPodAutoscaler', 'PodDisruptionBudget'] as const) {
        live.push(...(await this.client.list(kind, selector)).items);
        compared.push(kind);
      }
    }
    const applying = this.applying.has(key);
    const lastApplied = this.applied.get(key);
    const applied = lastApplied
      ? withoutAutoscaledReplicas(lastApplied).filter((m) => compared.includes(m.kind))
      : null;
    return workloadStatus(
      {
        key,
        namespace: this.namespace,
        deployments,
        services: services.items,
        ingresses: ingresses.items,
        pods,
      },
      {
        applying,
        lastFailure: this.failures.get(key) ?? null,
        // An apply under way is not drift.
        drift:
          applying || deployments.length === 0
            ? []
            : driftOf(applied, live, this.client.fieldManager),
        rollout: this.rollouts.get(key),
      },
    );
  }

  /**
   * Applies again what the last apply of this process left (server-side apply takes back the
   * fields someone changed, re-creates what was deleted). After a restart the applied
   * manifests are not known here: nothing is done, and the reconciler's next apply repairs.
   */
  async repair(key: string): Promise<void> {
    this.assertOpen();
    await this.exclusive(key, async () => {
      const manifests = this.applied.get(key);
      const drift = manifests ? (await this.status(key, { verify: true })).drift : [];
      if (!manifests || drift.length === 0) return;
      this.logger.info({ workload: key, drift }, 'repairing drift');
      await this.syncFor(key, await this.deployments(), () => {}).reapply(manifests);
    });
  }

  async promote(key: string): Promise<void> {
    this.controllerOf(key).promote();
  }

  async abort(key: string): Promise<void> {
    this.controllerOf(key).abort('aborted');
  }

  /** Deletes every object with the workload's inventory label (dependents in the background). */
  async delete(key: string): Promise<void> {
    this.assertOpen();
    await this.exclusive(key, async () => {
      const selector = inventorySelector(inventoryOf(key));
      for (const { kind } of [...managedKinds].reverse()) {
        const { items } = await this.client.list(kind, selector);
        for (const object of items) await this.client.delete(kind, object.metadata.name!);
      }
      this.applied.delete(key);
      this.failures.delete(key);
      this.rollouts.delete(key);
      this.logger.info({ workload: key }, 'deleted workload');
    });
  }

  /** `pods/log` of each pod of the workload (its first container), `tailLines` each. */
  async logs(key: string, options: { tailLines?: number } = {}): Promise<string> {
    const pods = await this.client.pods(inventorySelector(inventoryOf(key)));
    pods.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
    const blocks = await Promise.all(
      pods.map(async (pod) => {
        const name = pod.metadata?.name ?? '';
        const instance = instanceOf(pod, 0);
        const container = pod.spec?.containers[0]?.name;
        let text: string;
        try {
          text = await this.client.podLog(name, container, options.tailLines ?? 100);
        } catch (error) {
          text = `(no log: ${apiErrorMessage(error)})\n`;
        }
        const header = `==> ${name} (${instance.state}, restarts ${instance.restarts}, ${instance.imageReference}) <==`;
        return `${header}\n${text}`.replace(/\n?$/, '');
      }),
    );
    return blocks.join('\n\n') + (blocks.length > 0 ? '\n' : '');
  }

  /** The live objects of a workload, without server bookkeeping (for comparing with the deploy repo). */
  async liveResources(
    key: string,
  ): Promise<{ kind: string; name: string; object: Record<string, unknown> }[]> {
    const selector = inventorySelector(inventoryOf(key));
    const resources = [];
    for (const { kind } of managedKinds) {
      for (const item of (await this.client.list(kind, selector)).items) {
        const { status: _status, ...object } = structuredClone(item) as Record<string, unknown>;
        const metadata = { ...(object.metadata as Record<string, unknown>) };
        for (const field of [
          'managedFields',
          'resourceVersion',
          'uid',
          'generation',
          'creationTimestamp',
        ])
          delete metadata[field];
        resources.push({ kind, name: item.metadata.name!, object: { ...object, metadata } });
      }
    }
    return resources;
  }

  /** Starts the watch (one list of the namespace's Valve Deployments, then the stream). */
  async recover(): Promise<void> {
    this.assertOpen();
    await this.deployments();
  }

  /** Stops the watch; the workloads keep running. A rollout under way fails (and rolls back). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch?.stop();
    await Promise.allSettled(this.queues.values());
  }

  private async sync(
    key: string,
    manifests: Manifest[],
    rollout: RolloutSpec,
    progress: (message: string) => void,
  ): Promise<WorkloadStatus> {
    const sync = this.syncFor(key, await this.deployments(), progress);
    this.applying.add(key);
    try {
      this.applied.set(key, await sync.run(manifests, rollout));
      this.failures.delete(key);
    } catch (error) {
      const reason = apiErrorMessage(error);
      const message = error instanceof ValveError ? reason : `rollout failed: ${reason}`;
      this.failures.set(key, message);
      this.logger.warn({ workload: key, err: message }, 'rollout failed');
      throw error instanceof ValveError
        ? error
        : new ValveError('DEPLOY_ROLLOUT_FAILED', message, { workload: key });
    } finally {
      this.applying.delete(key);
    }
    return this.status(key);
  }

  private syncFor(
    key: string,
    watch: DeploymentWatch,
    progress: (message: string) => void,
  ): WorkloadSync {
    return new WorkloadSync({
      key,
      client: this.client,
      watch,
      namespace: this.namespace,
      rolloutTimeoutMs: this.rolloutTimeoutMs,
      logger: this.logger,
      progress,
      onController: (controller) => {
        if (controller) this.controllers.set(key, controller);
        else this.controllers.delete(key);
      },
      onRolloutStatus: (status) => this.rollouts.set(key, status),
    });
  }

  private async deployments(): Promise<DeploymentWatch> {
    this.assertOpen();
    this.watch ??= new DeploymentWatch({
      client: this.client,
      labelSelector: INVENTORY_LABEL,
      pollMs: this.pollMs,
      logger: this.logger,
    });
    await this.watch.start();
    return this.watch;
  }

  /** The rollout spec in the Deployment's annotation (JSON, as render.ts writes it). */
  private rolloutOf(deployments: Manifest[]): RolloutSpec | null {
    const text = deployments[0]?.metadata.annotations?.[ROLLOUT_ANNOTATION];
    if (deployments.length !== 1 || !text) return null;
    let parsed: ReturnType<typeof rolloutSpecSchema.safeParse>;
    try {
      parsed = rolloutSpecSchema.safeParse(JSON.parse(text));
    } catch (error) {
      throw new ValveError(
        'DEPLOY_MANIFEST_INVALID',
        `annotation ${ROLLOUT_ANNOTATION} is not JSON: ${(error as Error).message}`,
      );
    }
    if (parsed.success) return parsed.data;
    const issue = parsed.error.issues[0]!;
    throw new ValveError(
      'DEPLOY_MANIFEST_INVALID',
      `annotation ${ROLLOUT_ANNOTATION}: ${issue.path.join('.') || 'rollout'}: ${issue.message}`,
    );
  }

  private controllerOf(key: string): RolloutController {
    const controller = this.controllers.get(key);
    if (!controller)
      throw new ValveError('CONFLICT', `no canary or blue-green rollout runs for ${key}`);
    return controller;
  }

  /** Applies and deletes of one key run one at a time. */
  private exclusive<T>(key: string, run: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(run);
    this.queues.set(key, next);
    void next
      .finally(() => {
        if (this.queues.get(key) === next) this.queues.delete(key);
      })
      .catch(() => {});
    return next;
  }

  private assertOpen(): void {
    if (this.closed)
      throw new ValveError('INTERNAL', `the Kubernetes target ${this.name} is closed`);
  }
}
