import { createHash } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ValveError, invalidInput } from '../../../errors.js';
import { newId } from '../../../ids.js';
import {
  silentLogger,
  workloadSpecSchema,
  type HealthState,
  type ImageSource,
  type Target,
  type TargetLogger,
  type WorkloadSpec,
  type WorkloadStatus,
} from '../target.js';
import { ImageCache } from './image-cache.js';
import { Instance } from './instance.js';
import { planLaunch, type LaunchPlan } from './launch.js';
import { tailLines } from './log-files.js';
import { PortAllocator } from './ports.js';
import { adoptGroup, terminateGroup } from './process-group.js';
import { WorkloadProxy } from './proxy.js';
import { probeSettings } from './readiness.js';
import {
  readStateFile,
  writeStateFile,
  type InstanceRecord,
  type InstanceRole,
  type WorkloadRecord,
} from './state-file.js';

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
}

interface Workload {
  /** Persisted fields; `instances` is rebuilt from the live instances at each save. */
  record: WorkloadRecord;
  instances: Instance[];
  proxy: WorkloadProxy | null;
  progressing: boolean;
}

/**
 * The embedded default target: each instance of a workload is a supervised host process
 * running the unpacked image, and each workload has a stable address, a reverse proxy on a
 * port that survives applies and server restarts. See README.md beside target.ts.
 */
export class LocalTarget implements Target {
  readonly name = 'local';
  readonly capabilities = { rollingUpdate: true, restartOnCrash: true, logs: true };

