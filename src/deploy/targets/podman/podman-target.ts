import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ValveError, invalidInput } from '../../../errors.js';
import { newId } from '../../../ids.js';
import { PortAllocator } from '../local/ports.js';
import { WorkloadProxy } from '../local/proxy.js';
import { probeSettings } from '../local/readiness.js';
import { instanceLogBlocks } from '../shared/instance-logs.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { listenOnFreePort } from '../shared/proxy-port.js';
import { StateSaves } from '../shared/state-file-io.js';
import { parseWorkloadSpec, rolloutFailed } from '../shared/target-errors.js';
import {
  silentLogger,
  type ImageSource,
  type Target,
  type TargetCapabilities,
  type TargetLogger,
  type WorkloadSpec,
  type WorkloadStatus,
} from '../target.js';
import { PodmanCli } from './cli.js';
import {
  containerName,
  labelKeys,
  listContainers,
  removeContainers,
  type ContainerPlan,
  type ObservedContainer,
} from './containers.js';
import { PodmanImages, type RegistryAccess } from './images.js';
import { PodmanInstance, type RestartBackoff } from './instance.js';
import { describeWorkload, missing, nameOf, sameSpec, type Workload } from './workload.js';
import {
  readStateFile,
  writeStateFile,
  type InstanceRecord,
  type InstanceRole,
  type WorkloadRecord,
} from './state-file.js';

export interface PodmanTargetOptions {
  /** Valve's data directory; this target keeps its state under `<dataDir>/targets/podman/`. */
  dataDir: string;
  /** First port for workload addresses and the containers' host ports; free ones from here upward. */
  portBase: number;
  /** Valve's registry, pulled from (preferred: what a podman on another host would do). */
  registry?: RegistryAccess;
  /** Where images are read from when there is no registry address or a pull fails. */
  images?: ImageSource;
  /** The podman binary (default `podman` on PATH). */
  podman?: string;
  logger?: TargetLogger;
  /** Interface the workload addresses listen on (default 127.0.0.1). */
  host?: string;
  /** How long a new container may take to pass readiness (default 60 s). */
  startTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when stopping a container (default 10 s). */
  stopGraceMs?: number;
  /** How long replaced instances may take to finish in-flight requests (default 30 s). */
  drainTimeoutMs?: number;
  /** How often podman is asked for the state of every container (default 1 s). */
  watchIntervalMs?: number;
  /** Waits before restarting a container that went down (default 1 s doubling to 30 s). */
  restartBackoff?: RestartBackoff;
}

/**
 * Runs each instance of a workload as a podman container of the registry's image, published
 * on a loopback port, behind the same stable-address proxy and rolling switch as the local
 * target. Containers carry labels (`valve.dev/target`, `valve.dev/workload`,
 * `valve.dev/instance`), so a new server re-adopts them; one `podman ps` each second notices
 * crashed and removed containers. See README.md in this folder.
 */
export class PodmanTarget implements Target {
  readonly name = 'podman';
  readonly capabilities: TargetCapabilities = {
    rollingUpdate: true,
    canary: false,
    blueGreen: false,
    restartOnCrash: true,
    selfHeal: true,
    logs: true,
    prune: true,
  };
  /** Value of the `valve.dev/target` label on this target's containers: a hash of its data directory. */
  readonly owner: string;

  private readonly root: string;
  private readonly stateFile: string;
  private readonly scratchDir: string;
  private readonly cli: PodmanCli;
  private readonly images: PodmanImages;
  private readonly ports: PortAllocator;
  private readonly logger: TargetLogger;
  private readonly host: string;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly drainTimeoutMs: number;
  private readonly watchIntervalMs: number;
  private readonly restartBackoff: RestartBackoff | undefined;
  private readonly workloads = new Map<string, Workload>();
  /** Per workload key: applies, repairs and deletes, which never overlap. */
  private readonly queue = new KeyedQueue();
  private readonly saves = new StateSaves(() =>
    writeStateFile(this.stateFile, {
      version: 1,
      workloads: [...this.workloads.values()].map((workload) => ({
        ...workload.record,
        instances: workload.instances.map((instance) => ({ ...instance.record })),
      })),
    }),
  );
  private closed = false;
  private recovery: Promise<void> | null = null;
  /** Strays are removed only once recovery has adopted what it could. */
  private recovered = false;
  private watchTimer: NodeJS.Timeout | undefined;
  private listings: Promise<void> = Promise.resolve();
  /** Why the last `podman ps` failed; null when it worked. */
  private listError: string | null = null;

