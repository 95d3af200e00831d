/**
 * How a new version replaces the old one in an environment: `environments.<env>.rollout` in
 * the app spec, carried to targets through the Deployment's `valve.dev/rollout` annotation.
 * One schema for both: what a user writes may leave fields out, what comes out is complete.
 */
import { z } from 'zod';

export const rolloutStrategies = ['rolling', 'canary', 'blue-green'] as const;
export type RolloutStrategy = (typeof rolloutStrategies)[number];

export interface RolloutStep {
  /** Percent of requests the new version gets during this step (1-100, increasing). */
  weight: number;
  /** How long to hold this weight while the analysis runs before the next step. */
  pauseSeconds: number;
}

export interface RolloutAnalysis {
  /** Share of 5xx answers or failed requests (0-1) above which a check fails. */
  maxErrorRate: number;
  /** A check with fewer requests than this to the new version is not judged (neither passes nor fails). */
  minRequests: number;
  /** Failed health checks of the new version's instances that roll it back (at least 1). */
  maxFailedChecks: number;
  /** Seconds between checks. */
  intervalSeconds: number;
}

export interface RolloutSpec {
  strategy: RolloutStrategy;
  /**
   * Canary: the traffic weights, each held for its pause, before the new version takes
   * everything. Blue-green: weights are ignored, the pauses add up to how long the new version
   * is analysed on its preview address before the switch. Rolling: always empty.
   */
  steps: RolloutStep[];
  analysis: RolloutAnalysis;
  /** Blue-green: switch once the analysis passes (true) or wait for a manual promote (false). */
  autoPromote: boolean;
}

export const defaultCanarySteps: readonly RolloutStep[] = [
  { weight: 10, pauseSeconds: 30 },
  { weight: 50, pauseSeconds: 30 },
];

export const defaultBlueGreenSteps: readonly RolloutStep[] = [{ weight: 100, pauseSeconds: 30 }];

export const defaultAnalysis: RolloutAnalysis = {
  maxErrorRate: 0.05,
  minRequests: 20,
  maxFailedChecks: 2,
  intervalSeconds: 5,
};

export const defaultRollout: RolloutSpec = {
  strategy: 'rolling',
  steps: [],
  analysis: defaultAnalysis,
  autoPromote: true,
};

const step = z.strictObject({
  /** Required for a canary; blue-green ignores it. */
  weight: z.number().int().min(1).max(100).optional(),
  pauseSeconds: z.number().int().min(0).max(86_400).default(30),
});

const analysis = z.strictObject({
  maxErrorRate: z.number().min(0).max(1).default(defaultAnalysis.maxErrorRate),
  minRequests: z.number().int().min(0).max(1_000_000).default(defaultAnalysis.minRequests),
  maxFailedChecks: z.number().int().min(1).max(100).default(defaultAnalysis.maxFailedChecks),
  intervalSeconds: z.number().int().min(1).max(3600).default(defaultAnalysis.intervalSeconds),
});

/** Validates a rollout as written (fields may be missing) and fills in every default. */
export const rolloutSpecSchema = z
  .strictObject({
    strategy: z.enum(rolloutStrategies).default('rolling'),
    steps: z.array(step).max(20).optional(),
    analysis: analysis.default({ ...defaultAnalysis }),
    autoPromote: z.boolean().default(true),
  })
  .superRefine((rollout, ctx) => {
    if (rollout.steps?.length && rollout.strategy === 'rolling') {
      ctx.addIssue({
        code: 'custom',
        path: ['steps'],
        message: 'steps apply to strategies canary and blue-green, not rolling',
      });
    }
    if (rollout.strategy !== 'canary') return;
    if (rollout.steps?.length === 0)
      ctx.addIssue({
        code: 'custom',
        path: ['steps'],
        message: 'a canary needs at least one step',
      });
    rollout.steps?.forEach((s, i) => {
      const before = rollout.steps![i - 1];
      if (s.weight === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'weight'],
          message: 'expected the percent of requests for this canary step (1-100)',
        });
      } else if (before?.weight !== undefined && s.weight <= before.weight) {
        ctx.addIssue({
          code: 'custom',
          path: ['steps', i, 'weight'],
          message: `expected a weight above the step before (${before.weight})`,
        });
      }
    });
  })
  .transform((rollout): RolloutSpec => ({
    strategy: rollout.strategy,
    steps: (rollout.strategy === 'rolling'
      ? []
      : (rollout.steps ??
        (rollout.strategy === 'canary' ? defaultCanarySteps : defaultBlueGreenSteps))
    ).map((s) => ({ weight: s.weight ?? 100, pauseSeconds: s.pauseSeconds })),
    analysis: { ...rollout.analysis },
    autoPromote: rollout.autoPromote,
  }));
