import { z } from 'zod';
import { ValveError } from '../../errors.js';
import {
  rolloutPhases,
  type RolloutAnalysisStatus,
  type RolloutPhase,
  type RolloutSpec,
  type RolloutStatus,
} from './target.js';

/**
 * Canary and blue-green rollouts, for any target that can run two versions of a workload side
 * by side and split the traffic of its stable address between them (a proxy of its own, or a
 * replica ratio). The target implements `RolloutBackends` for one rollout; the controller
 * decides when to scale, shift traffic, promote or roll back, and keeps the `RolloutStatus`.
 *
 * Canary: for each step, run ⌈replicas × weight / 100⌉ instances of the new version (at least
 * one), give it `weight`% of the requests, then hold the step for `pauseSeconds`, measuring
 * every `intervalSeconds`. After the last step (and `promote()` when `autoPromote` is off) the
 * new version takes all traffic at full replicas and the old one stops.
 *
 * Blue-green: run the full new set beside the old one, serve it on a preview address, analyse
 * it for the steps' pauses added up, then switch all traffic at once.
 *
 * The analysis rolls back when, since the rollout began, at least `minRequests` requests
 * reached the new version and more than `maxErrorRate` of them failed (5xx or no answer), or
 * when its health checks failed `maxFailedChecks` times. Fewer requests never roll back: a
 * canary nobody called is promoted on its health checks alone.
 */

/** What the new version did since the rollout began. */
export interface RolloutMetrics {
  requests: number;
  errors5xx: number;
  failedChecks: number;
}

/** One rollout's two versions, as a target runs them. */
export interface RolloutBackends {
  /**
   * Runs `count` instances of the new version (starting more when fewer run), resolving once
   * each is ready; throws when one cannot get ready. Does not route traffic to them.
   */
  scaleCanary(count: number): Promise<void>;
  /** Share (0-100) of the stable address's requests that go to the new version's ready instances. */
  setWeight(weight: number): Promise<void> | void;
  /** Blue-green: an address serving only the new version; returns its url. */
  openPreview(): Promise<string>;
  /** The new version's traffic and failed health checks since the rollout began; may probe. */
  metrics(): Promise<RolloutMetrics>;
  /**
   * The new version becomes the stable one: full replicas, all traffic in one step, the old
   * version drained and stopped. Without a failed request.
   */
  promote(): Promise<void>;
  /** All traffic back to the stable version, the new version's instances stopped. */
  rollback(): Promise<void>;
}

export interface RolloutControllerOptions {
  /** Workload key, for the error's details. */
  key: string;
  spec: RolloutSpec & { strategy: 'canary' | 'blue-green' };
  /** Replicas of the new version once promoted. At least 1. */
  replicas: number;
  /** Manifest digests. */
  canaryImage: string;
  stableImage: string | null;
  backends: RolloutBackends;
  /** Every status change (to persist it and report progress). */
  onChange(status: RolloutStatus): void;
}