  private readonly root: string;
  private readonly stateFile: string;
  private readonly images: ImageCache;
  private readonly ports: PortAllocator;
  private readonly logger: TargetLogger;
  private readonly host: string;
  private readonly startTimeoutMs: number;
  private readonly stopGraceMs: number;
  private readonly drainTimeoutMs: number;
  private readonly workloads = new Map<string, Workload>();
  /** Per workload key: the tail of the queue of applies and deletes, which never overlap. */
  private readonly queues = new Map<string, Promise<unknown>>();
  private saving: Promise<void> = Promise.resolve();
  private savePending = false;
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
  }

  async apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus> {
    const parsed = workloadSpecSchema.safeParse(spec);
    if (!parsed.success) {
      throw invalidInput(`workload spec: ${parsed.error.issues.map(describeIssue).join('; ')}`);
    }
    await this.recover();
    return this.exclusive(spec.key, () => this.rollout(parsed.data, onProgress ?? (() => {})));
  }

  async status(key: string): Promise<WorkloadStatus> {
    const workload = this.workloads.get(key);
    return workload ? this.describe(workload) : missing(key);
  }

  async delete(key: string): Promise<void> {
    await this.recover();
    await this.exclusive(key, async () => {
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
    const order: Record<InstanceRole, number> = { active: 0, candidate: 1, retiring: 2 };
    const instances = [...workload.instances].sort(
      (a, b) => order[a.record.role] - order[b.record.role],
    );
    const blocks = await Promise.all(
      instances.map(async (instance) => {
        const lines = await tailLines(
          this.logFile(workload, instance.id),
          options.tailLines ?? 100,
        );
        const { pid, image } = instance.record;
        const header = `==> ${instance.id} (${instance.state}, pid ${pid}, ${image.reference}) <==`;
        return [header, ...lines].join('\n');
      }),
    );
    return blocks.join('\n\n') + (blocks.length > 0 ? '\n' : '');
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
    for (const workload of this.workloads.values()) {
      for (const instance of workload.instances) instance.detach();
    }
    // The last word on disk: from here on, interrupted applies change nothing there, so the
    // next server sees their candidates and stops them.
    await this.persist();
    this.closed = true;
    await Promise.all(
      [...this.workloads.values()].map(async (workload) => {
        await workload.proxy?.close();
        workload.proxy = null;
      }),
    );
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
    const candidates: Instance[] = [];
    try {
      const image = await this.images.prepare(spec.image, progress);
      const launch = planLaunch({
        rootfs: image.rootfs,
        config: image.config,
        spec,
        hostPath: process.env.PATH ?? '',
      });
      for (let i = 0; i < spec.replicas; i++) {
        candidates.push(await this.addInstance(workload, spec, launch, 'candidate'));
      }
      await this.persist();
      progress(`starting ${spec.replicas} instance(s) of ${spec.image.reference}`);
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
      progress(`draining ${replaced.length} old instance(s)`);
      const drained = await workload.proxy?.waitForIdle(
        replaced.map((instance) => instance.id),
        this.drainTimeoutMs,
      );
      if (drained === false) {
        progress(
          `old instances still busy after ${this.drainTimeoutMs / 1000} s; stopping them anyway`,
        );
      }
      await this.removeInstances(workload, replaced);
      progress(`stopped ${replaced.length} old instance(s)`);
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
      dirName: dirNameOf(key),
      proxyPort: 0,
      desired: null,
      serving: null,
      instances: [],
      message: null,
    };
    const workload: Workload = { record, instances: [], proxy: null, progressing: false };
    // A port found free can be taken before the proxy binds it: then try the next one.
    for (let attempt = 1; ; attempt++) {
      record.proxyPort = await this.ports.allocate();
      try {
        workload.proxy = await this.openProxy(workload);
        break;
      } catch (error) {
        if (attempt >= 5) throw error;
      }
    }
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
    launch: LaunchPlan | Error,
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
      launch,
      probe: probeSettings(spec.readiness),
      logFile: this.logFile(workload, record.id),
      logger: this.logger,
      startTimeoutMs: this.startTimeoutMs,
      stopGraceMs: this.stopGraceMs,
      onChange: () => this.instanceChanged(workload),
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

  private instanceChanged(workload: Workload): void {
    this.route(workload);
    this.persist().catch((error: unknown) =>
      this.logger.error(
        { err: error, workload: workload.record.key },
        'could not save local target state',
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

  private async recoverState(): Promise<void> {
    await this.images.removeTemps();
    const state = await readStateFile(this.stateFile);
    if (!state) return;
    for (const record of state.workloads) {
      this.ports.hold(record.proxyPort);
      for (const instance of record.instances) this.ports.hold(instance.port);
    }
    await Promise.all(state.workloads.map((record) => this.recoverWorkload(record)));
    await this.persist();
  }

  private async recoverWorkload(record: WorkloadRecord): Promise<void> {
    const workload: Workload = {
      record: { ...record, instances: [] },
      instances: [],
      proxy: null,
      progressing: false,
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
    let launch: LaunchPlan | Error;
    try {
      const image = await this.images.prepare(serving.image);
      launch = planLaunch({
        rootfs: image.rootfs,
        config: image.config,
        spec: serving,
        hostPath: process.env.PATH ?? '',
      });
    } catch (error) {
      launch = error as Error;
      workload.record.message = `cannot restart instances: ${launch.message}`;
    }
    const instances = await Promise.all(
      active.map((instance) => this.addInstance(workload, serving, launch, 'active', instance)),
    );
    await Promise.all(
      instances.map(async (instance) => {
        if (!(await instance.adopt()))
          instance.restartNow('its process ended while the server was down');
      }),
    );
    this.route(workload);
  }

  private describe(workload: Workload): WorkloadStatus {
    const { record } = workload;
    const serving = record.serving;
    const desired = record.desired ?? serving;
    const active = workload.instances.filter((instance) => instance.record.role === 'active');
    const ready = active.filter(
      (instance) => instance.ready && instance.record.image.digest === serving?.image.digest,
    );
    let health: HealthState;
    if (workload.progressing) health = 'progressing';
    else if (!serving) health = 'missing';
    else if (desired && sameSpec(desired, serving) && ready.length >= serving.replicas)
      health = 'healthy';
    else health = 'degraded';
    const problems = active
      .filter((instance) => !instance.ready && instance.problem)
      .map((instance) => `${instance.id}: ${instance.problem}`);
    return {
      key: record.key,
      health,
      url: workload.proxy?.url ?? `http://${this.host}:${record.proxyPort}`,
      image: serving?.image.digest ?? null,
      imageReference: serving?.image.reference ?? null,
      desiredReplicas: desired?.replicas ?? 0,
      readyReplicas: ready.length,
      instances: workload.instances.map((instance) => instance.status()),
      message: [record.message, ...problems].filter(Boolean).join('; ') || null,
    };
  }

  /** Runs `task` after every earlier apply or delete of the same key has finished. */
  private exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(key) ?? Promise.resolve();
    const result = previous.then(task, task);
    const tail = result.catch(() => {});
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }

  /** Saves the state file; saves asked for while one runs are folded into the next. */
  private persist(): Promise<void> {
    if (this.closed) return this.saving;
    if (!this.savePending) {
      this.savePending = true;
      this.saving = this.saving
        .catch(() => {})
        .then(() => {
          this.savePending = false;
          return writeStateFile(this.stateFile, {
            version: 1,
            workloads: [...this.workloads.values()].map((workload) => ({
              ...workload.record,
              instances: workload.instances.map((instance) => ({ ...instance.record })),
            })),
          });
        });
    }
    return this.saving;
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

function missing(key: string): WorkloadStatus {
  return {
    key,
    health: 'missing',
    url: null,
    image: null,
    imageReference: null,
    desiredReplicas: 0,
    readyReplicas: 0,
    instances: [],
    message: null,
  };
}

/** Readable and unique: `team-a/hello/dev` -> `team-a_hello_dev-1a2b3c4d`. */
export function dirNameOf(key: string): string {
  const readable = key.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80);
  return `${readable}-${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
}

/** Same spec, whatever the order of keys (env maps are built in any order). */
function sameSpec(a: WorkloadSpec, b: WorkloadSpec): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) =>
    inner && typeof inner === 'object' && !Array.isArray(inner)
      ? Object.fromEntries(Object.entries(inner).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
      : inner,
  );
}

function describeIssue(issue: { path: PropertyKey[]; message: string }): string {
  return `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`;
}

function rolloutFailed(key: string, message: string): ValveError {
  return new ValveError('DEPLOY_ROLLOUT_FAILED', message, { workload: key });
}
