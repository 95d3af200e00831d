import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { RolloutSpec, Target, WorkloadImage, WorkloadSpec, WorkloadStatus } from './target.js';

/**
 * The contract every target driver keeps, run by each driver's own test file with real
 * images. The images hold an HTTP app that answers its version on every path and 200 on
 * /healthz (the never-ready one answers 503 there). Cases for what only some drivers can do
 * run when `target.capabilities` declares it. This file registers no test by itself.
 */
export interface TargetContractSetup {
  target: Target;
  images: {
    v1: WorkloadImage;
    v2: WorkloadImage;
    neverReady: WorkloadImage;
    /**
     * Ready (200 on /healthz) but answering 500 on every other path. Required when the target
     * declares `canary`.
     */
    serverError?: WorkloadImage;
  };
  /** Texts the v1 and v2 apps answer with. */
  versions: { v1: string; v2: string };
  /** Driver-specific checks after the rolling update (e.g. the old process is gone). */
  afterRollout?(before: WorkloadStatus, after: WorkloadStatus): Promise<void> | void;
  /** Driver-specific checks after delete, given the status just before it. */
  afterDelete?(before: WorkloadStatus): Promise<void> | void;
  /** Also called when a test failed: must leave nothing running. */
  cleanup(): Promise<void>;
}

