/**
 * The podman target against real podman containers: images pushed into a Registry served over
 * HTTP with Basic auth and pulled by podman, the contract every target keeps, then crashes,
 * drift, repair and a server restart. Skipped only when podman is not installed. Every
 * container a test creates carries its target's label and is removed in `after` hooks.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { before, describe, it } from 'node:test';
import { describeTargetContract } from '../target.case.test.js';
import type { WorkloadImage, WorkloadSpec, WorkloadStatus } from '../target.js';
import { testSpec } from '../test-workloads.js';
import { labelKeys } from './containers.js';
import type { PodmanTarget } from './podman-target.js';
import { podmanStateSchema } from './state-file.js';
import {
  cli,
  containerExists,
  containerOf,
  containersOf,
  execIn,
  fixture,
  get,
  newTarget,
  pollThroughout,
  waitForStatus,
  withPodman,
  type Fixture,
  type WithContainer,
} from './test-fixture.js';

/**
 * The other replica served throughout: no error status from the address. A request that was
 * in flight inside a container killed by hand may be cut off (at most that one).
 */
function assertServedThroughout(failures: string[]): void {
  assert.deepEqual(
    failures.filter((failure) => failure.startsWith('HTTP')),
    [],
  );
  assert.ok(failures.length <= 1, `failed requests: ${failures.join(', ')}`);
}

