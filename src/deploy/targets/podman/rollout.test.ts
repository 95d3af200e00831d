/**
 * Canary and blue-green rollouts on the podman target, with real containers, under clients
 * polling the stable address: a version answering 5xx is rolled back by the analysis and only
 * the canary's own answers failed; a healthy one is promoted step by step; blue-green
 * switches at once; abort and a server restart roll back. Driven by ../rollout.ts through
 * ../shared/proxy-rollout.ts, as on the local target.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { RolloutSpec, WorkloadImage } from '../target.js';
import { blueGreen, canary, rejection, testSpec } from '../test-workloads.js';
import { Poller, waitForStatus } from '../local/test-processes.js';
import type { PodmanTarget } from './podman-target.js';
import {
  containerExists,
  containersOf,
  fixture,
  get,
  newTarget,
  withPodman,
  type Fixture,
  type WithContainer,
} from './test-fixture.js';

withPodman('podman target rollouts', () => {
  describe('podman target: canary and blue-green rollouts', () => {
    const key = 'team/shop/prod';
    let fx: Fixture;
    let target: PodmanTarget;
    let dataDir: string;
    let url: string;
    const options = { startTimeoutMs: 30_000, stopGraceMs: 2000 };

    const spec = (image: WorkloadImage, rollout?: RolloutSpec) => testSpec(key, image, { rollout });
    const containers = async () =>
      (await containersOf(target)).filter((container) => container.state === 'running');

    before(async () => {
      fx = await fixture();
      ({ target, dataDir } = await newTarget(options));
      const status = await target.apply(spec(fx.images.v1));
      url = status.url!;
      assert.equal(await get(url), 'podman-v1');
    });

    it('rolls back a canary answering 5xx; the stable version serves throughout', async (t) => {
      const poller = new Poller(url);
      await poller.more(20);
      const started = Date.now();
      const progress: string[] = [];
      const rolledBack = await rejection(
        target.apply(
          spec(
            fx.images.serverError,
            canary([
              { weight: 20, pauseSeconds: 30 },
              { weight: 60, pauseSeconds: 30 },
            ]),
          ),
          (message) => progress.push(message),
        ),
      );
      await poller.more(100);
      const answers = await poller.stop();

      assert.match(
        rolledBack.message,
        /^rolled back: 5xx rate 100% \((\d+)\/\1\) over 5% at step 1 \(weight 20%\)$/,
      );
      const status = await target.status(key);
      assert.equal(status.rollout?.phase, 'rolled-back');
      assert.equal(status.rollout?.message, rolledBack.message);
      assert.equal(status.rollout?.canaryImage, fx.images.serverError.digest);
      assert.equal(status.rollout?.stableImage, fx.images.v1.digest);
      assert.equal(status.rollout?.analysis.errorRate, 1);
      assert.equal(status.image, fx.images.v1.digest, 'the stable version serves');
      assert.equal(status.health, 'degraded', 'the desired version does not run');
      assert.deepEqual(
        status.instances.map((instance) => [instance.image, instance.state]),
        [
          [fx.images.v1.digest, 'ready'],
          [fx.images.v1.digest, 'ready'],
        ],
      );
      assert.ok(progress.some((message) => /step 1\/2: running 1 instance/.test(message)));
      assert.equal((await containers()).length, 2, 'the canary container is removed');

      // What failed is the canary's own answers, before the rollback, and nothing else: no
      // connection failed, no 502 from the address, no failure after the rollback.
      const failures = poller.failures();
      const canaryAnswers = failures.filter(
        (answer) => answer.status === 500 && answer.text === 'podman-v4 failed',
      );
      assert.ok(
        canaryAnswers.length > 0,
        `the canary got requests; failures: ${JSON.stringify(failures.slice(0, 3))}`,
      );
      assert.deepEqual(
        failures.filter((answer) => !canaryAnswers.includes(answer)),
        [],
        'only the canary answered 5xx',
      );
      assert.deepEqual(poller.failures(rolledBack.at), [], 'no failure after the rollback');
      const window = answers.filter(
        (answer) => answer.at >= canaryAnswers[0]!.at && answer.at < rolledBack.at,
      );
      assert.ok(
        canaryAnswers.length <= Math.ceil(window.length * 0.2) + 2,
        `${canaryAnswers.length} of ${window.length} requests went to the canary (weight 20%)`,
      );
      t.diagnostic(
        `rolled back ${rolledBack.at - started} ms after the apply; the clients sent ` +
          `${answers.length} requests: ${answers.length - failures.length} answered 200, ` +
          `${canaryAnswers.length} answered 500 by the canary (of ${window.length} while it ` +
          `took 20%), 0 failed otherwise`,
      );
      assert.equal(await get(url), 'podman-v1');
    });

    it('promotes a healthy canary step by step, with no failed request', async () => {
      const poller = new Poller(url);
      await poller.more(10);
      const progress: { at: number; message: string }[] = [];
      const result = target.apply(
        spec(
          fx.images.v2,
          canary([
            { weight: 25, pauseSeconds: 3 },
            { weight: 75, pauseSeconds: 3 },
          ]),
        ),
        (message) => progress.push({ at: Date.now(), message }),
      );
      const during = await waitForStatus(target, key, (status) => status.rollout?.step === 2);
      assert.equal(during.health, 'progressing');
      const status = await result;
      await poller.more(40);
      const answers = await poller.stop();

      assert.deepEqual(poller.failures(), []);
      assert.equal(status.health, 'healthy');
      assert.equal(status.image, fx.images.v2.digest);
      assert.equal(status.rollout?.phase, 'promoted');
      assert.equal(status.rollout?.weight, 100);
      assert.equal(status.rollout?.step, 2);
      assert.equal(status.instances.length, 2);
      assert.ok(status.instances.every((instance) => instance.image === fx.images.v2.digest));
      for (const instance of during.instances) {
        const container = (instance as WithContainer).container!;
        if (instance.image === fx.images.v1.digest)
          assert.equal(await containerExists(container), false, 'the v1 containers are gone');
      }
      assert.ok(progress.some(({ message }) => /step 1\/2: running 1 instance/.test(message)));
      assert.ok(progress.some(({ message }) => /step 2\/2: running 2 instance/.test(message)));
      // Each step's share of v2 follows its weight (loosely: the clients are slow here).
      const at = (pattern: RegExp) => progress.find(({ message }) => pattern.test(message))!.at;
      const step1 = poller.share('podman-v2', at(/^step 1\/2: 25%/), at(/^step 2\/2: running/));
      const step2 = poller.share('podman-v2', at(/^step 2\/2: 75%/), at(/^promoting/));
      assert.ok(Math.abs(step1 - 0.25) < 0.15, `step 1: ${step1} of the answers were v2`);
      assert.ok(Math.abs(step2 - 0.75) < 0.15, `step 2: ${step2} of the answers were v2`);
      assert.equal(answers.at(-1)?.text, 'podman-v2');
    });

    it('blue-green: the preview serves green, then the address switches at once', async () => {
      const poller = new Poller(url);
      await poller.more(10);
      const result = target.apply(spec(fx.images.v1, blueGreen(2)));
      const previewing = await waitForStatus(target, key, (status) => !!status.rollout?.previewUrl);
      const previewUrl = previewing.rollout!.previewUrl!;
      assert.notEqual(previewUrl, url);
      for (let i = 0; i < 5; i++) assert.equal(await get(previewUrl), 'podman-v1');
      assert.equal(await get(url), 'podman-v2', 'the stable address still serves blue');
      const status = await result;
      await poller.more(40);
      const answers = await poller.stop();

      assert.deepEqual(poller.failures(), []);
      assert.equal(status.rollout?.phase, 'promoted');
      assert.equal(status.rollout?.previewUrl, null);
      assert.equal(status.image, fx.images.v1.digest);
      await assert.rejects(fetch(previewUrl), 'the preview address is closed');
      for (const client of [0, 1]) {
        const seen = answers
          .filter((answer) => answer.client === client)
          .map((answer) => answer.text);
        const firstGreen = seen.indexOf('podman-v1');
        assert.ok(firstGreen > 0, `client ${client} saw blue, then green`);
        assert.ok(seen.slice(0, firstGreen).every((text) => text === 'podman-v2'));
        assert.ok(seen.slice(firstGreen).every((text) => text === 'podman-v1'));
      }
      assert.equal((await containers()).length, 2, 'the blue containers are removed');
    });

    it('waits for a manual promotion; abort rolls back', async () => {
      const promoted = target.apply(spec(fx.images.v2, blueGreen(0, false)));
      const paused = await waitForStatus(target, key, (s) => s.rollout?.phase === 'paused');
      assert.equal(paused.health, 'progressing');
      assert.equal(await get(url), 'podman-v1');
      assert.equal(await get(paused.rollout!.previewUrl!), 'podman-v2');
      await target.promote(key);
      assert.equal((await promoted).rollout?.phase, 'promoted');
      assert.equal(await get(url), 'podman-v2');

      const poller = new Poller(url);
      const aborted = target.apply(
        spec(fx.images.v1, canary([{ weight: 50, pauseSeconds: 0 }], false)),
      );
      const waiting = await waitForStatus(target, key, (s) => s.rollout?.phase === 'paused');
      const candidate = waiting.instances.find(
        (instance) => instance.image === fx.images.v1.digest,
      ) as WithContainer;
      assert.ok(candidate.container && (await containerExists(candidate.container)));
      await poller.more(20);
      await target.abort(key);
      const { message } = await rejection(aborted);
      await poller.more(20);
      const answers = await poller.stop();
      assert.equal(message, 'rolled back: aborted at step 1 (weight 50%)');
      assert.deepEqual(poller.failures(), []);
      assert.ok(
        answers.some((answer) => answer.text === 'podman-v1'),
        'the canary served',
      );
      assert.equal(await get(url), 'podman-v2');
      assert.equal(await containerExists(candidate.container), false, 'the canary is removed');
      const status = await target.status(key);
      assert.equal(status.rollout?.phase, 'rolled-back');
      assert.equal(status.image, fx.images.v2.digest);
      await assert.rejects(target.promote(key), { code: 'CONFLICT' });
      await assert.rejects(target.abort(key), { code: 'CONFLICT' });
    });

    it('a server restart during a rollout rolls it back; the stable version serves', async () => {
      const applying = target
        .apply(spec(fx.images.v1, canary([{ weight: 50, pauseSeconds: 120 }])))
        .catch((error: Error) => error);
      const analyzing = await waitForStatus(
        target,
        key,
        (status) => status.rollout?.phase === 'analyzing',
      );
      const candidate = analyzing.instances.find(
        (instance) => instance.image === fx.images.v1.digest,
      ) as WithContainer;
      await target.close();
      assert.match(String(await applying), /shutting down/);
      assert.ok(await containerExists(candidate.container!), 'left for the next server');

      ({ target } = await newTarget({ ...options, dataDir }));
      await target.recover();
      const status = await target.status(key);
      assert.equal(status.rollout?.phase, 'rolled-back');
      assert.match(status.rollout!.message, /server restarted during the rollout at step 1/);
      assert.equal(status.image, fx.images.v2.digest);
      assert.equal(await containerExists(candidate.container!), false, 'the canary is removed');
      assert.deepEqual(
        status.instances.map((instance) => instance.image),
        [fx.images.v2.digest, fx.images.v2.digest],
      );
      assert.equal(status.url, url);
      assert.equal(await get(url), 'podman-v2');
      await target.delete(key);
    });
  });
});