  constructor(options: PodmanTargetOptions) {
    this.root = join(options.dataDir, 'targets', 'podman');
    this.stateFile = join(this.root, 'state.json');
    this.scratchDir = join(this.root, 'tmp');
    this.owner = createHash('sha256').update(resolve(options.dataDir)).digest('hex').slice(0, 16);
    this.cli = new PodmanCli(options.podman);
    this.logger = options.logger ?? silentLogger;
    this.images = new PodmanImages({
      cli: this.cli,
      registry: options.registry,
      source: options.images,
      scratchDir: this.scratchDir,
      logger: this.logger,
    });
    this.ports = new PortAllocator(options.portBase);
    this.host = options.host ?? '127.0.0.1';
    this.startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.stopGraceMs = options.stopGraceMs ?? 10_000;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.watchIntervalMs = options.watchIntervalMs ?? 1000;
    this.restartBackoff = options.restartBackoff;
  }

  async apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus> {
    const parsed = parseWorkloadSpec(spec);
    // podman takes env as NAME=value lines: a name with `=` or a line break cannot pass.
    const badName = Object.keys(parsed.env).find((name) => !/^[^=\r\n\0]+$/.test(name));
    if (badName !== undefined)
      throw invalidInput(`workload spec: env name ${JSON.stringify(badName)} is not valid`);
    const strategy = parsed.rollout?.strategy ?? 'rolling';
    if (strategy !== 'rolling') {
      throw invalidInput(`the podman target cannot do ${strategy} rollouts yet; use rolling`);
    }
    await this.recover();
    return this.queue.run(spec.key, () => this.rollout(parsed, onProgress ?? (() => {})));
  }

  async status(key: string, options: { verify?: boolean } = {}): Promise<WorkloadStatus> {
    if (options.verify && this.workloads.has(key)) await this.refresh();
    const workload = this.workloads.get(key);
    return workload ? this.describe(workload) : missing(key);
  }

  /** Restarts now what waits for its restart backoff, and removes stray containers. */
  async repair(key: string): Promise<void> {
    await this.recover();
    await this.queue.run(key, async () => {
      const workload = this.workloads.get(key);
      if (!workload) return;
      await this.refresh();
      const active = workload.instances.filter((instance) => instance.record.role === 'active');
      await Promise.all(active.map((instance) => instance.repair()));
      this.logger.info({ workload: key }, 'repaired workload');
    });
  }

  async delete(key: string): Promise<void> {
    await this.recover();
    await this.queue.run(key, async () => {
      const workload = this.workloads.get(key);
      if (!workload) return;
      await workload.proxy?.close();
      workload.proxy = null;
      await Promise.all(workload.instances.map((instance) => instance.stop()));
      for (const instance of workload.instances) this.ports.release(instance.record.port);
      this.ports.release(workload.record.proxyPort);
      this.workloads.delete(key);
      await this.persist();
      // Whatever else carries the workload's label (a container a crash left behind).
      const left = (await listContainers(this.cli, labelKeys.owner, this.owner)).filter(
        (container) => container.labels[labelKeys.workload] === key,
      );
      await removeContainers(
        this.cli,
        left.map((container) => container.id),
        this.stopGraceMs,
      );
      this.logger.info({ workload: key }, 'deleted workload');
    });
  }

  async logs(key: string, options: { tailLines?: number } = {}): Promise<string> {
    const workload = this.workloads.get(key);
    if (!workload) return '';
    return instanceLogBlocks(workload.instances, async (instance) => {
      const lines = await instance.output(options.tailLines ?? 100);
      return { runsAs: `container ${instance.record.container?.slice(0, 12) ?? 'none'}`, lines };
    });
  }

  /**
   * Adopts what an earlier server left running. Runs once; apply, repair and delete wait for
   * it (and start it when the server did not), so they never save a state file that forgot
   * containers.
   */
  recover(): Promise<void> {
    this.assertOpen();
    this.recovery ??= this.recoverState();
    return this.recovery;
  }

