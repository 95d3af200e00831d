import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RolloutSpec, WorkloadImage, WorkloadSpec } from '../target.js';
import { analysis, blueGreen, canary, rejection, testSpec } from '../test-workloads.js';
import { LocalTarget, type LocalTargetOptions } from './local-target.js';
import { isAlive } from './process-group.js';
import { MemoryImageSource, publishTestApp } from './test-images.js';
import { Poller, ProcessTracker, get, portBase, waitForStatus } from './test-processes.js';

/**
 * Canary and blue-green rollouts on the local target, under clients polling the stable
 * address every 10-20 ms: a version answering 5xx is rolled back and only the requests the
 * canary got before that failed; a healthy one is promoted step by step with no failed request.
 */

describe('local target: canary and blue-green rollouts', () => {
  const key = 'team/shop/prod';
  const tracker = new ProcessTracker();
  const targets: LocalTarget[] = [];
  let dataDir: string;
  let options: LocalTargetOptions;
  let target: LocalTarget;
  let url: string;
  const images: Record<'v1' | 'v2' | 'v4' | 'broken' | 'flaky', WorkloadImage> = {} as never;

  const spec = (image: WorkloadImage, rollout?: RolloutSpec) => testSpec(key, image, { rollout });
  /** Applies while recording each progress message with its time. */
  const applyWithProgress = (workload: WorkloadSpec) => {
    const progress: { at: number; message: string }[] = [];
    const result = target.apply(workload, (message) => progress.push({ at: Date.now(), message }));
    return { result, progress };
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'valve-local-rollout-'));
    const source = new MemoryImageSource();
    options = { dataDir, portBase: portBase(), images: source, startTimeoutMs: 10_000 };
    images.v1 = await publishTestApp(source, 'team/shop', { version: 'v1' });
    images.v2 = await publishTestApp(source, 'team/shop', { version: 'v2' });
    images.v4 = await publishTestApp(source, 'team/shop', { version: 'v4' });
    // Ready (its /healthz passes) but answering 500 to every user request.
    images.broken = await publishTestApp(source, 'team/shop', { version: 'v3', errorRate: 1 });
    images.flaky = await publishTestApp(source, 'team/shop', { version: 'v5', errorRate: 0.3 });
    target = new LocalTarget(options);
    targets.push(target);
    const status = tracker.track(await target.apply(spec(images.v1)));
    url = status.url!;
    assert.equal(await get(url), 'v1');
  });

  after(async () => {
    for (const each of targets) await each.close();
    await tracker.killAll(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('rolls back a canary answering 5xx; only requests it got before that failed', async () => {
    const poller = new Poller(url);
    await poller.more(20);
    const started = Date.now();
    const { result, progress } = applyWithProgress(
      spec(
        images.broken,
        canary([
          { weight: 20, pauseSeconds: 20 },
          { weight: 60, pauseSeconds: 20 },
        ]),
      ),
    );
    const rolledBack = await rejection(result);
    await poller.more(100);
    await poller.stop();

    assert.match(
      rolledBack.message,
      /^rolled back: 5xx rate 100% \((\d+)\/\1\) over 5% at step 1 \(weight 20%\)$/,
    );
    assert.ok(
      rolledBack.at - started < 10_000,
      'rolled back at the first analysis that had enough requests',
    );
    const status = tracker.track(await target.status(key));
    assert.equal(status.rollout?.phase, 'rolled-back');
    assert.equal(status.rollout?.message, rolledBack.message);
    assert.equal(status.rollout?.canaryImage, images.broken.digest);
    assert.equal(status.rollout?.stableImage, images.v1.digest);
    assert.ok(status.rollout!.analysis.errors5xx >= analysis.minRequests);
    assert.equal(status.rollout?.analysis.errorRate, 1);
    assert.equal(status.image, images.v1.digest, 'the stable version serves');
    assert.equal(status.health, 'degraded', 'the desired version does not run');
    assert.equal(status.message, rolledBack.message);
    assert.deepEqual(
      status.instances.map((instance) => [instance.image, instance.state]),
      [
        [images.v1.digest, 'ready'],
        [images.v1.digest, 'ready'],
      ],
      'the canary instances are gone',
    );
    assert.ok(progress.some(({ message }) => /step 1\/2: running 1 instance/.test(message)));

    // Failures: only the canary's answers, only before the rollback, about 20% of the requests.
    const failures = poller.failures();
    assert.ok(failures.length > 0, 'the canary got requests');
    assert.ok(failures.every((answer) => answer.status === 500 && answer.text === 'v3 failed'));
    assert.deepEqual(poller.failures(rolledBack.at), [], 'no failure after the rollback');
    const firstFailure = failures[0]!.at;
    const window = poller.answers.filter(
      (answer) => answer.at >= firstFailure && answer.at < rolledBack.at,
    );
    assert.ok(
      failures.length <= Math.ceil(window.length * 0.2) + 2,
      `${failures.length} of ${window.length} requests failed during the canary (weight 20%)`,
    );
    assert.equal(await get(url), 'v1');
  });

  it('rolls back a canary failing 30% of its requests, naming the rate', async () => {
    const poller = new Poller(url);
    const rolledBack = await rejection(
      target.apply(spec(images.flaky, canary([{ weight: 50, pauseSeconds: 20 }]))),
    );
    await poller.more(50);
    await poller.stop();
    const match =
      /^rolled back: 5xx rate ([\d.]+)% \((\d+)\/(\d+)\) over 5% at step 1 \(weight 50%\)$/.exec(
        rolledBack.message,
      );
    assert.ok(match, rolledBack.message);
    const rate = Number(match[1]);
    assert.ok(rate >= 20 && rate <= 40, `rate ${rate}%`);
    assert.ok(poller.failures().every((answer) => answer.text === 'v5 failed'));
    assert.deepEqual(poller.failures(rolledBack.at), []);
    assert.equal((await target.status(key)).image, images.v1.digest);
  });

  it('promotes a healthy canary step by step, with no failed request', async () => {
    const poller = new Poller(url);
    await poller.more(10);
    const { result, progress } = applyWithProgress(
      spec(
        images.v2,
        canary([
          { weight: 25, pauseSeconds: 2 },
          { weight: 75, pauseSeconds: 2 },
        ]),
      ),
    );
    // The instances of the canary, seen while it runs.
    const during = await waitForStatus(target, key, (status) => status.rollout?.step === 2);
    tracker.track(during);
    const status = tracker.track(await result);
    await poller.more(50);
    const answers = await poller.stop();

    assert.deepEqual(poller.failures(), []);
    assert.equal(status.health, 'healthy');
    assert.equal(status.image, images.v2.digest);
    assert.equal(status.rollout?.phase, 'promoted');
    assert.equal(status.rollout?.weight, 100);
    assert.deepEqual(status.drift, []);
    assert.equal(status.instances.length, 2);
    assert.ok(status.instances.every((instance) => instance.image === images.v2.digest));
    for (const instance of during.instances) {
      if (instance.image === images.v1.digest) assert.equal(isAlive(instance.pid), false);
    }

    // The share of v2 in each step's answers follows the weights.
    const at = (pattern: RegExp) => progress.find(({ message }) => pattern.test(message))!.at;
    assert.ok(progress.some(({ message }) => /step 1\/2: running 1 instance/.test(message)));
    assert.ok(progress.some(({ message }) => /step 2\/2: running 2 instance/.test(message)));
    const step1 = poller.share('v2', at(/^step 1\/2: 25%/), at(/^step 2\/2: running/));
    const step2 = poller.share('v2', at(/^step 2\/2: 75%/), at(/^promoting/));
    assert.ok(Math.abs(step1 - 0.25) < 0.1, `step 1: ${step1} of the answers were v2`);
    assert.ok(Math.abs(step2 - 0.75) < 0.1, `step 2: ${step2} of the answers were v2`);
    assert.equal(answers.at(-1)?.text, 'v2');
  });

  it('blue-green: the preview serves green, then the address switches at once', async () => {
    const poller = new Poller(url);
    await poller.more(10);
    const { result } = applyWithProgress(spec(images.v4, blueGreen(2)));
    const previewing = await waitForStatus(target, key, (status) => !!status.rollout?.previewUrl, {
      intervalMs: 20,
    });
    tracker.track(previewing);
    const previewUrl = previewing.rollout!.previewUrl!;
    assert.notEqual(previewUrl, url);
    for (let i = 0; i < 5; i++) assert.equal(await get(previewUrl), 'v4');
    assert.equal(await get(url), 'v2', 'the stable address still serves blue');
    const status = tracker.track(await result);
    await poller.more(40);
    const answers = await poller.stop();

    assert.deepEqual(poller.failures(), []);
    assert.equal(status.rollout?.phase, 'promoted');
    assert.equal(status.rollout?.previewUrl, null);
    assert.equal(status.image, images.v4.digest);
    await assert.rejects(fetch(previewUrl), 'the preview address is closed');
    // At once: each client saw blue, then only green.
    for (const client of [0, 1]) {
      const seen = answers
        .filter((answer) => answer.client === client)
        .map((answer) => answer.text);
      const firstGreen = seen.indexOf('v4');
      assert.ok(firstGreen > 0, `client ${client} saw blue, then green`);
      assert.ok(seen.slice(0, firstGreen).every((text) => text === 'v2'));
      assert.ok(seen.slice(firstGreen).every((text) => text === 'v4'));
    }
  });

  it('blue-green: a failing green never receives stable traffic and is rolled back', async () => {
    const poller = new Poller(url);
    const { result } = applyWithProgress(spec(images.broken, blueGreen(20)));
    const previewing = await waitForStatus(target, key, (status) => !!status.rollout?.previewUrl, {
      intervalMs: 20,
    });
    tracker.track(previewing);
    // Test traffic on the preview address is what the analysis judges.
    const tester = new Poller(previewing.rollout!.previewUrl!, 1);
    const rolledBack = await rejection(result);
    await tester.stop();
    await poller.more(20);
    await poller.stop();

    assert.match(
      rolledBack.message,
      /^rolled back: 5xx rate 100% \(\d+\/\d+\) over 5% at the preview$/,
    );
    assert.deepEqual(poller.failures(), [], 'the stable address never sent a request to green');
    assert.ok(poller.answers.every((answer) => answer.text === 'v4'));
    assert.ok(tester.failures().some((answer) => answer.text === 'v3 failed'));
    const status = await target.status(key);
    assert.equal(status.rollout?.phase, 'rolled-back');
    assert.equal(status.image, images.v4.digest);
    assert.equal(status.instances.length, 2);
  });

  it('waits for a manual promotion, and abort rolls back', async () => {
    const { result } = applyWithProgress(spec(images.v1, blueGreen(0, false)));
    const paused = await waitForStatus(target, key, (status) => status.rollout?.phase === 'paused');
    tracker.track(paused);
    assert.equal(paused.health, 'progressing');
    assert.equal(await get(url), 'v4');
    assert.equal(await get(paused.rollout!.previewUrl!), 'v1');
    await target.promote(key);
    const promoted = tracker.track(await result);
    assert.equal(promoted.rollout?.phase, 'promoted');
    assert.equal(await get(url), 'v1');

    const aborted = target.apply(spec(images.v2, canary([{ weight: 50, pauseSeconds: 0 }], false)));
    tracker.track(await waitForStatus(target, key, (status) => status.rollout?.phase === 'paused'));
    await target.abort(key);
    const { message } = await rejection(aborted);
    assert.equal(message, 'rolled back: aborted at step 1 (weight 50%)');
    assert.equal(await get(url), 'v1');
    await assert.rejects(target.promote(key), { code: 'CONFLICT' });
  });

  it('a server restart during a rollout rolls it back; the stable version keeps serving', async () => {
    const applying = target
      .apply(spec(images.v2, canary([{ weight: 50, pauseSeconds: 60 }])))
      .catch((error: Error) => error);
    const analyzing = tracker.track(
      await waitForStatus(target, key, (status) => status.rollout?.phase === 'analyzing'),
    );
    const candidate = analyzing.instances.find((instance) => instance.image === images.v2.digest)!;
    assert.ok(isAlive(candidate.pid));
    await target.close();
    assert.match(String(await applying), /shutting down/);

    const next = new LocalTarget(options);
    targets.push(next);
    await next.recover();
    const status = tracker.track(await next.status(key));
    assert.equal(status.rollout?.phase, 'rolled-back');
    assert.match(status.rollout!.message, /server restarted during the rollout at step 1/);
    assert.equal(status.image, images.v1.digest);
    assert.equal(isAlive(candidate.pid), false, 'the canary instance was stopped');
    assert.deepEqual(
      status.instances.map((instance) => instance.image),
      [images.v1.digest, images.v1.digest],
    );
    assert.equal(await get(status.url!), 'v1');
    assert.equal(status.url, url);
    target = next;
  });
});