withPodman('podman target', () => {
  describeTargetContract('podman', async () => {
    const fx = await fixture();
    const { target } = await newTarget();
    return {
      target,
      images: fx.images,
      versions: { v1: 'podman-v1', v2: 'podman-v2' },
      async afterRollout(before, after) {
        const old = containerOf(before);
        assert.ok(old, 'the v1 instance had a container');
        assert.equal(await containerExists(old), false, 'the v1 container is removed');
        for (const [index] of after.instances.entries()) {
          const id = containerOf(after, index);
          assert.ok(id && (await containerExists(id)), 'the v2 container runs');
        }
        assert.ok(fx.credentialCalls > 0, 'the image was pulled with credentials');
      },
      async afterDelete() {
        assert.deepEqual(await containersOf(target), []);
      },
      async cleanup() {
        await target.close();
      },
    };
  });

  describe('podman target: containers, supervision, drift and server restarts', () => {
    let fx: Fixture;
    before(async () => {
      fx = await fixture();
    });
    const spec = (image: WorkloadImage, extra: Partial<WorkloadSpec> = {}) =>
      testSpec('team/hello/dev', image, { replicas: 1, ...extra });

    it('runs the spec: env, PORT, command and labels; logs show each container', async () => {
      const { target } = await newTarget();
      const status = await target.apply(
        spec(fx.images.v1, {
          key: 'team/env/dev',
          port: 9090,
          env: { GREETING: 'hi there', MULTI: 'line one\nline two' },
          command: [
            'sh',
            '-c',
            'mkdir -p /w && printf "%s|%s|%s" "$GREETING" "$PORT" "$(echo "$MULTI" | wc -l)" > /w/index.html && echo started && exec httpd -f -p "$PORT" -h /w',
          ],
          readiness: { path: '/' },
        }),
      );
      assert.equal(status.health, 'healthy');
      assert.equal(await get(status.url!), 'hi there|9090|2');
      const [container] = await containersOf(target);
      assert.ok(container);
      assert.equal(container.labels[labelKeys.workload], 'team/env/dev');
      assert.equal(container.labels[labelKeys.instance], status.instances[0]!.id);
      assert.equal(container.labels[labelKeys.image], fx.images.v1.digest);
      assert.match(container.name, /^valve-team_env_dev-[0-9a-f]{8}-inst_/);
      const logs = await target.logs('team/env/dev');
      assert.match(logs, new RegExp(`^==> ${status.instances[0]!.id} \\(ready, container `));
      assert.match(logs, /started/);
      await target.delete('team/env/dev');
    });

    it('loads the image from an ImageSource without a registry address', async () => {
      const { target } = await newTarget({ registry: undefined, images: fx.registry });
      const status = await target.apply(spec(fx.images.v2, { key: 'team/loaded/dev' }));
      assert.equal(await get(status.url!), 'podman-v2');
      const [name] = target.imageNames(fx.images.v2);
      assert.match(name!, /^localhost\/valve-deploy\/team\/hello:sha256-/);
      assert.equal((await cli.run(['image', 'exists', name!])).code, 0);
      await target.delete('team/loaded/dev');
    });

    it('an image the registry does not have: DEPLOY_IMAGE_UNAVAILABLE, nothing runs', async () => {
      const { target } = await newTarget();
      const unknown: WorkloadImage = {
        reference: `${fx.host}/team/hello@sha256:${'0'.repeat(64)}`,
        repo: 'team/hello',
        digest: `sha256:${'0'.repeat(64)}`,
      };
      await assert.rejects(target.apply(spec(unknown, { key: 'team/unknown/dev' })), {
        code: 'DEPLOY_IMAGE_UNAVAILABLE',
      });
      const status = await target.status('team/unknown/dev');
      assert.equal(status.health, 'missing');
      assert.deepEqual(await containersOf(target), []);
    });

    it('refuses what podman cannot run: an env name with `=`', async () => {
      const { target } = await newTarget();
      await assert.rejects(
        target.apply(spec(fx.images.v1, { key: 'team/bad/dev', env: { 'A=B': 'x' } })),
        { code: 'INPUT_INVALID' },
      );
      assert.equal((await target.status('team/bad/dev')).health, 'missing');
    });

    it('a restarted container starts its readiness count afresh', async () => {
      // Readiness fails twice in a row -> unready; then the container is removed by hand and
      // created again. Its first periodic probe fails once: one miss of a fresh container,
      // under the threshold, so it keeps serving (misses of the old one do not carry over).
      // The file is put back halfway between the first and second probes: 8 s apart, so a
      // slow `podman exec` on a busy machine still lands well inside.
      const key = 'team/probes/dev';
      const { target } = await newTarget({
        restartBackoff: { firstMs: 200, maxMs: 1000, resetAfterReadyMs: 60_000 },
      });
      const period = 8000;
      const readiness = { path: '/healthz', periodSeconds: period / 1000, failureThreshold: 2 };
      let status = await target.apply(spec(fx.images.v1, { key, readiness }));
      const id = status.instances[0]!.id;
      await execIn(containerOf(status)!, 'rm /www/healthz');
      await waitForStatus(target, key, (s) => s.instances[0]?.state === 'unready');
      await cli.check(['rm', '--force', '--time', '0', containerOf(status)!]);
      status = await waitForStatus(
        target,
        key,
        (s) => s.instances[0]?.state === 'ready' && s.instances[0].restarts === 1,
      );
      const readyAt = Date.now();
      assert.equal(status.instances[0]!.id, id);
      const container = containerOf(status)!;
      await execIn(container, 'rm /www/healthz');
      const states = new Set<string>();
      const watching = (async () => {
        while (Date.now() < readyAt + 2.4 * period) {
          states.add((await target.status(key)).instances[0]!.state);
          await delay(50);
        }
      })();
      // The first periodic probe (one period after ready) fails; the file is back before the second.
      await delay(readyAt + 1.5 * period - Date.now());
      await execIn(container, 'printf ok > /www/healthz');
      await watching;
      assert.deepEqual([...states], ['ready'], 'one miss of a fresh container is not unready');
      await target.delete(key);
    });

    describe('one workload through crashes, drift and a server restart', () => {
      const key = 'team/hello/dev';
      let target: PodmanTarget;
      let dataDir: string;
      let url: string;
      // A crashed container is started again after its backoff.
      const restartBackoff = { firstMs: 3000, maxMs: 30_000, resetAfterReadyMs: 60_000 };

      before(async () => {
        ({ target, dataDir } = await newTarget({ restartBackoff }));
        const status = await target.apply(spec(fx.images.v1, { replicas: 2 }));
        url = status.url!;
      });

      it('a container killed by hand is restarted; the other replica serves throughout', async () => {
        const before = await target.status(key);
        const victim = before.instances[0]!;
        const client = pollThroughout(url);
        await delay(200);
        await cli.check(['kill', containerOf(before)!]);
        const down = await waitForStatus(target, key, (status) =>
          status.drift.some((line) => line.includes(`instance ${victim.id}: container exited`)),
        );
        assert.equal(down.health, 'degraded');
        const healed = await waitForStatus(
          target,
          key,
          (status) =>
            status.health === 'healthy' &&
            status.instances.some((instance) => instance.id === victim.id && instance.restarts > 0),
        );
        await delay(200);
        assertServedThroughout(await client.stop());
        assert.ok(client.answers() > 10);
        const restarted = healed.instances.find((instance) => instance.id === victim.id)!;
        assert.equal(restarted.restarts, 1);
        assert.equal(restarted.port, victim.port);
        assert.notEqual(restarted.pid, victim.pid);
        assert.equal(
          (restarted as WithContainer).container,
          (victim as WithContainer).container,
          'the same container is started again',
        );
        assert.deepEqual(healed.drift, []);
      });

      it('a container removed by hand is drift, healed with a new container', async () => {
        const before = await target.status(key);
        const victim = before.instances[1]!;
        const client = pollThroughout(url);
        await cli.check(['rm', '--force', '--time', '0', containerOf(before, 1)!]);
        const drifted = await waitForStatus(target, key, (status) =>
          status.drift.includes(`instance ${victim.id}: container was removed`),
        );
        assert.equal(drifted.health, 'degraded');
        const healed = await waitForStatus(
          target,
          key,
          (status) => status.health === 'healthy' && status.drift.length === 0,
        );
        assertServedThroughout(await client.stop());
        const again = healed.instances.find((instance) => instance.id === victim.id)!;
        assert.equal(again.port, victim.port, 'same instance, same port');
        assert.notEqual((again as WithContainer).container, (victim as WithContainer).container);
        assert.ok(await containerExists((again as WithContainer).container!));
        assert.equal(await get(url), 'podman-v1');
      });

      it('repair() restarts at once what waits for its backoff', async () => {
        // A backoff no test waits out (10 minutes): only repair() brings the container back
        // before the test's own timeout, however slow the machine is.
        const { target: patient } = await newTarget({
          restartBackoff: { firstMs: 600_000, maxMs: 600_000, resetAfterReadyMs: 60_000 },
        });
        const repairKey = 'team/repair/dev';
        const applied = await patient.apply(spec(fx.images.v1, { key: repairKey }));
        const victim = applied.instances[0]!;
        await cli.check(['kill', containerOf(applied)!]);
        const waiting = await waitForStatus(
          patient,
          repairKey,
          (status) => status.instances[0]?.state === 'restarting',
        );
        const wait = Number(/restarting in (\d+) s/.exec(waiting.message ?? '')?.[1]);
        assert.ok(wait > 500, waiting.message ?? '');
        await patient.repair(repairKey);
        const status = await patient.status(repairKey, { verify: true });
        const repaired = status.instances[0]!;
        assert.equal(repaired.id, victim.id);
        assert.equal(repaired.state, 'ready');
        assert.equal(repaired.restarts, victim.restarts + 1);
        assert.equal(status.health, 'healthy');
        assert.equal(await get(status.url!), 'podman-v1');
        await patient.delete(repairKey);
      });

      it('a container with the target label that no instance owns is removed', async () => {
        const [name] = target.imageNames(fx.images.v1);
        const stray = (
          await cli.check([
            'run',
            '--detach',
            '--label',
            `${labelKeys.owner}=${target.owner}`,
            '--label',
            `${labelKeys.workload}=${key}`,
            '--label',
            `${labelKeys.instance}=inst_stray`,
            '--pull=never',
            name!,
            'sleep',
            '600',
          ])
        ).trim();
        const deadline = Date.now() + 10_000;
        while (await containerExists(stray)) {
          assert.ok(Date.now() < deadline, 'the stray container is still there');
          await delay(100);
        }
        assert.equal((await target.status(key, { verify: true })).drift.length, 0);
      });

      it('a new target after close() adopts the running containers as they are', async () => {
        const before = await target.status(key, { verify: true });
        assert.equal(before.health, 'healthy');
        await target.close();
        // Still serving on the containers' own ports while no server runs.
        for (const instance of before.instances)
          assert.equal(await get(`http://127.0.0.1:${instance.port}/`), 'podman-v1');
        const state = podmanStateSchema.parse(
          JSON.parse(await readFile(join(dataDir, 'targets/podman/state.json'), 'utf8')),
        );
        assert.equal(state.workloads[0]!.instances.length, 2);

        ({ target } = await newTarget({ dataDir, restartBackoff }));
        await target.recover();
        const after = await target.status(key);
        assert.equal(after.url, before.url);
        assert.equal(after.health, 'healthy');
        const identity = (status: WorkloadStatus) =>
          status.instances
            .map((instance) => ({
              id: instance.id,
              pid: instance.pid,
              port: instance.port,
              restarts: instance.restarts,
              container: (instance as WithContainer).container,
            }))
            .sort((a, b) => a.id.localeCompare(b.id));
        assert.deepEqual(identity(after), identity(before));
        assert.equal(await get(after.url!), 'podman-v1');
      });

      it('a container removed while no server ran is created again by recover()', async () => {
        const before = await target.status(key);
        await target.close();
        await cli.check(['rm', '--force', '--time', '0', containerOf(before, 0)!]);
        ({ target } = await newTarget({ dataDir, restartBackoff }));
        await target.recover();
        const healed = await waitForStatus(target, key, (status) => status.health === 'healthy');
        const victim = before.instances[0]!;
        const again = healed.instances.find((instance) => instance.id === victim.id)!;
        assert.equal(again.restarts, victim.restarts + 1);
        assert.notEqual((again as WithContainer).container, containerOf(before, 0));
        const other = healed.instances.find((instance) => instance.id !== victim.id)!;
        assert.equal(
          (other as WithContainer).container,
          containerOf(before, 1),
          'the healthy one is left alone',
        );
        await target.delete(key);
        assert.deepEqual(await containersOf(target), []);
      });
    });
  });
});