  /** Stops the proxies and the watch, leaves every container running for `recover()`. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.recovery?.catch(() => {});
    for (const workload of this.workloads.values()) {
      for (const instance of workload.instances) instance.detach();
    }
    // The last word on disk: from here on, interrupted applies change nothing there, so the
    // next server sees their candidates and removes them.
    await this.persist();
    this.closed = true;
    this.saves.close();
    clearTimeout(this.watchTimer);
    await this.listings;
    await Promise.all(
      [...this.workloads.values()].map(async (workload) => {
        await workload.proxy?.close();
        workload.proxy = null;
      }),
    );
  }

  /** The names `image` has in podman's storage once this target pulled or loaded it. */
  imageNames(image: WorkloadSpec['image']): string[] {
    return this.images.localNames(image);
  }

  private async rollout(
    spec: WorkloadSpec,
    progress: (message: string) => void,
  ): Promise<WorkloadStatus> {
    const workload = await this.workloadFor(spec.key);
    const { serving, desired } = workload.record;
    if (serving && desired && sameSpec(serving, spec) && sameSpec(desired, spec)) {
      progress('already running this spec');
      return this.describe(workload);
    }
    workload.record.desired = spec;
    workload.progressing = true;
    const candidates: PodmanInstance[] = [];
    try {
      await this.images.ensure(spec.image, progress);
      for (let i = 0; i < spec.replicas; i++) {
        candidates.push(await this.addInstance(workload, spec, 'candidate'));
      }
      await this.persist();
      progress(`starting ${spec.replicas} container(s) of ${spec.image.reference}`);
      const started = await Promise.allSettled(candidates.map((candidate) => candidate.start()));
      const failed = started.findIndex((result) => result.status === 'rejected');
      if (failed >= 0) {
        const instance = candidates[failed]!;
        const reason = (started[failed] as PromiseRejectedResult).reason as Error;
        const output = instance.lastOutput;
        throw new Error(
          `instance ${instance.id} ${reason.message}` +
            (output.length > 0 ? `; its last output:\n${output.join('\n')}` : ''),
        );
      }
    } catch (error) {
      await this.removeInstances(workload, candidates);
      workload.progressing = false;
      const message = `rollout of ${spec.image.reference} failed: ${(error as Error).message}`;
      workload.record.message = message;
      await this.persist();
      this.logger.warn({ workload: spec.key, err: message }, 'rollout failed');
      throw error instanceof ValveError ? error : rolloutFailed(spec.key, message);
    }

    // The switch: one synchronous step, so each request goes wholly to the old or the new set.
    const replaced = workload.instances.filter((instance) => instance.record.role === 'active');
    for (const candidate of candidates) {
      candidate.record.role = 'active';
      candidate.supervised = true;
    }
    for (const instance of replaced) {
      instance.record.role = 'retiring';
      instance.markDraining();
    }
    workload.record.serving = spec;
    workload.record.message = null;
    this.route(workload);
    await this.persist();
    progress(`switched ${workload.proxy?.url ?? spec.key} to ${spec.image.reference}`);

    if (replaced.length > 0) {
      progress(`draining ${replaced.length} old container(s)`);
      const drained = await workload.proxy?.waitForIdle(
        replaced.map((instance) => instance.id),
        this.drainTimeoutMs,
      );
      if (drained === false) {
        progress(
          `old containers still busy after ${this.drainTimeoutMs / 1000} s; stopping them anyway`,
        );
      }
      await this.removeInstances(workload, replaced);
      progress(`removed ${replaced.length} old container(s)`);
    }
    workload.progressing = false;
    await this.persist();
    return this.describe(workload);
  }

  /** The workload of `key`, created with its address (a port of its own, kept for good). */
  private async workloadFor(key: string): Promise<Workload> {
    const existing = this.workloads.get(key);
    if (existing) return existing;
    const record: WorkloadRecord = {
      key,
      dirName: nameOf(key),
      proxyPort: 0,
      desired: null,
      serving: null,
      instances: [],
      message: null,
    };
    const workload: Workload = {
      record,
      instances: [],
      proxy: null,
      progressing: false,
      strays: [],
    };
    workload.proxy = await listenOnFreePort(this.ports, (port) => {
      record.proxyPort = port;
      return this.openProxy(workload);
    });
    this.workloads.set(key, workload);
    await this.persist();
    this.startWatching();
    return workload;
  }

