import type { ProbeSettings } from '../local/readiness.js';
import { ReadinessWatcher, type StartOutcome } from '../shared/readiness-watch.js';
import { CrashBackoff, restartBackoff, type RestartBackoff } from '../shared/restart-backoff.js';
import type { InstanceState, InstanceStatus, TargetLogger } from '../target.js';
import { PodmanError, type PodmanCli } from './cli.js';
import {
  describeContainerExit,
  removeContainers,
  runContainer,
  type ContainerPlan,
  type ObservedContainer,
} from './containers.js';
import type { InstanceRecord } from './state-file.js';

/**
 * One supervised instance: a container (created here, or adopted from an earlier server), its
 * readiness, and its restarts. The instance keeps its id, name and host port for good; a
 * crashed container is started again (same container id), a removed one is created again.
 *
 * What podman says about the container comes from the target's listing each second
 * (`observe`); a listing that began before the instance's last `podman run`/`start` returned
 * describes an older container and is ignored.
 */

export interface PodmanInstanceOptions {
  cli: PodmanCli;
  /** What `podman run` needs; asked for only when a container has to be created. */
  plan: () => Promise<ContainerPlan>;
  /** For env files while `podman run` reads them. */
  scratchDir: string;
  probe: ProbeSettings;
  logger: TargetLogger;
  /** How long a new container may take to pass readiness before it counts as failed. */
  startTimeoutMs: number;
  /** Between SIGTERM and SIGKILL (`podman rm --time`). */
  stopGraceMs: number;
  /** Called on every change worth persisting or routing: container, state, restarts. */
  onChange: (instance: PodmanInstance) => void;
  /** Waits before restarting a container that went down (default `restartBackoff`). */
  backoff?: RestartBackoff;
}

export { restartBackoff, type RestartBackoff };
/** podman's states on the way out: the next listing says how it ended. */
const leavingStates = new Set(['stopping', 'removing']);

export class PodmanInstance {
  state: InstanceState = 'stopped';
  /**
   * Whether a container that stops or disappears is restarted. Off while a new version proves
   * itself (a crash then fails the rollout) and while draining.
   */
  supervised = false;
  /** Why the instance is not ready, or how its last container ended. */
  problem: string | null = null;
  /** How the container differs from what should run (exited, removed); null once healed. */
  drift: string | null = null;
  /** The container's last output when a start failed (it is removed right after). */
  lastOutput: string[] = [];

  /**
   * Readiness, and the generation: one for each container start and one on stop, detach and
   * the container's end, so older callbacks do nothing.
   */
  private readonly readiness: ReadinessWatcher;
  /** The wait before a restart. */
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff: CrashBackoff;
  private readySince: number | null = null;
  private detached = false;
  /** Listings that began before this moment describe an earlier container. */
  private observeAfter = 0;
  /** The container in the latest listing: null when absent, undefined when not listed since. */
  private seen: ObservedContainer | null | undefined = undefined;
  /** Starts, restarts or stops under way: they watch `seen` themselves. */
  private busy = 0;
  private relaunching: Promise<void> | null = null;
  /** The `podman inspect` of the current container's pid, under way or done. */
  private pidRead: Promise<void> = Promise.resolve();
  /** Stopped and its container removed: a second stop has nothing to do. */
  private removed = false;
  /** How the container last went down. */
  private downReason: string | null = null;
  /** Its container stopped or went away while unsupervised, and nothing removed it since. */
  private endedAlone = false;