export function describeTargetContract(name: string, setup: () => Promise<TargetContractSetup>) {
  describe(`${name} target: contract`, () => {
    let ctx: TargetContractSetup;
    const key = 'contract-team/hello/dev';
    const spec = (image: WorkloadImage): WorkloadSpec => ({
      key,
      image,
      env: {},
      port: 8080,
      replicas: 1,
      readiness: { path: '/healthz' },
    });

    before(async () => {
      ctx = await setup();
    });
    after(async () => {
      await ctx?.cleanup();
    });

    it('reports a workload it never saw as missing', async () => {
      const status = await ctx.target.status('contract-team/nothing/dev');
      assert.equal(status.health, 'missing');
      assert.equal(status.url, null);
      assert.deepEqual(status.instances, []);
    });

    it('apply v1: the stable url serves v1', async () => {
      const progress: string[] = [];
      const status = await ctx.target.apply(spec(ctx.images.v1), (message) =>
        progress.push(message),
      );
      assert.equal(status.health, 'healthy');
      assert.equal(status.image, ctx.images.v1.digest);
      assert.equal(status.readyReplicas, 1);
      assert.ok(status.url);
      assert.ok(progress.length > 0, 'apply reports progress');
      assert.equal(await get(status.url), ctx.versions.v1);
      if (ctx.target.capabilities.selfHeal) assert.deepEqual(status.drift, []);
    });

    it('applying the same spec again changes nothing', async () => {
      const before = await ctx.target.status(key);
      const again = await ctx.target.apply(spec(ctx.images.v1));
      assert.deepEqual(
        again.instances.map((instance) => [instance.id, instance.pid]),
        before.instances.map((instance) => [instance.id, instance.pid]),
      );
    });

    it('repair of a workload that did not drift changes nothing', async (t) => {
      if (!ctx.target.capabilities.selfHeal) return t.skip('the target does not self-heal');
      const before = await ctx.target.status(key, { verify: true });
      assert.deepEqual(before.drift, []);
      await ctx.target.repair(key);
      const after = await ctx.target.status(key, { verify: true });
      assert.deepEqual(after.drift, []);
      assert.deepEqual(
        after.instances.map((instance) => [instance.id, instance.pid]),
        before.instances.map((instance) => [instance.id, instance.pid]),
      );
    });

    it('apply v2 while a client polls the url: no request fails, then v2 serves', async () => {
      const before = await ctx.target.status(key);
      const url = before.url!;
      const failures: string[] = [];
      const answers = new Map<string, number>();
      let polling = true;
      const poll = async () => {
        while (polling) {
          try {
            const res = await fetch(url);
            const text = await res.text();
            if (res.status !== 200) failures.push(`HTTP ${res.status}: ${text}`);
            else answers.set(text, (answers.get(text) ?? 0) + 1);
          } catch (error) {
            failures.push(String((error as Error).cause ?? error));
          }
        }
      };
      const clients = [poll(), poll()];
      const status = await ctx.target.apply(spec(ctx.images.v2));
      // Keep polling after the switch: the old version is stopped by now.
      const served = answers.get(ctx.versions.v2) ?? 0;
      while ((answers.get(ctx.versions.v2) ?? 0) < served + 20) await get(url);
      polling = false;
      await Promise.all(clients);

      assert.deepEqual(failures, []);
      assert.ok((answers.get(ctx.versions.v1) ?? 0) > 0, 'the client saw v1 before the switch');
      assert.deepEqual([...answers.keys()].sort(), [ctx.versions.v1, ctx.versions.v2].sort());
      assert.equal(status.url, url, 'the address stays the same');
      assert.equal(status.health, 'healthy');
      assert.equal(status.image, ctx.images.v2.digest);
      assert.ok(status.instances.every((instance) => instance.image === ctx.images.v2.digest));
      assert.equal(await get(url), ctx.versions.v2);
      await ctx.afterRollout?.(before, status);
    });

    it('a version that never gets ready: apply throws, the old one keeps serving', async () => {
      const before = await ctx.target.status(key);
      await assert.rejects(ctx.target.apply(spec(ctx.images.neverReady)), /ready/);
      const status = await ctx.target.status(key);
      assert.equal(await get(status.url!), ctx.versions.v2);
      assert.equal(status.image, ctx.images.v2.digest);
      assert.equal(status.health, 'degraded', 'the desired version does not run');
      assert.match(status.message ?? '', /ready/);
      assert.deepEqual(
        status.instances.map((instance) => instance.id),
        before.instances.map((instance) => instance.id),
      );
    });

    it('a canary answering 5xx is rolled back; the stable version keeps serving', async (t) => {
      if (!ctx.target.capabilities.canary) return t.skip('the target does not do canaries');
      const broken = ctx.images.serverError;
      assert.ok(broken, 'a target declaring canary gives the contract images.serverError');
      const url = (await ctx.target.status(key)).url!;
      const poller = pollUrl(url);
      // Weight 50 of one replica: one canary instance beside one stable, whatever the split.
      const rollout = rolloutSpec('canary', [{ weight: 50, pauseSeconds: 60 }]);
      await assert.rejects(ctx.target.apply({ ...spec(broken), rollout }), {
        code: 'DEPLOY_ROLLOUT_FAILED',
      });
      const rolledBackAt = Date.now();
      await poller.more(20);
      const answers = await poller.stop();

      const status = await ctx.target.status(key);
      assert.equal(status.rollout?.phase, 'rolled-back');
      assert.match(status.rollout?.message ?? '', /5xx/);
      assert.equal(status.image, ctx.images.v2.digest, 'the stable version serves');
      assert.ok(status.instances.every((instance) => instance.image === ctx.images.v2.digest));
      const failed = answers.filter((answer) => answer.status !== 200);
      assert.ok(failed.length > 0, 'the canary got requests');
      assert.ok(failed.every((answer) => answer.status === 500));
      assert.deepEqual(
        failed.filter((answer) => answer.at >= rolledBackAt),
        [],
        'no failure after the rollback',
      );
      assert.equal(await get(url), ctx.versions.v2);
    });

    it('blue-green: the new version takes over at once, with no failed request', async (t) => {
      if (!ctx.target.capabilities.blueGreen) return t.skip('the target does not do blue-green');
      const url = (await ctx.target.status(key)).url!;
      const poller = pollUrl(url);
      const rollout = rolloutSpec('blue-green', [{ weight: 100, pauseSeconds: 2 }]);
      let done = false;
      const applied = ctx.target.apply({ ...spec(ctx.images.v1), rollout }).finally(() => {
        done = true;
      });
      let previewed: string | null = null;
      while (!done && previewed === null) {
        const previewUrl = (await ctx.target.status(key)).rollout?.previewUrl;
        if (previewUrl) previewed = await get(previewUrl);
        else await delay(20);
      }
      const status = await applied;
      await poller.more(20);
      const answers = await poller.stop();

      assert.equal(previewed, ctx.versions.v1, 'the preview address served the new version');
      assert.deepEqual(
        answers.filter((answer) => answer.status !== 200),
        [],
      );
      assert.equal(status.rollout?.phase, 'promoted');
      assert.equal(status.image, ctx.images.v1.digest);
      for (const client of [0, 1]) {
        const seen = answers.filter((answer) => answer.client === client).map((a) => a.text);
        const first = seen.indexOf(ctx.versions.v1);
        assert.ok(first >= 0, `client ${client} saw the new version`);
        assert.ok(
          seen.slice(first).every((text) => text === ctx.versions.v1),
          'at once',
        );
      }
      assert.equal(await get(url), ctx.versions.v1);
    });

    it('delete stops everything', async () => {
      const before = await ctx.target.status(key);
      await ctx.target.delete(key);
      const status = await ctx.target.status(key);
      assert.equal(status.health, 'missing');
      assert.deepEqual(status.instances, []);
      await assert.rejects(fetch(before.url!));
      await ctx.afterDelete?.(before);
      await ctx.target.delete(key); // deleting what is gone is fine
    });
  });
}

function rolloutSpec(strategy: RolloutSpec['strategy'], steps: RolloutSpec['steps']): RolloutSpec {
  return {
    strategy,
    steps,
    analysis: { maxErrorRate: 0.1, minRequests: 10, maxFailedChecks: 3, intervalSeconds: 1 },
    autoPromote: true,
  };
}

interface Answer {
  at: number;
  client: number;
  status: number;
  text: string;
}

/** Two clients polling `url` every 10-20 ms until stopped; a failed connection is status 0. */
function pollUrl(url: string) {
  const answers: Answer[] = [];
  let polling = true;
  const loop = async (client: number) => {
    while (polling) {
      try {
        const res = await fetch(url);
        answers.push({ at: Date.now(), client, status: res.status, text: await res.text() });
      } catch (error) {
        answers.push({ at: Date.now(), client, status: 0, text: String(error) });
      }
      await delay(10 + Math.random() * 10);
    }
  };
  const loops = [loop(0), loop(1)];
  return {
    async more(count: number) {
      const until = answers.length + count;
      while (answers.length < until) await delay(10);
    },
    async stop() {
      polling = false;
      await Promise.all(loops);
      return answers;
    },
  };
}

async function get(url: string): Promise<string> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: ${text}`);
  return text;
}