  private async openProxy(workload: Workload): Promise<WorkloadProxy> {
    const proxy = new WorkloadProxy({
      host: this.host,
      port: workload.record.proxyPort,
      name: workload.record.key,
      logger: this.logger,
    });
    await proxy.listen();
    return proxy;
  }

  private async addInstance(
    workload: Workload,
    spec: WorkloadSpec,
    role: InstanceRole,
    existing?: InstanceRecord,
  ): Promise<PodmanInstance> {
    this.assertOpen();
    let record = existing;
    if (!record) {
      const id = newId('inst');
      record = {
        id,
        role,
        name: containerName(workload.record.dirName, id),
        container: null,
        port: await this.ports.allocate(),
        pid: 0,
        startedAt: new Date().toISOString(),
        restarts: 0,
        image: spec.image,
      };
    }
    const instanceRecord = record;
    const instance = new PodmanInstance(instanceRecord, {
      cli: this.cli,
      plan: () => this.containerPlan(workload.record.key, spec, instanceRecord),
      scratchDir: this.scratchDir,
      probe: probeSettings(spec.readiness),
      logger: this.logger,
      startTimeoutMs: this.startTimeoutMs,
      stopGraceMs: this.stopGraceMs,
      onChange: () => this.instanceChanged(workload),
      backoff: this.restartBackoff,
    });
    workload.instances.push(instance);
    return instance;
  }

  /** `podman run` of one instance: the spec's command, env and `PORT`, and the labels recover() finds. */
  private async containerPlan(
    key: string,
    spec: WorkloadSpec,
    record: InstanceRecord,
  ): Promise<ContainerPlan> {
    return {
      image: await this.images.ensure(spec.image),
      command: spec.command,
      args: spec.args,
      // PORT as the local target sets it, so an app written for one runs on the other.
      env: { ...spec.env, PORT: String(spec.port) },
      containerPort: spec.port,
      labels: {
        [labelKeys.owner]: this.owner,
        [labelKeys.workload]: key,
        [labelKeys.instance]: record.id,
        [labelKeys.image]: spec.image.digest,
      },
    };
  }

  /** Stops instances and forgets them: their containers and ports go too. */
  private async removeInstances(workload: Workload, instances: PodmanInstance[]): Promise<void> {
    await Promise.all(instances.map((instance) => instance.stop()));
    workload.instances = workload.instances.filter((instance) => !instances.includes(instance));
    for (const instance of instances) this.ports.release(instance.record.port);
    await this.persist();
  }

  private instanceChanged(workload: Workload): void {
    this.route(workload);
    this.persist().catch((error: unknown) =>
      this.logger.error(
        { err: error, workload: workload.record.key },
        'could not save podman target state',
      ),
    );
  }

  /** Points the address at the serving instances that pass readiness. */
  private route(workload: Workload): void {
    workload.proxy?.setBackends(
      workload.instances
        .filter((instance) => instance.record.role === 'active' && instance.ready)
        .map((instance) => ({ id: instance.id, port: instance.record.port })),
    );
  }

  /** One `podman ps` each `watchIntervalMs` while there are workloads (never two at once). */
  private startWatching(): void {
    if (this.watchTimer || this.closed) return;
    const tick = async () => {
      if (this.workloads.size > 0) await this.refresh().catch(() => {});
      if (this.closed) return;
      this.watchTimer = setTimeout(() => void tick(), this.watchIntervalMs);
      this.watchTimer.unref();
    };
    this.watchTimer = setTimeout(() => void tick(), this.watchIntervalMs);
    this.watchTimer.unref();
  }

  /** Lists the containers and tells each instance what became of its own; a caller gets a listing that begins after its call. */
  private refresh(): Promise<void> {
    const next = this.listings.then(() => this.listOnce());
    this.listings = next.catch(() => {});
    return next;
  }