  constructor(
    readonly record: InstanceRecord,
    private readonly options: PodmanInstanceOptions,
  ) {
    this.backoff = new CrashBackoff(options.backoff ?? restartBackoff);
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

  /**
   * Resolves once the pid of the container started last is known. Its start resolves as soon as
   * it is ready, without waiting for that; an apply waits for it after the switch.
   */
  pidKnown(): Promise<void> {
    return this.pidRead;
  }

  /** Probe settings of its readiness, for checks beside the instance's own (rollout analysis). */
  get probe(): ProbeSettings {
    return this.options.probe;
  }

  /** Creates the container and resolves once it is ready; on failure it is removed and this throws. */
  async start(): Promise<void> {
    const generation = this.readiness.begin();
    this.busy++;
    let reason: string;
    try {
      this.setState('starting');
      await this.create();
      this.readPidBeside(generation);
      const outcome = await this.untilReady(generation);
      if (outcome.kind === 'ready') {
        this.busy--;
        this.becomeReady();
        return;
      }
      reason = outcome.kind === 'failed' ? outcome.reason : 'the target was closed';
    } catch (error) {
      reason = (error as Error).message;
    }
    this.problem = reason;
    this.lastOutput = await this.output(10);
    this.busy--;
    await this.stop();
    throw new Error(reason);
  }

  /**
   * Takes over a container an earlier server created: a running one is probed until ready
   * (never restarted if it passes); a stopped or missing one is restarted.
   */
  async adopt(seen: ObservedContainer | null): Promise<void> {
    this.supervised = true;
    if (!seen || seen.state !== 'running') {
      if (seen) this.record.container = seen.id;
      this.seen = seen;
      this.drift = seen
        ? `container ${describeContainerExit(seen)} while the server was down`
        : 'container was removed while the server was down';
      void this.relaunch();
      return;
    }
    this.record.container = seen.id;
    this.record.pid = seen.pid;
    this.seen = seen;
    this.observeAfter = Date.now();
    const generation = this.readiness.begin();
    this.busy++;
    this.setState('starting');
    this.options.logger.info(
      { instance: this.id, container: seen.id.slice(0, 12) },
      'adopted running container',
    );
    const outcome = await this.untilReady(generation);
    this.busy--;
    if (outcome.kind === 'ready') this.becomeReady();
    else if (outcome.kind === 'failed') await this.killAndRestart(generation, outcome.reason);
  }

  /** The latest listing of containers, from the target: notices crashes and removals. */
  observe(seen: ObservedContainer | null, takenAt: number): void {
    if (this.detached || takenAt < this.observeAfter) return;
    if (seen && leavingStates.has(seen.state)) return;
    this.seen = seen;
    if (this.busy > 0) return;
    if (!this.supervised) {
      // A new version proving itself (a canary): its end is reported, not restarted.
      if (this.state === 'ready' || this.state === 'unready') {
        if (!seen) this.ended('container was removed');
        else if (seen.state !== 'running') this.ended(`container ${describeContainerExit(seen)}`);
      }
      return;
    }
    // An instance that ended unsupervised and was made to serve since is restarted like a crash.
    const live = this.state === 'ready' || this.state === 'unready' || this.state === 'starting';
    if (!live && !(this.state === 'stopped' && this.endedAlone)) return;
    if (!seen) {
      this.down('container was removed', 'container was removed');
    } else if (seen.state !== 'running') {
      const how = `container ${describeContainerExit(seen)}`;
      this.down(how, how);
    } else if (seen.pid > 0 && seen.pid !== this.record.pid) {
      // Restarted behind our back (`podman restart`): the same container, a new process.
      this.record.pid = seen.pid;
      this.options.onChange(this);
    }
  }

  /** Restarts now what waits for its backoff (repair); resolves when that attempt is over. */
  async repair(): Promise<void> {
    if (this.relaunching) return this.relaunching;
    if (this.state === 'restarting') return this.relaunch();
  }

  /**
   * SIGTERM, SIGKILL after the grace period, then the container is removed. Once detached
   * (server shutdown) it does nothing: the next server removes what is not serving.
   */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.readiness.begin();
    this.endedAlone = false;
    if (this.removed || this.detached) return;
    this.busy++;
    this.setState('stopping');
    try {
      await removeContainers(
        this.options.cli,
        [this.record.container ?? this.record.name],
        this.options.stopGraceMs,
      );
      this.removed = true;
    } catch (error) {
      // Not lost: a container no instance owns is removed by the target's next sweep.
      this.options.logger.warn(
        { instance: this.id, err: (error as Error).message },
        'could not remove container; the next sweep retries',
      );
    } finally {
      this.busy--;
    }
    this.record.pid = 0;
    this.setState('stopped');
  }

  /** Server shutdown: stop watching, leave the container running for the next server. */
  detach(): void {
    this.detached = true;
    clearTimeout(this.timer);
    this.readiness.begin();
  }

  /** Replaced: no longer routed to, waiting for its in-flight requests before being stopped. */
  markDraining(): void {
    clearTimeout(this.timer);
    this.readiness.pause();
    this.supervised = false;
    this.setState('draining');
  }

  /** The last lines of the container's output (stdout and stderr); [] when it is gone. */
  async output(lines: number): Promise<string[]> {
    const ref = this.record.container ?? this.record.name;
    const { code, output } = await this.options.cli.combined([
      'logs',
      '--tail',
      String(lines),
      ref,
    ]);
    if (code !== 0) return [];
    const all = output.split('\n');
    if (all.at(-1) === '') all.pop();
    return all.slice(-lines);
  }

