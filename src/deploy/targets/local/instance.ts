import { mkdirSync } from 'node:fs';
import { ReadinessWatcher, type StartOutcome } from '../shared/readiness-watch.js';
import { CrashBackoff, restartBackoff } from '../shared/restart-backoff.js';
import type { InstanceState, InstanceStatus, TargetLogger } from '../target.js';
import type { LaunchPlan } from './launch.js';
import {
  adoptGroup,
  signalGroup,
  spawnGroup,
  terminateGroup,
  type ExitInfo,
  type GroupProcess,
} from './process-group.js';
import type { ProbeSettings } from './readiness.js';
import type { InstanceRecord } from './state-file.js';

/**
 * One supervised instance: a process (spawned here, or adopted from an earlier server), its
 * readiness, and its restarts. The instance keeps its id and port across restarts; only the
 * process changes.
 */

export interface InstanceOptions {
  /** How to start a process; an Error when that is not known (its image could not be prepared). */
  launch: LaunchPlan | Error;
  /** The unpacked image root the process runs from (for drift checks); null when unknown. */
  rootfs: string | null;
  probe: ProbeSettings;
  logFile: string;
  logger: TargetLogger;
  /** How long a new process may take to pass readiness before it counts as failed. */
  startTimeoutMs: number;
  /** Between SIGTERM and SIGKILL. */
  stopGraceMs: number;
  /** Called on every change worth persisting or routing: process, state, restarts. */
  onChange: (instance: Instance) => void;
}

export { restartBackoff };
/** How often a process started by an earlier server is checked for life (not our child). */
const adoptedPollMs = 1000;

export class Instance {
  state: InstanceState = 'stopped';
  /**
   * Whether an unexpected exit is restarted. Off while a new version proves itself: a crash
   * then fails the rollout instead of looping.
   */
  supervised = false;
  /** Why the instance is not ready, or how its last process ended. */
  problem: string | null = null;

  private proc: GroupProcess | null = null;
  /**
   * Readiness, and the generation: one for every process and one on stop and detach, so
   * callbacks of an older one do nothing.
   */
  private readonly readiness: ReadinessWatcher;
  /** The wait before a restart. */
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff = new CrashBackoff(restartBackoff);
  private readySince: number | null = null;
  /** Why the current process is being killed by us, reported instead of "killed by SIGKILL". */
  private killReason: string | null = null;
  /** The server is shutting down: start nothing new. */
  private detached = false;

  constructor(
    readonly record: InstanceRecord,
    private readonly options: InstanceOptions,
  ) {
    this.readiness = new ReadinessWatcher({
      port: record.port,
      probe: options.probe,
      onServingChange: (ready, problem) => {
        this.problem = problem;
        this.setState(ready ? 'ready' : 'unready');
      },
    });
  }

