import assert from 'node:assert/strict';
import type { RolloutSpec, WorkloadImage, WorkloadSpec } from './target.js';

/**
 * Test support for the local and podman targets' tests: the spec of a test app's workload,
 * the rollouts the rollout tests apply, and the rejection of a rolled-back apply. Not used
 * outside tests.
 */

/**
 * Two replicas of `image`, probed on /healthz every second (`port` is the container's on
 * podman; the local target gives each instance a `PORT` of its own), then `extra`.
 */
export function testSpec(
  key: string,
  image: WorkloadImage,
  extra: Partial<WorkloadSpec> = {},
): WorkloadSpec {
  return {
    key,
    image,
    env: {},
    port: 8080,
    replicas: 2,
    readiness: { path: '/healthz', periodSeconds: 1 },
    ...extra,
  };
}

/** Rolled back above 5% of at least 10 requests, or at 3 failed checks; measured each second. */
export const analysis = {
  maxErrorRate: 0.05,
  minRequests: 10,
  maxFailedChecks: 3,
  intervalSeconds: 1,
};

export function canary(steps: RolloutSpec['steps'], autoPromote = true): RolloutSpec {
  return { strategy: 'canary', steps, analysis, autoPromote };
}

export function blueGreen(pauseSeconds: number, autoPromote = true): RolloutSpec {
  return { strategy: 'blue-green', steps: [{ weight: 100, pauseSeconds }], analysis, autoPromote };
}

/** A rolled-back apply: its time, and the DEPLOY_ROLLOUT_FAILED error. */
export async function rejection(apply: Promise<unknown>): Promise<{ at: number; message: string }> {
  try {
    await apply;
  } catch (error) {
    assert.equal((error as { code?: string }).code, 'DEPLOY_ROLLOUT_FAILED', String(error));
    return { at: Date.now(), message: (error as Error).message };
  }
  assert.fail('the apply should have failed');
}
