/**
 * File drift on the podman target, against real containers: a file of the image changed or
 * removed inside a container by hand is drift (found by the periodic check, or at once when
 * the status is asked to verify), files the app adds and files merely touched are not, and
 * `repair` replaces the drifted container with a fresh one of the image while a client polls
 * the address without a failed request. Skipped only when podman is not installed.
 */
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { versionedHttpdCommand } from '../../../../test/support/images.js';
import type { WorkloadStatus } from '../target.js';
import { testSpec } from '../test-workloads.js';
import type { PodmanTarget } from './podman-target.js';
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
  type WithContainer,
} from './test-fixture.js';

withPodman('podman target: file drift', () => {
  describe('podman target: file drift and repair', () => {
    const key = 'team/drift/dev';
    let target: PodmanTarget;
    let url: string;

    const serves = async (status: WorkloadStatus) => {
      for (const instance of status.instances)
        assert.equal(await get(`http://127.0.0.1:${instance.port}/`), 'podman-v1');
    };
    const identity = (status: WorkloadStatus) =>
      status.instances.map((instance) => `${instance.id} ${(instance as WithContainer).container}`);

    before(async () => {
      const fx = await fixture();
      // A generous start timeout: podman is shared and slow under load here.
      ({ target } = await newTarget({ driftCheckIntervalMs: 300, startTimeoutMs: 30_000 }));
      const spec = testSpec(key, fx.images.v1, {
        // The app writes a file of its own next to the image's at each start.
        command: [
          'sh',
          '-c',
          `echo "written by the app" > /www/app-wrote.txt; ${versionedHttpdCommand[2]}`,
        ],
      });
      const status = await target.apply(spec);
      url = status.url!;
      assert.equal(status.health, 'healthy');
    });

    after(async () => {
      await target.delete(key);
      assert.deepEqual(await containersOf(target), []);
    });

    it('reports no drift for what runs as applied: files the app adds, a touched file', async () => {
      const status = await target.status(key);
      assert.equal(await get(`${url}/app-wrote.txt`), 'written by the app\n');
      // Copied up into the container's layer (podman diff lists it) with the same content.
      await execIn(containerOf(status, 0)!, 'touch /www/index.html /etc/passwd');
      const listed = await cli.check(['diff', containerOf(status, 0)!]);
      assert.match(listed, /^C \/www\/index\.html$/m);
      assert.match(listed, /^A \/www\/app-wrote\.txt$/m);
      const verified = await target.status(key, { verify: true });
      assert.deepEqual(verified.drift, []);
      assert.equal(verified.health, 'healthy');
      assert.equal(verified.message, null, 'the files were checked');
    });

    it('finds a file changed by hand, and repair serves the original again without a failed request', async () => {
      const before = await target.status(key);
      const victim = before.instances[0]!;
      await execIn(containerOf(before, 0)!, 'printf "defaced by hand" > /www/index.html');
      assert.equal(await get(`http://127.0.0.1:${victim.port}/`), 'defaced by hand');
      const drift = `instance ${victim.id}: file /www/index.html changed`;
      // The periodic check finds it, without being asked.
      const found = await waitForStatus(target, key, (status) => status.drift.includes(drift));
      assert.deepEqual(found.drift, [drift]);
      assert.equal(found.health, 'healthy', 'drift is apart from health');
      assert.deepEqual((await target.status(key, { verify: true })).drift, [drift]);

      const client = pollThroughout(url);
      const started = Date.now();
      await target.repair(key);
      const repairMs = Date.now() - started;
      const answersDuringRepair = client.answers();
      await delay(300);
      const failures = await client.stop();
      assert.deepEqual(failures, [], 'no request failed during the repair');
      assert.ok(answersDuringRepair > 5, `${answersDuringRepair} answers in ${repairMs} ms`);

      const status = await target.status(key, { verify: true });
      assert.deepEqual(status.drift, []);
      assert.equal(status.health, 'healthy');
      assert.equal(status.instances.length, 2);
      assert.ok(
        status.instances.every((instance) => instance.id !== victim.id),
        'the drifted instance was replaced',
      );
      assert.ok(
        status.instances.some(
          (instance) =>
            instance.id === before.instances[1]!.id &&
            (instance as WithContainer).container === containerOf(before, 1),
        ),
        'the other one was left alone',
      );
      assert.equal(await containerExists(containerOf(before, 0)!), false);
      await serves(status);
      // Repairing what does not drift changes nothing.
      await target.repair(key);
      assert.deepEqual(identity(await target.status(key)), identity(status));
    });

    it('finds a file removed by hand and a mode changed; repair heals both', async () => {
      const before = await target.status(key);
      const victim = before.instances[1]!;
      await execIn(containerOf(before, 1)!, 'rm /www/index.html && chmod 600 /etc/passwd');
      const status = await target.status(key, { verify: true });
      assert.deepEqual(status.drift, [
        `instance ${victim.id}: file /etc/passwd changed mode`,
        `instance ${victim.id}: file /www/index.html removed`,
      ]);
      await target.repair(key);
      const healed = await target.status(key, { verify: true });
      assert.deepEqual(healed.drift, []);
      assert.ok(healed.instances.every((instance) => instance.id !== victim.id));
      await serves(healed);
    });
  });
});
