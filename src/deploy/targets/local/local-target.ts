import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ValveError } from '../../../errors.js';
import { newId } from '../../../ids.js';
import {
  silentLogger,
  type ImageSource,
  type Target,
  type TargetCapabilities,
  type TargetLogger,
  type WorkloadSpec,
  type WorkloadStatus,
} from '../target.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { instanceLogBlocks } from '../shared/instance-logs.js';
import {
  instanceChanged,
  newProxyWorkload,
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
import { safeWorkloadName } from '../shared/workload-name.js';
import { alreadyApplied, missingStatus } from '../shared/workload-status.js';
import { ImageCache } from './image-cache.js';
import { Instance } from './instance.js';
import { planLaunch } from './launch.js';
import { tailLines } from './log-files.js';
import { PortAllocator } from './ports.js';
import { driftOf, ImageRootWatch, rootsOf } from './drift.js';
import { adoptGroup, terminateGroup } from './process-group.js';
import { probeSettings } from './readiness.js';
import {
  readStateFile,
  writeStateFile,
  type InstanceRecord,
  type InstanceRole,
  type LocalState,
  type WorkloadRecord,
} from './state-file.js';
import { describeWorkload, type PreparedImage, type Workload } from './workload.js';

export interface LocalTargetOptions {
  /** Valve's data directory; this target keeps everything under `<dataDir>/targets/local/`. */
  dataDir: string;
  /** First port for workload addresses and instances; free ones are taken from here upward. */
  portBase: number;
  images: ImageSource;
  logger?: TargetLogger;
  /** Interface the workload addresses listen on (default 127.0.0.1). */
  host?: string;
  /** How long a new process may take to pass readiness (default 60 s). */
  startTimeoutMs?: number;
  /** Between SIGTERM and SIGKILL when stopping an instance (default 10 s). */
  stopGraceMs?: number;
  /** How long replaced instances may take to finish in-flight requests (default 30 s). */
  drainTimeoutMs?: number;
  /**
   * How often the unpacked image roots in use are checked for files changed by hand (default
   * 30 s; 0: only when `status` is asked to verify).
   */
  driftCheckIntervalMs?: number;
}

/**
 * The embedded default target: each instance of a workload is a supervised host process
 * running the unpacked image, and each workload has a stable address, a reverse proxy on a
 * port that survives applies and server restarts. See README.md beside target.ts.
 */
export class LocalTarget implements Target {
  readonly name = 'local';
  readonly capabilities: TargetCapabilities = {
    rollingUpdate: true,
    canary: true,
    blueGreen: true,
    restartOnCrash: true,
    selfHeal: true,
    logs: true,
    prune: true,
  };

  private readonly root: string;
  private readonly stateFile: string;
  private readonly images: ImageCache;
  private readonly ports: PortAllocator;
  private readonly logger: TargetLogger;
  private readonly host: string;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  readonly drainTimeoutMs: number;
  private readonly driftCheckIntervalMs: number;
  private readonly roots: ImageRootWatch;
  private readonly addresses: WorkloadAddresses;
  /** Starts candidates and switches to them (applies, promotions, repairs). */
  private readonly switching: RollingSwitch<Workload, Instance>;
  private readonly workloads = new Map<string, Workload>();
  /** Per workload key: applies, repairs and deletes, which never overlap. */
  private readonly queue = new KeyedQueue();
  private readonly saves = new StateSaves(() => writeStateFile(this.stateFile, this.snapshot()));
  private closed = false;
  private recovery: Promise<void> | null = null;

  constructor(options: LocalTargetOptions) {
    this.root = join(options.dataDir, 'targets', 'local');
    this.stateFile = join(this.root, 'state.json');
    this.images = new ImageCache(join(this.root, 'images'), options.images);
    this.ports = new PortAllocator(options.portBase);
    this.logger = options.logger ?? silentLogger;
    this.host = options.host ?? '127.0.0.1';
    this.startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.stopGraceMs = options.stopGraceMs ?? 10_000;
    this.drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
    this.driftCheckIntervalMs = options.driftCheckIntervalMs ?? 30_000;
    this.roots = new ImageRootWatch(this.images, this.logger);
    this.addresses = new WorkloadAddresses(this.ports, this.host, this.logger);
    this.switching = new RollingSwitch({
      noun: 'instance',
      drainTimeoutMs: this.drainTimeoutMs,
      persist: () => this.persist(),
      removeInstances: (workload, instances) => this.removeInstances(workload, instances),
      lastOutput: (workload, instance) => tailLines(this.logFile(workload, instance.id), 10),
    });
  }

  async apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus> {
    const parsed = parseWorkloadSpec(spec);
    await this.recover();
    return this.queue.run(spec.key, () => this.applySpec(parsed, onProgress ?? (() => {})));
  }

  async status(key: string, options: { verify?: boolean } = {}): Promise<WorkloadStatus> {
    const workload = this.workloads.get(key);
    if (!workload) return missingStatus(key);
    if (options.verify) await this.roots.check(rootsOf(workload));
    return this.describe(workload);
  }

  async repair(key: string): Promise<void> {
    await this.recover();
    await this.queue.run(key, () => this.repairWorkload(key));
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
      await rm(this.workloadDir(workload), { recursive: true, force: true });
      this.logger.info({ workload: key }, 'deleted workload');
    });
  }

  async logs(key: string, options: { tailLines?: number } = {}): Promise<string> {
    const workload = this.workloads.get(key);
    if (!workload) return '';
    return instanceLogBlocks(workload.instances, async (instance) => {
      const lines = await tailLines(this.logFile(workload, instance.id), options.tailLines ?? 100);
      return { runsAs: `pid ${instance.record.pid}`, lines };
    });
  }

  /**
   * Adopts what an earlier server left running. Runs once; apply and delete wait for it (and
   * start it when the server did not), so they never save a state file that forgot instances.
   */
  recover(): Promise<void> {
    this.assertOpen();
    this.recovery ??= this.recoverState();
    return this.recovery;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.recovery?.catch(() => {});
    this.roots.stop();
    for (const workload of this.workloads.values()) {
      for (const instance of workload.instances) instance.detach();
    }
    // The last word on disk, taken now: whatever interrupted applies and rollouts do from here
    // on changes nothing there, so the next server sees their candidates and stops them.
    const last = this.snapshot();
    this.closed = true;
    this.saves.close();
    for (const workload of this.workloads.values()) {
      workload.rollout?.controller.abort('the server is shutting down');
    }
    await this.saves.writeLast(() => writeStateFile(this.stateFile, last));
    await Promise.all(
      [...this.workloads.values()].map((workload) => this.addresses.close(workload)),
    );
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
    let candidates: Instance[];
    try {
      const image = await this.prepare(spec, progress);
      const stable = stableForRollout(workload, spec);
      if (stable) return await this.progressive(workload, spec, stable, image, progress);
      workload.record.rollout = null;
      progress(`starting ${spec.replicas} instance(s) of ${spec.image.reference}`);
      candidates = await this.launchCandidates(workload, spec, image, spec.replicas);
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
    image: PreparedImage,
    progress: (message: string) => void,
  ): Promise<WorkloadStatus> {
    await runProxyRollout(workload, spec, serving, {
      launchCandidates: (count) => this.launchCandidates(workload, spec, image, count),
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

  /** Unpacks the image (once per digest) and plans its processes. */
  private async prepare(
    spec: WorkloadSpec,
    progress?: (message: string) => void,
  ): Promise<PreparedImage> {
    const image = await this.images.prepare(spec.image, progress);
    const launch = planLaunch({
      rootfs: image.rootfs,
      config: image.config,
      spec,
      hostPath: process.env.PATH ?? '',
    });
    return { launch, rootfs: image.rootfs };
  }

  /**
   * Starts `count` candidate instances and resolves once each is ready. When one cannot get
   * ready (a crash fails at once), all of them are removed and this throws with the
   * process's last output.
   */
  private launchCandidates(
    workload: Workload,
    spec: WorkloadSpec,
    image: PreparedImage,
    count: number,
  ): Promise<Instance[]> {
    const add = () => this.addInstance(workload, spec, image, 'candidate');
    return this.switching.launch(workload, count, add);
  }

  /** The switch to a new spec: the candidates serve, the active instances drain and stop. */
  private async switchTo(
    workload: Workload,
    spec: WorkloadSpec,
    candidates: Instance[],
    progress: (message: string) => void,
  ): Promise<void> {
    const replaced = workload.instances.filter((instance) => instance.record.role === 'active');
    workload.record.serving = spec;
    workload.record.message = null;
    await this.swap(workload, candidates, replaced, progress);
    progress(`${workload.proxy?.url ?? spec.key} serves ${spec.image.reference}`);
  }

  /** `incoming` serve in one step; `outgoing` drain and stop (see ../shared/rolling-switch.ts). */
  private async swap(
    workload: Workload,
    incoming: Instance[],
    outgoing: Instance[],
    progress: (message: string) => void,
  ): Promise<void> {
    await this.switching.swap(workload, incoming, outgoing, progress);
    if (outgoing.length > 0) progress(`stopped ${outgoing.length} old instance(s)`);
  }

  /** The workload of `key`, created with its address (a port of its own, kept for good). */
  private async workloadFor(key: string): Promise<Workload> {
    const existing = this.workloads.get(key);
    if (existing) return existing;
    const record: WorkloadRecord = {
      key,
      dirName: safeWorkloadName(key),
      proxyPort: 0,
      desired: null,
      serving: null,
      instances: [],
      message: null,
      rollout: null,
    };
    const workload: Workload = newProxyWorkload(record);
    await this.addresses.openNew(workload);
    this.workloads.set(key, workload);
    await this.persist();
    return workload;
  }

  private async addInstance(
    workload: Workload,
    spec: WorkloadSpec,
    image: PreparedImage,
    role: InstanceRole,
    existing?: InstanceRecord,
  ): Promise<Instance> {
    this.assertOpen();
    const record: InstanceRecord = existing ?? {
      id: newId('inst'),
      role,
      port: await this.ports.allocate(),
      pid: 0,
      pidStartTime: null,
      startedAt: new Date().toISOString(),
      restarts: 0,
      image: spec.image,
    };
    await mkdir(join(this.workloadDir(workload), 'logs'), { recursive: true });
    const instance = new Instance(record, {
      launch: image.launch,
      rootfs: image.rootfs,
      probe: probeSettings(spec.readiness),
      logFile: this.logFile(workload, record.id),
      logger: this.logger,
      startTimeoutMs: this.startTimeoutMs,
      stopGraceMs: this.stopGraceMs,
      onChange: (instance) => this.instanceChanged(workload, instance),
    });
    workload.instances.push(instance);
    return instance;
  }

  /** Stops instances and forgets them: their ports and their log files go too. */
  private async removeInstances(workload: Workload, instances: Instance[]): Promise<void> {
    await Promise.all(instances.map((instance) => instance.stop()));
    workload.instances = workload.instances.filter((instance) => !instances.includes(instance));
    for (const instance of instances) {
      this.ports.release(instance.record.port);
      await rm(this.logFile(workload, instance.id), { force: true });
    }
    await this.persist();
  }

  private instanceChanged(workload: Workload, instance: Instance): void {
    instanceChanged(workload, instance);
    this.saveInBackground(workload);
  }

  private saveInBackground(workload: Workload): void {
    this.persist().catch((error: unknown) =>
      this.logger.error(
        { err: error, workload: workload.record.key },
        'could not save local target state',
      ),
    );
  }

  private async recoverState(): Promise<void> {
    await this.images.removeTemps();
    const state = (await readStateFile(this.stateFile)) ?? { version: 1, workloads: [] };
    for (const record of state.workloads) {
      this.ports.hold(record.proxyPort);
      for (const instance of record.instances) this.ports.hold(instance.port);
    }
    await Promise.all(state.workloads.map((record) => this.recoverWorkload(record)));
    await this.persist();
    if (!this.closed) {
      this.roots.start(this.driftCheckIntervalMs, () =>
        [...this.workloads.values()].flatMap(rootsOf),
      );
    }
  }

  private async recoverWorkload(record: WorkloadRecord): Promise<void> {
    const workload: Workload = newProxyWorkload({
      ...record,
      instances: [],
      rollout: record.rollout ?? null,
    });
    this.workloads.set(record.key, workload);
    settleUnfinishedRollout(workload.record);
    await this.addresses.reopen(workload);

    // Left by an apply the server did not live to finish: the reconciler will apply again.
    const unfinished = record.instances.filter((instance) => instance.role !== 'active');
    await Promise.all(
      unfinished.map(async (instance) => {
        const proc = instance.pid ? adoptGroup(instance.pid, instance.pidStartTime, 1000) : null;
        if (proc) await terminateGroup(proc, this.stopGraceMs);
        this.ports.release(instance.port);
        await rm(this.logFile(workload, instance.id), { force: true });
      }),
    );

    const serving = record.serving;
    const active = record.instances.filter((instance) => instance.role === 'active');
    if (!serving || active.length === 0) return;
    let image: PreparedImage;
    try {
      image = await this.prepare(serving);
    } catch (error) {
      image = { launch: error as Error, rootfs: null };
      workload.record.message = `cannot restart instances: ${(error as Error).message}`;
    }
    const instances = await Promise.all(
      active.map((instance) => this.addInstance(workload, serving, image, 'active', instance)),
    );
    await Promise.all(
      instances.map(async (instance) => {
        if (!(await instance.adopt()))
          instance.restartNow('its process ended while the server was down');
      }),
    );
    routeThroughProxies(workload);
  }

  /**
   * Re-creates what drifted: instances waiting out a restart backoff start now; instances whose
   * image root changed move to a fresh unpack of the image (never the root in use), one at a
   * time, each replacement ready before its predecessor stops serving.
   */
  private async repairWorkload(key: string): Promise<void> {
    const workload = this.workloads.get(key);
    const serving = workload?.record.serving;
    if (!workload || !serving) return;
    const active = () => workload.instances.filter((instance) => instance.record.role === 'active');
    for (const instance of active()) {
      if (instance.restartIfWaiting())
        this.logger.info({ instance: instance.id }, 'repair: restarted');
    }
    const roots = rootsOf(workload);
    await this.roots.check(roots);
    const progress = (message: string) => this.logger.info({ workload: key }, `repair: ${message}`);
    for (const root of roots) {
      const changed = this.roots.changedFiles(root);
      if (changed.length === 0) continue;
      workload.progressing = true;
      try {
        progress(`${changed.join('; ')}: unpacking ${serving.image.reference} afresh`);
        const fresh = await this.images.refresh(serving.image, root);
        const image: PreparedImage = {
          launch: planLaunch({
            rootfs: fresh.rootfs,
            config: fresh.config,
            spec: serving,
            hostPath: process.env.PATH ?? '',
          }),
          rootfs: fresh.rootfs,
        };
        for (const old of active().filter((instance) => instance.rootfs === root)) {
          const [replacement] = await this.launchCandidates(workload, serving, image, 1);
          await this.swap(workload, [replacement!], [old], progress);
        }
        this.roots.replaced(root, fresh.rootfs);
        if (!this.rootInUse(root)) await this.images.removeRoot(root);
      } catch (error) {
        await failRepair(workload, error, () => this.persist());
      } finally {
        workload.progressing = false;
      }
    }
  }

  private rootInUse(root: string): boolean {
    return [...this.workloads.values()].some((workload) =>
      workload.instances.some((instance) => instance.rootfs === root),
    );
  }

  private describe(workload: Workload): WorkloadStatus {
    return describeWorkload(workload, this.host, driftOf(workload, this.roots));
  }

  /** Saves the state file; saves asked for while one runs are folded into the next. */
  private persist(): Promise<void> {
    return this.saves.save();
  }

  private snapshot(): LocalState {
    return {
      version: 1,
      workloads: [...this.workloads.values()].map((workload) => ({
        ...workload.record,
        instances: workload.instances.map((instance) => ({ ...instance.record })),
      })),
    };
  }

  private assertOpen(): void {
    if (this.closed) throw new ValveError('INTERNAL', 'the local target is closed');
  }

  private workloadDir(workload: Workload): string {
    return join(this.root, 'workloads', workload.record.dirName);
  }

  private logFile(workload: Workload, instanceId: string): string {
    return join(this.workloadDir(workload), 'logs', `${instanceId}.log`);
  }
}

/** Readable and unique: `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`. */
export const dirNameOf = safeWorkloadName;