  get id(): string {
    return this.record.id;
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  get rootfs(): string | null {
    return this.options.rootfs;
  }

  /** Probe settings of its readiness, for checks beside the instance's own. */
  get probe(): ProbeSettings {
    return this.options.probe;
  }

  /** Waiting out a restart backoff: restart now instead. True when it did. */
  restartIfWaiting(): boolean {
    if (this.state !== 'restarting' || this.detached) return false;
    clearTimeout(this.timer);
    void this.relaunch();
    return true;
  }

  /** Launches the process and resolves once it is ready; on failure it is stopped and this throws. */
  async start(): Promise<void> {
    this.launch();
    const outcome = await this.untilReady(this.readiness.generation);
    if (outcome.kind === 'ready') {
      this.becomeReady();
      return;
    }
    const reason = outcome.kind === 'failed' ? outcome.reason : 'the target was closed';
    this.problem = reason;
    await this.stop();
    throw new Error(reason);
  }

  /**
   * Takes over the process an earlier server started, if it still runs and is ours, and
   * resolves once it answers readiness (else it is killed and restarted). False when there is
   * no such process: the caller restarts it.
   */
  async adopt(): Promise<boolean> {
    const proc = this.record.pid
      ? adoptGroup(this.record.pid, this.record.pidStartTime, adoptedPollMs)
      : null;
    if (!proc) return false;
    this.supervised = true;
    this.attach(proc);
    this.options.logger.info({ instance: this.id, pid: proc.pid }, 'adopted running instance');
    const generation = this.readiness.generation;
    const outcome = await this.untilReady(generation);
    if (outcome.kind === 'ready') this.becomeReady();
    else if (outcome.kind === 'failed') this.killForRestart(generation, outcome.reason);
    return true;
  }

  /** Starts a replacement process now (e.g. its process died while the server was down). */
  restartNow(reason: string): void {
    this.supervised = true;
    this.problem = reason;
    void this.relaunch();
  }

  /** SIGTERM to the process group, SIGKILL after the grace period. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    const proc = this.proc;
    this.readiness.begin();
    this.setState('stopping');
    if (proc && !(await terminateGroup(proc, this.options.stopGraceMs))) {
      this.options.logger.warn(
        { instance: this.id, pid: proc.pid },
        'instance ignored SIGTERM; killed',
      );
    }
    this.proc = null;
    this.record.pid = 0;
    this.record.pidStartTime = null;
    this.setState('stopped');
  }

  /** Server shutdown: stop watching, leave the process running for the next server to adopt. */
  detach(): void {
    this.detached = true;
    clearTimeout(this.timer);
    this.readiness.begin();
    this.proc?.detach();
    this.proc = null;
  }

  /** Replaced: no longer routed to, waiting for its in-flight requests before being stopped. */
  markDraining(): void {
    clearTimeout(this.timer);
    this.readiness.pause();
    this.supervised = false;
    this.setState('draining');
  }

  status(): InstanceStatus {
    return {
      id: this.id,
      pid: this.record.pid,
      port: this.record.port,
      image: this.record.image.digest,
      imageReference: this.record.image.reference,
      healthy: this.state === 'ready',
      state: this.state,
      startedAt: this.record.startedAt,
      restarts: this.record.restarts,
    };
  }

  private launch(): void {
    const { launch, logFile } = this.options;
    if (this.detached) throw new Error('the target was closed');
    if (launch instanceof Error) throw launch;
    mkdirSync(launch.cwd, { recursive: true });
    const proc = spawnGroup({
      file: launch.file,
      args: launch.args,
      cwd: launch.cwd,
      env: { ...launch.env, PORT: String(this.record.port) },
      logFile,
    });
    this.record.startedAt = new Date().toISOString();
    this.attach(proc);
    this.options.logger.info(
      { instance: this.id, pid: proc.pid, port: this.record.port },
      'started instance',
    );
  }

  private attach(proc: GroupProcess): void {
    const generation = this.readiness.begin();
    this.proc = proc;
    this.record.pid = proc.pid;
    this.record.pidStartTime = proc.startTime;
    this.readySince = null;
    this.killReason = null;
    void proc.exited.then((info) => this.onExit(generation, info));
    this.setState('starting');
  }

  /** Probes until the first pass; fails when the process exits or the start timeout passes. */
  private untilReady(generation: number): Promise<StartOutcome> {
    const proc = this.proc;
    if (!proc) {
      const reason = this.problem ?? 'the process did not start';
      return Promise.resolve({ kind: 'failed', reason });
    }
    let exit: ExitInfo | null = null;
    void proc.exited.then((info) => (exit = info));
    return this.readiness.untilReady(generation, {
      timeoutMs: this.options.startTimeoutMs,
      ended: () => exit && `${describeExit(exit)} before it was ready`,
      wake: proc.exited,
    });
  }

  /** Serving: probed every `periodMs`, out of rotation after `failureThreshold` misses in a row. */
  private becomeReady(): void {
    this.readySince = Date.now();
    this.problem = null;
    this.setState('ready');
    this.readiness.serve(this.readiness.generation);
  }

  private onExit(generation: number, info: ExitInfo): void {
    if (!this.readiness.isCurrent(generation) || this.detached) return;
    const pid = this.record.pid;
    this.proc = null;
    this.record.pid = 0;
    this.record.pidStartTime = null;
    clearTimeout(this.timer);
    this.readiness.pause();
    // The leader is gone; a child it left in the group must not hold the port.
    signalGroup(pid, 'SIGKILL');
    const reason = this.killReason ?? describeExit(info);
    this.options.logger.warn({ instance: this.id, pid, reason }, 'instance exited');
    if (!this.supervised) {
      this.problem = reason;
      this.setState('stopped');
      return;
    }
    const wait = this.backoff.next(this.readySince);
    this.problem = `${reason}; restarting in ${wait / 1000} s`;
    this.setState('restarting');
    this.timer = setTimeout(() => void this.relaunch(), wait);
    this.timer.unref();
  }

  private async relaunch(): Promise<void> {
    if (this.detached) return;
    this.record.restarts++;
    try {
      this.launch();
    } catch (error) {
      // Not even spawned (e.g. the log directory is gone): count it as a crash.
      this.attachFailure((error as Error).message);
      return;
    }
    const generation = this.readiness.generation;
    const outcome = await this.untilReady(generation);
    if (outcome.kind === 'ready') this.becomeReady();
    else if (outcome.kind === 'failed') this.killForRestart(generation, outcome.reason);
  }

  private attachFailure(reason: string): void {
    const generation = this.readiness.begin();
    this.onExit(generation, { code: null, signal: null, error: reason });
  }

  /** A process that never got ready: kill it; its exit schedules the restart. */
  private killForRestart(generation: number, reason: string): void {
    if (!this.readiness.isCurrent(generation) || !this.proc) return;
    this.killReason = reason;
    signalGroup(this.proc.pid, 'SIGKILL');
  }

  private setState(state: InstanceState): void {
    this.state = state;
    this.options.onChange(this);
  }
}

export function describeExit(info: ExitInfo): string {
  if (info.error) return `could not start: ${info.error}`;
  if (info.signal) return `killed by ${info.signal}`;
  if (info.code !== null) return `exited with code ${info.code}`;
  return 'process disappeared';
}
