import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ValveError, invalidInput } from '../../../errors.js';
import { newId } from '../../../ids.js';
import { PortAllocator } from '../local/ports.js';
import { probeSettings } from '../local/readiness.js';
import { instanceLogBlocks } from '../shared/instance-logs.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import {
  instanceChanged,
  routeThroughProxies,
  rolloutUnderWay,
  runProxyRollout,
  settleUnfinishedRollout,
  stableForRollout,
} from '../shared/proxy-rollout.js';
import { RollingSwitch } from '../shared/rolling-switch.js';
import { StateSaves } from '../shared/state-file-io.js';
import { failApply, failRepair, parseWorkloadSpec } from '../shared/target-errors.js';
import { WorkloadAddresses } from '../shared/workload-addresses.js';
import { alreadyApplied } from '../shared/workload-status.js';
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
import { ContainerWatch } from './container-watch.js';
import { FileDriftWatch } from './file-drift.js';
import {
  containerName,
  containerPlan,
  labelKeys,
  listContainers,
  removeContainers,
  type ObservedContainer,
} from './containers.js';
import { PodmanImages, type RegistryAccess } from './images.js';
import { PodmanInstance, type RestartBackoff } from './instance.js';
import { describeWorkload, missing, nameOf, newWorkload, type Workload } from './workload.js';
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
  /**
   * How often the serving containers' files are compared with their images (default 30 s; 0:
   * only when `status(key, { verify: true })` or `repair` asks). See file-drift.ts.
   */
  driftCheckIntervalMs?: number;
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
    canary: true,
    blueGreen: true,
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
  private readonly watch: ContainerWatch;
  private readonly files: FileDriftWatch;
  private readonly addresses: WorkloadAddresses;
  /** Starts candidates and switches to them (applies, promotions, repairs). */
  private readonly switching: RollingSwitch<Workload, PodmanInstance>;

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
    this.restartBackoff = options.restartBackoff;
    this.watch = new ContainerWatch({
      cli: this.cli,
      owner: this.owner,
      intervalMs: options.watchIntervalMs ?? 1000,
      logger: this.logger,
      workloads: () => this.workloads.values(),
      sweep: () => this.recovered,
    });
    this.files = new FileDriftWatch({
      cli: this.cli,
      scratchLabel: { key: labelKeys.scratch, value: this.owner },
      imageName: (image) => this.images.ensure(image),
      intervalMs: options.driftCheckIntervalMs ?? 30_000,
      logger: this.logger,
      instances: () => [...this.workloads.values()].flatMap((workload) => workload.instances),
    });
    this.addresses = new WorkloadAddresses(this.ports, this.host, this.logger);
    this.switching = new RollingSwitch({
      noun: 'container',
      drainTimeoutMs: this.drainTimeoutMs,
      persist: () => this.persist(),
      removeInstances: (workload, instances) => this.removeInstances(workload, instances),
      lastOutput: (_workload, instance) => instance.lastOutput,
    });
  }

  async apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus> {
    const parsed = parseWorkloadSpec(spec);
    // podman takes env as NAME=value lines: a name with `=` or a line break cannot pass.
    const badName = Object.keys(parsed.env).find((name) => !/^[^=\r\n\0]+$/.test(name));
    if (badName !== undefined)
      throw invalidInput(`workload spec: env name ${JSON.stringify(badName)} is not valid`);
    await this.recover();
    return this.queue.run(spec.key, () => this.applySpec(parsed, onProgress ?? (() => {})));
  }

  async status(key: string, options: { verify?: boolean } = {}): Promise<WorkloadStatus> {
    const workload = this.workloads.get(key);
    if (!workload) return missing(key);
    if (options.verify) {
      await this.watch.refresh();
      await this.files.check(workload.instances);
    }
    return this.describe(workload);
  }

  /**
   * Restarts now what waits for its restart backoff, removes stray containers, and replaces
   * each container whose files drifted with a fresh one of the image, without a failed request.
   */
  async repair(key: string): Promise<void> {
    await this.recover();
    await this.queue.run(key, async () => {
      const workload = this.workloads.get(key);
      if (!workload) return;
      await this.watch.refresh();
      const active = () =>
        workload.instances.filter((instance) => instance.record.role === 'active');
      await Promise.all(active().map((instance) => instance.repair()));
      await this.files.check(active());
      await this.replaceDrifted(workload);
      this.logger.info({ workload: key }, 'repaired workload');
    });
  }

  async promote(key: string): Promise<void> {
    rolloutUnderWay(this.workloads.get(key), key).promote();
  }

  async abort(key: string): Promise<void> {
    rolloutUnderWay(this.workloads.get(key), key).abort('aborted');
  }

  async delete(key: string): Promise<void> {
    await this.recover();
    // A rollout waiting for its promotion would hold the queue for good.
    this.workloads.get(key)?.rollout?.controller.abort('the workload is being deleted');
    await this.queue.run(key, async () => {
      const workload = this.workloads.get(key);
      if (!workload) return;
      await this.addresses.remove(workload);
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
    // Their candidates stay (detached instances are not stopped) for the next server to remove.
    for (const workload of this.workloads.values()) {
      workload.rollout?.controller.abort('the server is shutting down');
    }
    await this.watch.stop();
    await this.files.stop();
    await Promise.all(
      [...this.workloads.values()].map((workload) => this.addresses.close(workload)),
    );
  }

  /** The names `image` has in podman's storage once this target pulled or loaded it. */
  imageNames(image: WorkloadSpec['image']): string[] {
    return this.images.localNames(image);
  }

  private async applySpec(
    spec: WorkloadSpec,
    progress: (message: string) => void,
  ): Promise<WorkloadStatus> {
    const workload = await this.workloadFor(spec.key);
    if (alreadyApplied(workload.record, spec)) {
      progress('already running this spec');
      return this.describe(workload);
    }
    workload.record.desired = spec;
    workload.progressing = true;
    let candidates: PodmanInstance[];
    try {
      const image = await this.images.ensure(spec.image, progress);
      const stable = stableForRollout(workload, spec);
      if (stable) return await this.progressive(workload, spec, stable, progress, image);
      workload.record.rollout = null;
      progress(`starting ${spec.replicas} container(s) of ${spec.image.reference}`);
      candidates = await this.launchCandidates(workload, spec, spec.replicas, image);
    } catch (error) {
      return failApply(workload, spec, error, () => this.persist(), this.logger);
    }
    await this.switchTo(workload, spec, candidates, progress);
    workload.progressing = false;
    await this.persist();
    return this.describe(workload);
  }

  /** A canary or blue-green rollout; see ../rollout.ts and ../shared/proxy-rollout.ts. */
  private async progressive(
    workload: Workload,
    spec: WorkloadSpec,
    serving: WorkloadSpec,
    progress: (message: string) => void,
    image: string,
  ): Promise<WorkloadStatus> {
    await runProxyRollout(workload, spec, serving, {
      launchCandidates: (count) => this.launchCandidates(workload, spec, count, image),
      removeInstances: (instances) => this.removeInstances(workload, instances),
      switchTo: (candidates) => this.switchTo(workload, spec, candidates, progress),
      addresses: this.addresses,
      drainTimeoutMs: this.drainTimeoutMs,
      progress,
      save: () => this.saveInBackground(workload),
    });
    await this.persist();
    return this.describe(workload);
  }

  /**
   * Starts `count` candidate containers and resolves once each is ready. When one cannot get
   * ready (an exit fails at once), all of them are removed and this throws with the
   * container's last output. `image`: the name the apply just got the image by, if it did.
   */
  private launchCandidates(
    workload: Workload,
    spec: WorkloadSpec,
    count: number,
    image?: string,
  ): Promise<PodmanInstance[]> {
    const add = () => this.addInstance(workload, spec, 'candidate', undefined, image);
    return this.switching.launch(workload, count, add);
  }

  /** The candidates become the serving version; every active container is replaced. */
  private async switchTo(
    workload: Workload,
    spec: WorkloadSpec,
    candidates: PodmanInstance[],
    progress: (message: string) => void,
  ): Promise<void> {
    const replaced = workload.instances.filter((instance) => instance.record.role === 'active');
    workload.record.serving = spec;
    workload.record.message = null;
    const switched = () =>
      progress(`switched ${workload.proxy?.url ?? spec.key} to ${spec.image.reference}`);
    await this.switching.swap(workload, candidates, replaced, progress, switched);
    if (replaced.length > 0) progress(`removed ${replaced.length} old container(s)`);
    // Read beside their probes, not before the switch: known by now, or in a moment.
    await Promise.all(candidates.map((instance) => instance.pidKnown()));
  }

  /**
   * Each serving container whose files drifted (as the last check found) is replaced by a
   * fresh container of the image, one at a time: the replacement passes readiness, the switch,
   * the old one drains and is removed. When a replacement cannot get ready, the drifted
   * container keeps serving and this throws.
   */
  private async replaceDrifted(workload: Workload): Promise<void> {
    const { key, serving } = workload.record;
    const drifted = workload.instances.filter(
      (instance) => instance.record.role === 'active' && this.files.driftOf(instance).length > 0,
    );
    if (!serving || drifted.length === 0) return;
    const progress = (message: string) => this.logger.info({ workload: key }, `repair: ${message}`);
    workload.progressing = true;
    try {
      for (const old of drifted) {
        progress(`instance ${old.id}: ${this.files.driftOf(old).join('; ')}: replacing it`);
        const [replacement] = await this.launchCandidates(workload, serving, 1);
        await this.switching.swap(workload, [replacement!], [old], progress);
        await replacement!.pidKnown();
        progress(`instance ${old.id} replaced by ${replacement!.id}`);
      }
    } catch (error) {
      await failRepair(workload, error, () => this.persist());
    } finally {
      workload.progressing = false;
    }
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
      rollout: null,
    };
    const workload = newWorkload(record);
    await this.addresses.openNew(workload);
    this.workloads.set(key, workload);
    await this.persist();
    this.watch.start();
    this.files.start();
    return workload;
  }

  private async addInstance(
    workload: Workload,
    spec: WorkloadSpec,
    role: InstanceRole,
    existing?: InstanceRecord,
    image?: string,
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
    // The apply has just found or pulled the image: its first container need not ask podman
    // again (one podman command less before the switch). Later ones do: it may be gone by then.
    let known = image;
    const plan = async () => {
      const name = known ?? (await this.images.ensure(spec.image));
      known = undefined;
      return containerPlan({
        owner: this.owner,
        key: workload.record.key,
        spec,
        image: name,
        instance: instanceRecord.id,
      });
    };
    const instance = new PodmanInstance(instanceRecord, {
      cli: this.cli,
      plan,
      scratchDir: this.scratchDir,
      probe: probeSettings(spec.readiness),
      logger: this.logger,
      startTimeoutMs: this.startTimeoutMs,
      stopGraceMs: this.stopGraceMs,
      onChange: (instance) => this.instanceChanged(workload, instance),
      backoff: this.restartBackoff,
    });
    workload.instances.push(instance);
    return instance;
  }

  /** Stops instances and forgets them: their containers and ports go too. */
  private async removeInstances(workload: Workload, instances: PodmanInstance[]): Promise<void> {
    await Promise.all(instances.map((instance) => instance.stop()));
    workload.instances = workload.instances.filter((instance) => !instances.includes(instance));
    for (const instance of instances) this.ports.release(instance.record.port);
    await this.persist();
  }

  private instanceChanged(workload: Workload, instance: PodmanInstance): void {
    instanceChanged(workload, instance);
    this.saveInBackground(workload);
  }

  private saveInBackground(workload: Workload): void {
    this.persist().catch((error: unknown) =>
      this.logger.error(
        { err: error, workload: workload.record.key },
        'could not save podman target state',
      ),
    );
  }

  private async recoverState(): Promise<void> {
    await rm(this.scratchDir, { recursive: true, force: true });
    // Containers an image index was being read from when the last server stopped.
    const scratch = await listContainers(this.cli, labelKeys.scratch, this.owner);
    await removeContainers(
      this.cli,
      scratch.map((container) => container.id),
      0,
    );
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
    this.watch.start();
    this.files.start();
    await Promise.all(state.workloads.map((record) => this.recoverWorkload(record, containers)));
    await this.persist();
    this.recovered = true;
  }

  private async recoverWorkload(
    record: WorkloadRecord,
    containers: ObservedContainer[],
  ): Promise<void> {
    const workload = newWorkload({ ...record, instances: [], rollout: record.rollout ?? null });
    this.workloads.set(record.key, workload);
    settleUnfinishedRollout(workload.record);
    await this.addresses.reopen(workload);

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
    routeThroughProxies(workload);
  }

  private describe(workload: Workload): WorkloadStatus {
    return describeWorkload(workload, this.host, this.watch.listError, this.files);
  }

  /** Saves the state file; saves asked for while one runs are folded into the next. */
  private persist(): Promise<void> {
    return this.saves.save();
  }

  private assertOpen(): void {
    if (this.closed) throw new ValveError('INTERNAL', 'the podman target is closed');
  }
}