  private async listOnce(): Promise<void> {
    if (this.closed) return;
    const takenAt = Date.now();
    // An instance forgotten while podman lists still owned its container when the listing began.
    const owned = new Set(this.instanceIds());
    let containers: ObservedContainer[];
    try {
      containers = await listContainers(this.cli, labelKeys.owner, this.owner);
      this.listError = null;
    } catch (error) {
      this.listError = `cannot list containers: ${(error as Error).message}`;
      this.logger.warn({ err: this.listError }, 'podman ps failed');
      return;
    }
    if (this.closed) return;
    const byInstance = new Map<string, ObservedContainer>();
    for (const container of containers) {
      const id = container.labels[labelKeys.instance];
      if (id) byInstance.set(id, container);
    }
    for (const workload of this.workloads.values()) {
      for (const instance of workload.instances) {
        owned.add(instance.id);
        instance.observe(byInstance.get(instance.id) ?? null, takenAt);
      }
    }
    const strays = containers.filter(
      (container) => !owned.has(container.labels[labelKeys.instance] ?? ''),
    );
    for (const workload of this.workloads.values()) {
      workload.strays = strays
        .filter((container) => container.labels[labelKeys.workload] === workload.record.key)
        .map((container) => container.name);
    }
    if (strays.length > 0 && this.recovered) {
      this.logger.info(
        { containers: strays.map((container) => container.name) },
        'removing containers no instance owns',
      );
      await removeContainers(
        this.cli,
        strays.map((container) => container.id),
        0,
      ).catch((error: unknown) =>
        this.logger.warn({ err: (error as Error).message }, 'could not remove stray containers'),
      );
    }
  }

  private instanceIds(): string[] {
    return [...this.workloads.values()].flatMap((workload) =>
      workload.instances.map((instance) => instance.id),
    );
  }

  private async recoverState(): Promise<void> {
    await rm(this.scratchDir, { recursive: true, force: true });
    const state = await readStateFile(this.stateFile);
    if (!state || state.workloads.length === 0) {
      this.recovered = true;
      return;
    }
    for (const record of state.workloads) {
      this.ports.hold(record.proxyPort);
      for (const instance of record.instances) this.ports.hold(instance.port);
    }
    const containers = await listContainers(this.cli, labelKeys.owner, this.owner);
    this.startWatching();
    await Promise.all(state.workloads.map((record) => this.recoverWorkload(record, containers)));
    await this.persist();
    this.recovered = true;
  }

  private async recoverWorkload(
    record: WorkloadRecord,
    containers: ObservedContainer[],
  ): Promise<void> {
    const workload: Workload = {
      record: { ...record, instances: [] },
      instances: [],
      proxy: null,
      progressing: false,
      strays: [],
    };
    this.workloads.set(record.key, workload);
    try {
      workload.proxy = await this.openProxy(workload);
    } catch (error) {
      workload.record.message = `cannot reopen the address on port ${record.proxyPort}: ${(error as Error).message}`;
      this.logger.error({ workload: record.key, err: error }, 'cannot reopen workload address');
    }

    // Left by an apply the server did not live to finish: the reconciler will apply again.
    const unfinished = record.instances.filter((instance) => instance.role !== 'active');
    await removeContainers(
      this.cli,
      unfinished.map((instance) => instance.container ?? instance.name),
      this.stopGraceMs,
    );
    for (const instance of unfinished) this.ports.release(instance.port);

    const serving = record.serving;
    const active = record.instances.filter((instance) => instance.role === 'active');
    if (!serving || active.length === 0) return;
    const instances = await Promise.all(
      active.map((instance) => this.addInstance(workload, serving, 'active', instance)),
    );
    await Promise.all(
      instances.map((instance) =>
        instance.adopt(
          containers.find((container) => container.labels[labelKeys.instance] === instance.id) ??
            null,
        ),
      ),
    );
    this.route(workload);
  }

  private describe(workload: Workload): WorkloadStatus {
    return describeWorkload(workload, this.host, this.listError);
  }

  /** Saves the state file; saves asked for while one runs are folded into the next. */
  private persist(): Promise<void> {
    return this.saves.save();
  }

  private assertOpen(): void {
    if (this.closed) throw new ValveError('INTERNAL', 'the podman target is closed');
  }
}
