import { probeOnce, type ProbeResult, type ProbeSettings } from '../local/readiness.js';

/**
 * The readiness of one instance (a local process or a podman container), the same on both
 * targets: probed until its first pass when it starts, then every `periodMs` while it serves,
 * `failureThreshold` misses in a row taking it out of rotation until it passes again.
 *
 * Each process or container the instance runs is a generation (`begin()`); so is its end
 * (stop, detach). A probe, a wait or any callback of an older generation does nothing: a
 * restart never inherits its predecessor's misses, and an answer from a process that is gone
 * never moves the instance.
 */

/** One probe of the instance's port (`probeOnce`; a fake in tests). */
export type ProbeCheck = (port: number, path: string, timeoutMs: number) => Promise<ProbeResult>;

/** Timers, so tests can drive the watcher without waiting. */
export interface WatchClock {
  now(): number;
  /**
   * Calls `fire` after `ms`; the returned function cancels that. Only a timer someone awaits
   * (a start) keeps the process alive.
   */
  timer(ms: number, fire: () => void, keepAlive?: boolean): () => void;
}

export const realClock: WatchClock = {
  now: () => Date.now(),
  timer(ms, fire, keepAlive = false) {
    const timer = setTimeout(fire, ms);
    if (!keepAlive) timer.unref();
    return () => clearTimeout(timer);
  },
};

/** Waits between the probes of a starting instance, until its first pass. */
export interface StartupProbeDelays {
  firstMs: number;
  /** Each wait is 1.5 times the one before, up to this. */
  maxMs: number;
}

/**
 * Short: a probe on loopback is cheap, and the wait after the app starts listening is added
 * to push-to-live. The first probe goes out as soon as the process or container runs.
 */
export const startupProbeDelays: StartupProbeDelays = { firstMs: 5, maxMs: 50 };

export type StartOutcome =
  { kind: 'ready' } | { kind: 'failed'; reason: string } | { kind: 'superseded' };

export interface ReadinessWatcherOptions {
  /** The instance's port on this host (kept across its restarts). */
  port: number;
  probe: ProbeSettings;
  /**
   * While serving: `failureThreshold` probes failed in a row (`ready` false, `problem` says
   * why), or it passes again after that (`ready` true, `problem` null).
   */
  onServingChange(ready: boolean, problem: string | null): void;
  check?: ProbeCheck;
  clock?: WatchClock;
  startupDelays?: StartupProbeDelays;
}

export class ReadinessWatcher {
  private current = 0;
  /** Bumped when serving probes start or pause, so a probe answering after that is ignored. */
  private round = 0;
  private cancelTimer: () => void = () => {};
  private failures = 0;
  /** Serving and out of rotation (failed `failureThreshold` probes in a row). */
  private failing = false;
  private readonly check: ProbeCheck;
  private readonly clock: WatchClock;
  private readonly delays: StartupProbeDelays;

  constructor(private readonly options: ReadinessWatcherOptions) {
    this.check = options.check ?? probeOnce;
    this.clock = options.clock ?? realClock;
    this.delays = options.startupDelays ?? startupProbeDelays;
  }

  /** The generation of the instance's current process or container. */
  get generation(): number {
    return this.current;
  }

  /** Whether `generation` is still the current one. */
  isCurrent(generation: number): boolean {
    return generation === this.current;
  }

  /**
   * A new generation: a new process or container, or the end of the current one. Serving
   * probes stop and every probe, wait and callback of an older generation is ignored.
   */
  begin(): number {
    this.pause();
    this.failures = 0;
    this.failing = false;
    return ++this.current;
  }

  /**
   * Probes right away, then after short growing waits, until the first pass. Fails when
   * `ended()` names a reason (the process exited, the container is gone) or `timeoutMs`
   * passes; superseded when a new generation began meanwhile. `wake` cuts a wait short (an
   * exit).
   */
  async untilReady(
    generation: number,
    options: { timeoutMs: number; ended: () => string | null; wake?: Promise<unknown> },
  ): Promise<StartOutcome> {
    const { port, probe } = this.options;
    const deadline = this.clock.now() + options.timeoutMs;
    let wait = this.delays.firstMs;
    for (;;) {
      if (!this.isCurrent(generation)) return { kind: 'superseded' };
      const ended = options.ended();
      if (ended !== null) return { kind: 'failed', reason: ended };
      const result = await this.check(port, probe.path, probe.timeoutMs);
      if (!this.isCurrent(generation)) return { kind: 'superseded' };
      if (result.ok) return { kind: 'ready' };
      if (this.clock.now() >= deadline) {
        return {
          kind: 'failed',
          reason: `not ready within ${options.timeoutMs / 1000} s (last: ${result.reason})`,
        };
      }
      await this.sleep(wait, options.wake);
      wait = Math.min(Math.ceil(wait * 1.5), this.delays.maxMs);
    }
  }

  /**
   * The instance of `generation` serves (it just passed): probes every `periodMs` from now,
   * its count of misses starting afresh.
   */
  serve(generation: number): void {
    if (!this.isCurrent(generation)) return;
    this.pause();
    this.failures = 0;
    this.failing = false;
    this.schedule(generation, this.round);
  }

  /** No more serving probes (draining, exited); a probe under way is ignored. */
  pause(): void {
    this.round++;
    this.cancelTimer();
    this.cancelTimer = () => {};
  }

  private schedule(generation: number, round: number): void {
    const { port, probe, onServingChange } = this.options;
    this.cancelTimer = this.clock.timer(probe.periodMs, () => {
      void (async () => {
        const live = () => this.isCurrent(generation) && round === this.round;
        if (!live()) return;
        const result = await this.check(port, probe.path, probe.timeoutMs);
        if (!live()) return;
        if (result.ok) {
          this.failures = 0;
          if (this.failing) {
            this.failing = false;
            onServingChange(true, null);
          }
        } else if (++this.failures >= probe.failureThreshold && !this.failing) {
          this.failing = true;
          onServingChange(false, `readiness failing: ${result.reason}`);
        }
        // A callback may have paused the probes or begun a new generation.
        if (live()) this.schedule(generation, round);
      })();
    });
  }

  private sleep(ms: number, wake?: Promise<unknown>): Promise<void> {
    let cancel = () => {};
    const slept = new Promise<void>((resolve) => (cancel = this.clock.timer(ms, resolve, true)));
    if (!wake) return slept;
    return Promise.race([slept, wake.then(() => {})]).finally(cancel);
  }
}
