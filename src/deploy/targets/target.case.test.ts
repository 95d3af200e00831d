import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Target, WorkloadImage, WorkloadSpec, WorkloadStatus } from './target.js';

/**
 * The contract every target driver keeps, run by each driver's own test file with real
 * images. The images hold an HTTP app that answers its version on every path and 200 on
 * /healthz (the never-ready one answers 503 there). This file registers no test by itself.
 */
export interface TargetContractSetup {
  target: Target;
  images: { v1: WorkloadImage; v2: WorkloadImage; neverReady: WorkloadImage };
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
    });

    it('applying the same spec again changes nothing', async () => {
      const before = await ctx.target.status(key);
      const again = await ctx.target.apply(spec(ctx.images.v1));
      assert.deepEqual(
        again.instances.map((instance) => [instance.id, instance.pid]),
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

async function get(url: string): Promise<string> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: ${text}`);
  return text;
}