/** Why a rollout ends before its promotion. */
class Stop extends Error {
  constructor(
    readonly phase: 'rolled-back' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

type Interrupt = { kind: 'promote' } | { kind: 'abort'; reason: string };

export class RolloutController {
  readonly status: RolloutStatus;
  private interrupt: Interrupt | null = null;
  private wake: () => void = () => {};
  private promoteAsked = false;

  constructor(private readonly options: RolloutControllerOptions) {
    const now = new Date().toISOString();
    this.status = {
      strategy: options.spec.strategy,
      phase: 'progressing',
      step: 0,
      steps: options.spec.strategy === 'canary' ? options.spec.steps.length : 1,
      weight: 0,
      canaryImage: options.canaryImage,
      stableImage: options.stableImage,
      previewUrl: null,
      message: 'starting',
      analysis: { requests: 0, errors5xx: 0, errorRate: 0, failedChecks: 0 },
      startedAt: now,
      updatedAt: now,
    };
  }

  /** Skips the remaining steps (or ends the wait for a manual promotion). */
  promote(): void {
    this.promoteAsked = true;
    this.interrupt ??= { kind: 'promote' };
    this.wake();
  }

  /** Rolls back as soon as the current action ends, with `reason` in the message. */
  abort(reason = 'aborted'): void {
    this.interrupt = { kind: 'abort', reason };
    this.wake();
  }

  /** The target found the new version broken (e.g. one of its instances exited). */
  fail(reason: string): void {
    this.abort(reason);
  }

  /** Resolves once promoted; throws DEPLOY_ROLLOUT_FAILED after rolling back. */
  async run(): Promise<void> {
    try {
      if (this.options.spec.strategy === 'canary') await this.canary();
      else await this.blueGreen();
    } catch (error) {
      const stop =
        error instanceof Stop
          ? error
          : new Stop('failed', `rollout failed at ${this.where()}: ${(error as Error).message}`);
      await this.rollBack(stop);
      throw new ValveError('DEPLOY_ROLLOUT_FAILED', this.status.message, {
        workload: this.options.key,
        phase: this.status.phase,
      });
    }
  }

  private async canary(): Promise<void> {
    const { spec, replicas, backends } = this.options;
    for (const [index, step] of spec.steps.entries()) {
      this.status.step = index + 1;
      const count = Math.min(replicas, Math.max(1, Math.ceil((replicas * step.weight) / 100)));
      this.update(
        'progressing',
        `step ${this.status.step}/${this.status.steps}: running ${count} instance(s) of the new version`,
      );
      await backends.scaleCanary(count);
      if (this.takeInterrupt()) break;
      await backends.setWeight(step.weight);
      this.status.weight = step.weight;
      this.update(
        'analyzing',
        `step ${this.status.step}/${this.status.steps}: ${step.weight}% of requests for ${step.pauseSeconds} s`,
      );
      if (await this.analyze(step.pauseSeconds * 1000)) break;
    }
    await this.awaitPromotion();
    this.update('progressing', `promoting: ${replicas} new instance(s) take all requests`);
    await backends.promote();
    this.status.weight = 100;
    this.update('promoted', `promoted after step ${this.status.step}/${this.status.steps}`);
  }

  private async blueGreen(): Promise<void> {
    const { spec, replicas, backends } = this.options;
    this.status.step = 1;
    this.update('progressing', `starting ${replicas} new instance(s) beside the stable ones`);
    await backends.scaleCanary(replicas);
    this.takeInterrupt();
    this.status.previewUrl = await backends.openPreview();
    const seconds = spec.steps.reduce((sum, step) => sum + step.pauseSeconds, 0);
    this.update('analyzing', `new version on ${this.status.previewUrl} for ${seconds} s`);
    if (!this.promoteAsked) await this.analyze(seconds * 1000);
    await this.awaitPromotion();
    this.update('progressing', 'switching all requests to the new version');
    await backends.promote();
    this.status.weight = 100;
    this.status.previewUrl = null;
    this.update('promoted', 'switched to the new version');
  }

  /** Without autoPromote: analyses on (phase `paused`) until `promote()`. */
  private async awaitPromotion(): Promise<void> {
    this.takeInterrupt();
    if (this.options.spec.autoPromote || this.promoteAsked) return;
    this.update('paused', `waiting for promotion at ${this.where()}`);
    await this.analyze(Infinity);
  }

  /**
   * Measures every interval for `durationMs`; true when cut short by `promote()`. Throws Stop
   * when the new version fails its analysis or the rollout is aborted.
   */
  private async analyze(durationMs: number): Promise<boolean> {
    const { analysis } = this.options.spec;
    const deadline = Date.now() + durationMs;
    for (;;) {
      const metrics = await this.options.backends.metrics();
      this.status.analysis = analysisOf(metrics);
      const verdict = this.verdict(metrics);
      if (verdict) throw new Stop('rolled-back', `rolled back: ${verdict} at ${this.where()}`);
      this.update(this.status.phase, this.status.message);
      if (this.takeInterrupt()) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.sleep(Math.min(left, analysis.intervalSeconds * 1000));
    }
  }

  /** Why the new version fails the analysis now, or null. */
  private verdict(metrics: RolloutMetrics): string | null {
    const { analysis } = this.options.spec;
    const rate = metrics.requests > 0 ? metrics.errors5xx / metrics.requests : 0;
    if (metrics.requests >= Math.max(1, analysis.minRequests) && rate > analysis.maxErrorRate) {
      return `5xx rate ${percent(rate)} (${metrics.errors5xx}/${metrics.requests}) over ${percent(analysis.maxErrorRate)}`;
    }
    if (metrics.failedChecks >= analysis.maxFailedChecks) {
      return `${metrics.failedChecks} failed health check(s) (limit ${analysis.maxFailedChecks})`;
    }
    return null;
  }

  /** True for a pending promotion; throws Stop for a pending abort. */
  private takeInterrupt(): boolean {
    const interrupt = this.interrupt;
    if (!interrupt) return this.promoteAsked;
    this.interrupt = null;
    if (interrupt.kind === 'abort') {
      throw new Stop('rolled-back', `rolled back: ${interrupt.reason} at ${this.where()}`);
    }
    return true;
  }

  private async rollBack(stop: Stop): Promise<void> {
    this.update('progressing', `${stop.message}; rolling back`);
    try {
      await this.options.backends.rollback();
      this.status.weight = 0;
      this.status.previewUrl = null;
      this.update(stop.phase, stop.message);
    } catch (error) {
      this.update('failed', `${stop.message}; the rollback failed: ${(error as Error).message}`);
    }
  }

  private where(): string {
    return this.options.spec.strategy === 'canary'
      ? `step ${this.status.step} (weight ${this.status.weight}%)`
      : this.status.previewUrl
        ? 'the preview'
        : 'the start';
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private update(phase: RolloutPhase, message: string): void {
    this.status.phase = phase;
    this.status.message = message;
    this.status.updatedAt = new Date().toISOString();
    this.options.onChange({ ...this.status, analysis: { ...this.status.analysis } });
  }
}

function analysisOf(metrics: RolloutMetrics): RolloutAnalysisStatus {
  return {
    requests: metrics.requests,
    errors5xx: metrics.errors5xx,
    errorRate: metrics.requests > 0 ? metrics.errors5xx / metrics.requests : 0,
    failedChecks: metrics.failedChecks,
  };
}

/** 0.42 -> "42%", 0.045 -> "4.5%". */
export function percent(fraction: number): string {
  return `${Math.round(fraction * 1000) / 10}%`;
}

/** `RolloutStatus` as targets persist it. */
export const rolloutStatusSchema: z.ZodType<RolloutStatus> = z.object({
  strategy: z.enum(['canary', 'blue-green']),
  phase: z.enum(rolloutPhases),
  step: z.number().int(),
  steps: z.number().int(),
  weight: z.number(),
  canaryImage: z.string(),
  stableImage: z.string().nullable(),
  previewUrl: z.string().nullable(),
  message: z.string(),
  analysis: z.object({
    requests: z.number(),
    errors5xx: z.number(),
    errorRate: z.number(),
    failedChecks: z.number(),
  }),
  startedAt: z.string(),
  updatedAt: z.string(),
});

/** Phases in which a rollout still runs (a server restart then rolls it back). */
export const unfinishedRolloutPhases: readonly RolloutPhase[] = [
  'progressing',
  'paused',
  'analyzing',
];
