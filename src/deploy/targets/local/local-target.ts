import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ValveError } from '../../../errors.js';
import { newId } from '../../../ids.js';
import { RolloutController } from '../rollout.js';
import {
  silentLogger,
  type ImageSource,
  type RolloutSpec,
  type Target,
  type TargetCapabilities,
  type TargetLogger,
  type WorkloadSpec,
  type WorkloadStatus,
} from '../target.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { instanceLogBlocks } from '../shared/instance-logs.js';
import { listenOnFreePort } from '../shared/proxy-port.js';
import { StateSaves } from '../shared/state-file-io.js';
import { parseWorkloadSpec, rolloutFailed } from '../shared/target-errors.js';
import { safeWorkloadName } from '../shared/workload-name.js';
import { ImageCache } from './image-cache.js';
import { Instance } from './instance.js';
import { planLaunch } from './launch.js';
import { tailLines } from './log-files.js';
import { PortAllocator } from './ports.js';
import { driftOf, ImageRootWatch, rootsOf } from './drift.js';
import { adoptGroup, terminateGroup } from './process-group.js';
import { WorkloadProxy } from './proxy.js';
import { probeSettings } from './readiness.js';
import { LocalRolloutBackends, type LocalRolloutHost } from './rollout-backends.js';
import {
  readStateFile,
  writeStateFile,
  type InstanceRecord,
  type InstanceRole,
  type LocalState,
  type WorkloadRecord,
} from './state-file.js';
import {
  describeWorkload,
  missingStatus,
  newWorkload,
  routeWorkload,
  sameSpec,
  settleRollout,
  type PreparedImage,
  type Workload,
} from './workload.js';

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
    this.rolloutOf(key).promote();
  }

  async abort(key: string): Promise<void> {
    this.rolloutOf(key).abort('aborted');
  }

  async delete(key: string): Promise<void> {
    await this.recover();
    // A rollout waiting for its promotion would hold the queue for good.
    this.workloads.get(key)?.rollout?.controller.abort('the workload is being deleted');
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
      [...this.workloads.values()].map(async (workload) => {
        await workload.proxy?.close();
        workload.proxy = null;
        await workload.preview?.close();
        workload.preview = null;
      }),
    );
  }

  private async applySpec(
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
    let image: PreparedImage;
    let candidates: Instance[];
    try {
      image = await this.prepare(spec, progress);
      const strategy = spec.rollout?.strategy ?? 'rolling';
      const stableServes = workload.instances.some(
        (instance) => instance.record.role === 'active' && instance.ready,
      );
      // Nothing to compare with (first deploy, nothing ready) or to scale: a plain switch.
      if (strategy !== 'rolling' && serving && stableServes && spec.replicas > 0) {
        return await this.progressive(workload, spec, serving, image, progress);
      }
      workload.record.rollout = null;
      progress(`starting ${spec.replicas} instance(s) of ${spec.image.reference}`);
      candidates = await this.launchCandidates(workload, spec, image, spec.replicas);
    } catch (error) {
      return this.applyFailed(workload, spec, error);
    }
    await this.switchTo(workload, spec, candidates, progress);
    workload.progressing = false;
    await this.persist();
    return this.describe(workload);
  }

  /** A canary or blue-green rollout; see ../rollout.ts. */
  private async progressive(
    workload: Workload,
    spec: WorkloadSpec,
    serving: WorkloadSpec,
    image: PreparedImage,
    progress: (message: string) => void,
  ): Promise<WorkloadStatus> {
    const backends = new LocalRolloutBackends(this.rolloutHost(progress), workload, spec, image);
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
        if (status.message !== before) progress(status.message);
        this.saveInBackground(workload);
      },
    });
    backends.onFailure = (reason) => controller.fail(reason);
    workload.rollout = { controller, backends };
    try {
      await controller.run();
    } finally {
      workload.rollout = null;
      workload.canaryWeight = 0;
      await this.closePreview(workload);
    }
    workload.progressing = false;
    await this.persist();
    return this.describe(workload);
  }

  /** The old version keeps serving; records why and throws. */
  private async applyFailed(
    workload: Workload,
    spec: WorkloadSpec,
    error: unknown,
  ): Promise<never> {
    workload.progressing = false;
    const rolledBack = error instanceof ValveError && error.code === 'DEPLOY_ROLLOUT_FAILED';
    const message = rolledBack
      ? error.message
      : `rollout of ${spec.image.reference} failed: ${(error as Error).message}`;
    workload.record.message = message;
    await this.persist();
    this.logger.warn({ workload: spec.key, err: message }, 'rollout failed');
    throw error instanceof ValveError ? error : rolloutFailed(spec.key, message);
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
  private async launchCandidates(
    workload: Workload,
    spec: WorkloadSpec,
    image: PreparedImage,
    count: number,
  ): Promise<Instance[]> {
    const candidates: Instance[] = [];
    try {
      for (let i = 0; i < count; i++) {
        candidates.push(await this.addInstance(workload, spec, image, 'candidate'));
      }
      await this.persist();
      const started = await Promise.allSettled(candidates.map((candidate) => candidate.start()));
      const failed = started.findIndex((result) => result.status === 'rejected');
      if (failed >= 0) {
        const instance = candidates[failed]!;
        const output = await tailLines(this.logFile(workload, instance.id), 10);
        const reason = (started[failed] as PromiseRejectedResult).reason as Error;
        throw new Error(
          `instance ${instance.id} ${reason.message}` +
            (output.length > 0 ? `; its last output:\n${output.join('\n')}` : ''),
        );
      }
      return candidates;
    } catch (error) {
      await this.removeInstances(workload, candidates);
      throw error;
    }
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

  /**
   * One synchronous step, so each request goes wholly to the old or the new set: `incoming`
   * serve, `outgoing` stop receiving requests; then `outgoing` finish their in-flight requests
   * (bounded by drainTimeoutMs) and stop.
   */
  private async swap(
    workload: Workload,
    incoming: Instance[],
    outgoing: Instance[],
    progress: (message: string) => void,
  ): Promise<void> {
    for (const instance of incoming) {
      instance.record.role = 'active';
      instance.supervised = true;
    }
    for (const instance of outgoing) {
      instance.record.role = 'retiring';
      instance.markDraining();
    }
    workload.canaryWeight = 0;
    this.route(workload);
    await this.persist();
    if (outgoing.length === 0) return;
    progress(`draining ${outgoing.length} old instance(s)`);
    const drained = await workload.proxy?.waitForIdle(
      outgoing.map((instance) => instance.id),
      this.drainTimeoutMs,
    );
    if (drained === false) {
      progress(
        `old instances still busy after ${this.drainTimeoutMs / 1000} s; stopping them anyway`,
      );
    }
    await this.removeInstances(workload, outgoing);
    progress(`stopped ${outgoing.length} old instance(s)`);
  }

  /** What a rollout's backends may do with a workload. */
  private rolloutHost(progress: (message: string) => void): LocalRolloutHost {
    return {
      launchCandidates: (workload, spec, image, count) =>
        this.launchCandidates(workload, spec, image, count),
      removeInstances: (workload, instances) => this.removeInstances(workload, instances),
      switchTo: (workload, spec, candidates) => this.switchTo(workload, spec, candidates, progress),
      openPreview: (workload) => this.openPreview(workload),
      closePreview: (workload) => this.closePreview(workload),
      drainTimeoutMs: this.drainTimeoutMs,
    };
  }

  private rolloutOf(key: string): RolloutController {
    const controller = this.workloads.get(key)?.rollout?.controller;
    if (!controller) throw new ValveError('CONFLICT', `no rollout of ${key} is under way`);
    return controller;
  }

  /** Blue-green: a second address, serving only the candidates. */
  private async openPreview(workload: Workload): Promise<void> {
    if (workload.preview) return;
    for (let attempt = 1; ; attempt++) {
      const port = await this.ports.allocate();
      const proxy = new WorkloadProxy({
        host: this.host,
        port,
        name: `${workload.record.key} (preview)`,
        logger: this.logger,
      });
      try {
        await proxy.listen();
        workload.preview = proxy;
        return;
      } catch (error) {
        this.ports.release(port);
        if (attempt >= 5) throw error;
      }
    }
  }

  private async closePreview(workload: Workload): Promise<void> {
    const preview = workload.preview;
    if (!preview) return;
    workload.preview = null;
    await preview.close();
    this.ports.release(Number(new URL(preview.url).port));
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
    const workload = newWorkload(record);
    workload.proxy = await listenOnFreePort(this.ports, (port) => {
      record.proxyPort = port;
      return this.openProxy(workload);
    });
    this.workloads.set(key, workload);
    await this.persist();
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
    this.route(workload);
    workload.rollout?.backends.instanceChanged(instance);
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

  private route(workload: Workload): void {
    routeWorkload(workload);
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
    const workload = newWorkload({ ...record, instances: [], rollout: record.rollout ?? null });
    this.workloads.set(record.key, workload);
    settleRollout(workload.record);
    try {
      workload.proxy = await this.openProxy(workload);
    } catch (error) {
      workload.record.message = `cannot reopen the address on port ${record.proxyPort}: ${(error as Error).message}`;
      this.logger.error({ workload: record.key, err: error }, 'cannot reopen workload address');
    }

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
    this.route(workload);
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
        const message = `repair of ${key} failed: ${(error as Error).message}`;
        workload.record.message = message;
        await this.persist();
        throw error instanceof ValveError ? error : rolloutFailed(key, message);
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
