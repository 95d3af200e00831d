import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { workloadSpecSchema, worstHealth } from './target.js';

describe('worstHealth', () => {
  it('folds health so the worst wins', () => {
    assert.equal(worstHealth([]), 'healthy');
    assert.equal(worstHealth(['healthy', 'progressing']), 'progressing');
    assert.equal(worstHealth(['degraded', 'progressing', 'healthy']), 'degraded');
    assert.equal(worstHealth(['degraded', 'missing']), 'missing');
  });
});

describe('workloadSpecSchema', () => {
  const valid = {
    key: 'team-a/hello/dev',
    image: { reference: 'r', repo: 'team-a/hello', digest: `sha256:${'a'.repeat(64)}` },
    env: { A: '1' },
    port: 8080,
    replicas: 1,
  };

  it('accepts a workload and names each bad field', () => {
    assert.ok(workloadSpecSchema.safeParse(valid).success);
    const bad = workloadSpecSchema.safeParse({
      ...valid,
      key: 'a\nb',
      image: { ...valid.image, digest: 'latest' },
      replicas: -1,
    });
    assert.ok(!bad.success);
    assert.deepEqual(bad.error.issues.map((issue) => issue.path.join('.')).sort(), [
      'image.digest',
      'key',
      'replicas',
    ]);
  });

  it('takes an optional rollout and names its bad fields', () => {
    const rollout = {
      strategy: 'canary',
      steps: [
        { weight: 10, pauseSeconds: 30 },
        { weight: 50, pauseSeconds: 30 },
      ],
      analysis: { maxErrorRate: 0.05, minRequests: 20, maxFailedChecks: 2, intervalSeconds: 5 },
      autoPromote: true,
    };
    const parsed = workloadSpecSchema.safeParse({ ...valid, rollout });
    assert.ok(parsed.success);
    assert.deepEqual(parsed.data.rollout, rollout);
    const bad = workloadSpecSchema.safeParse({
      ...valid,
      rollout: { ...rollout, steps: [{ weight: 120, pauseSeconds: 1 }] },
    });
    assert.ok(!bad.success);
    assert.deepEqual(
      bad.error.issues.map((issue) => issue.path.join('.')),
      ['rollout.steps.0.weight'],
    );
  });
});