  status(): InstanceStatus & { container: string | null } {
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
      container: this.record.container,
    };
  }

  /** `podman run` under the instance's name, replacing a container left with that name. */
  private async create(): Promise<void> {
    const { cli, scratchDir } = this.options;
    const plan = await this.options.plan();
    const run = () =>
      runContainer(cli, { name: this.record.name, plan, hostPort: this.record.port, scratchDir });
    if (this.record.container) await removeContainers(cli, [this.record.container], 0);
    this.record.container = null;
    this.record.pid = 0;
    try {
      try {
        this.record.container = await run();
      } catch (error) {
        // Left by a server that died before it could save the container's id.
        if (!(error instanceof PodmanError && /already in use/.test(error.result.stderr)))
          throw error;
        await removeContainers(cli, [this.record.name], 0);
        this.record.container = await run();
      }
    } finally {
      this.observeAfter = Date.now();
      this.seen = undefined;
    }
    this.record.startedAt = new Date().toISOString();
    this.options.logger.info(
      { instance: this.id, container: this.record.container.slice(0, 12), port: this.record.port },
      'created container',
    );
    this.options.onChange(this);
  }

  /** `podman start` of the stopped container; when that fails (or it is gone), a new one. */
  private async restartContainer(): Promise<void> {
    const ref = this.record.container;
    if (ref && this.seen !== null) {
      const result = await this.options.cli.run(['start', ref]);
      this.observeAfter = Date.now();
      this.seen = undefined;
      if (result.code === 0) {
        this.record.startedAt = new Date().toISOString();
        this.options.onChange(this);
        return;
      }
      this.options.logger.warn(
        { instance: this.id, container: ref.slice(0, 12), err: result.stderr.trim() },
        'could not start the container again; creating a new one',
      );
    }
    await this.create();
  }

  /**
   * Reads the pid of the container just run or started (for the status and the state file)
   * while it is probed: asking podman first would put one more podman command between
   * `podman run` and the switch.
   */
  private readPidBeside(generation: number): void {
    const ref = this.record.container ?? this.record.name;
    const inspect = ['container', 'inspect', '--format', '{{.State.Pid}}', ref];
    this.pidRead = this.options.cli.run(inspect).then((result) => {
      if (!this.readiness.isCurrent(generation)) return;
      this.record.pid = result.code === 0 ? Number(result.stdout.trim()) || 0 : 0;
      this.options.onChange(this);
    });
  }

  /** Probes until the first pass; fails when the container stops or the start timeout passes. */
  private untilReady(generation: number): Promise<StartOutcome> {
    return this.readiness.untilReady(generation, {
      timeoutMs: this.options.startTimeoutMs,
      ended: () => {
        const seen = this.seen;
        if (seen === null) return 'its container was removed before it was ready';
        if (seen && seen.state !== 'running')
          return `its container ${describeContainerExit(seen)} before it was ready`;
        return null;
      },
    });
  }

  /** Serving: probed every `periodMs`, out of rotation after `failureThreshold` misses in a row. */
  private becomeReady(): void {
    this.readySince = Date.now();
    this.problem = null;
    this.drift = null;
    this.setState('ready');
    // A fresh container that just passed: misses counted against the one before do not carry over.
    this.readiness.serve(this.readiness.generation);
  }

  /** An unsupervised container stopped or went away: the instance is over. */
  private ended(how: string): void {
    clearTimeout(this.timer);
    this.readiness.begin();
    this.record.pid = 0;
    this.problem = how;
    this.endedAlone = true;
    this.options.logger.warn({ instance: this.id, reason: how }, 'instance ended');
    this.setState('stopped');
  }

  /** The container stopped or went away: restart it after a backoff (1 s doubling to 30 s). */
  private down(reason: string, drift: string | null): void {
    this.endedAlone = false;
    clearTimeout(this.timer);
    this.readiness.begin();
    this.record.pid = 0;
    if (drift) this.drift = drift;
    const wait = this.backoff.next(this.readySince);
    this.readySince = null;
    this.downReason = reason;
    this.problem = `${reason}; restarting in ${wait / 1000} s`;
    this.options.logger.warn({ instance: this.id, reason }, 'instance down');
    this.setState('restarting');
    this.timer = setTimeout(() => void this.relaunch(), wait);
    this.timer.unref();
  }

  private relaunch(): Promise<void> {
    this.relaunching ??= this.restart().finally(() => (this.relaunching = null));
    return this.relaunching;
  }

  private async restart(): Promise<void> {
    if (this.detached) return;
    clearTimeout(this.timer);
    const generation = this.readiness.begin();
    this.supervised = true;
    this.busy++;
    this.record.restarts++;
    this.problem = `${this.downReason ?? 'down'}; restarting`;
    this.options.logger.info(
      { instance: this.id, restarts: this.record.restarts },
      'restarting instance',
    );
    this.setState('starting');
    let outcome: StartOutcome;
    try {
      await this.restartContainer();
      this.readPidBeside(generation);
      outcome = await this.untilReady(generation);
    } catch (error) {
      outcome = { kind: 'failed', reason: `could not restart: ${(error as Error).message}` };
    } finally {
      this.busy--;
    }
    if (!this.readiness.isCurrent(generation) || this.detached) return;
    if (outcome.kind === 'ready') {
      this.becomeReady();
      await this.pidRead;
    } else if (outcome.kind === 'failed') await this.killAndRestart(generation, outcome.reason);
  }

  /** A container that never got ready: kill it and try again after the backoff. */
  private async killAndRestart(generation: number, reason: string): Promise<void> {
    const ref = this.record.container ?? this.record.name;
    await this.options.cli.run(['kill', ref]);
    if (!this.readiness.isCurrent(generation) || this.detached) return;
    this.down(reason, null);
  }

  private setState(state: InstanceState): void {
    this.state = state;
    this.options.onChange(this);
  }
}
