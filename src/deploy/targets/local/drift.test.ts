import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { WorkloadSpec } from '../target.js';
import { testSpec } from '../test-workloads.js';
import { digestDirName } from './image-cache.js';
import { LocalTarget } from './local-target.js';
import { isAlive } from './process-group.js';
import { MemoryImageSource, publishTestApp } from './test-images.js';
import { Poller, ProcessTracker, get, portBase, waitForStatus } from './test-processes.js';

/**
 * Drift on the local target: an instance killed is reported until supervision restarts it; a
 * file of the image root changed by hand is found (by the periodic check, or at once when the
 * status is asked to verify) and `repair` moves the instances to a fresh unpack, one at a
 * time, without a failed request.
 */
describe('local target: drift and repair', () => {
  const key = 'team/site/prod';
  const original = 'the original page\n';
  const tracker = new ProcessTracker();
  let dataDir: string;
  let target: LocalTarget;
  let spec: WorkloadSpec;
  let url: string;
  let imageDir: string;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'valve-local-drift-'));
    const source = new MemoryImageSource();
    const image = await publishTestApp(source, 'team/site', { version: 'v1', page: original });
    target = new LocalTarget({
      dataDir,
      portBase: portBase(),
      images: source,
      driftCheckIntervalMs: 200,
    });
    spec = testSpec(key, image);
    const status = tracker.track(await target.apply(spec));
    url = status.url!;
    imageDir = join(dataDir, 'targets/local/images', digestDirName(image.digest));
    assert.equal(await get(url), original);
  });

  after(async () => {
    await target.close();
    await tracker.killAll(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('reports no drift for what runs as applied; a touched file is not drift', async () => {
    const server = join(imageDir, 'rootfs/app/server.js');
    const later = new Date(Date.now() + 60_000);
    await utimes(server, later, later);
    const status = await target.status(key, { verify: true });
    assert.deepEqual(status.drift, []);
    assert.equal(status.health, 'healthy');
  });

  it('reports a killed instance as drift until supervision restarts it', async () => {
    const before = tracker.track(await target.status(key));
    const victim = before.instances[0]!;
    process.kill(victim.pid, 'SIGKILL');
    const down = await waitForStatus(
      target,
      key,
      (status) => status.drift.includes(`instance ${victim.id} not running`),
      { intervalMs: 20 },
    );
    assert.deepEqual(down.drift, [`instance ${victim.id} not running`]);
    const healed = tracker.track(
      await waitForStatus(
        target,
        key,
        (status) => status.drift.length === 0 && status.health === 'healthy',
      ),
    );
    const restarted = healed.instances.find((instance) => instance.id === victim.id)!;
    assert.equal(restarted.restarts, 1);
    assert.notEqual(restarted.pid, victim.pid);
  });

  it('repair restarts at once an instance waiting out its restart backoff', async () => {
    const before = tracker.track(await target.status(key));
    const victim = before.instances[1]!;
    process.kill(victim.pid, 'SIGKILL');
    await waitForStatus(
      target,
      key,
      (status) => status.instances.find((each) => each.id === victim.id)?.state === 'restarting',
      { intervalMs: 10 },
    );
    await target.repair(key);
    const after = tracker.track(await target.status(key));
    const repaired = after.instances.find((instance) => instance.id === victim.id)!;
    assert.ok(['starting', 'ready'].includes(repaired.state), repaired.state);
    assert.equal(repaired.restarts, victim.restarts + 1);
    tracker.track(await waitForStatus(target, key, (status) => status.health === 'healthy'));
  });

  it('finds a file changed in the image root, and repair serves the original again', async () => {
    const before = tracker.track(
      await waitForStatus(target, key, (status) => status.health === 'healthy'),
    );
    await writeFile(join(imageDir, 'rootfs/app/page.txt'), 'defaced by hand\n');
    assert.equal(await get(url), 'defaced by hand\n', 'the instances read the changed file');
    const drift = 'file /app/page.txt changed in the image root';
    // The periodic check finds it, without being asked.
    const found = await waitForStatus(target, key, (status) => status.drift.includes(drift));
    assert.deepEqual(found.drift, [drift]);
    assert.deepEqual((await target.status(key, { verify: true })).drift, [drift]);

    const poller = new Poller(url);
    await poller.more(10);
    await target.repair(key);
    await poller.more(20);
    await poller.stop();

    assert.deepEqual(poller.failures(), [], 'no request failed during the repair');
    assert.equal(await get(url), original);
    const status = tracker.track(await target.status(key, { verify: true }));
    assert.deepEqual(status.drift, []);
    assert.equal(status.health, 'healthy');
    assert.equal(status.instances.length, 2);
    assert.ok(
      status.instances.every((instance) => !before.instances.some((old) => old.id === instance.id)),
      'every instance was replaced',
    );
    for (const old of before.instances) assert.equal(isAlive(old.pid), false);
    // A fresh root beside the old one, which is gone: the root in use was never rewritten.
    const current = (await readFile(join(imageDir, 'current'), 'utf8')).trim();
    assert.match(current, /^rootfs-[0-9a-f]+$/);
    assert.equal(await readFile(join(imageDir, current, 'app/page.txt'), 'utf8'), original);
    assert.equal(existsSync(join(imageDir, 'rootfs')), false);
    // Repairing what does not drift changes nothing.
    await target.repair(key);
    assert.deepEqual(
      (await target.status(key)).instances.map((instance) => instance.pid),
      status.instances.map((instance) => instance.pid),
    );
  });

  it('finds a file removed from the image root', async () => {
    const current = (await readFile(join(imageDir, 'current'), 'utf8')).trim();
    await rm(join(imageDir, current, 'app/page.txt'));
    const status = await target.status(key, { verify: true });
    assert.deepEqual(status.drift, ['file /app/page.txt removed from the image root']);
    await target.repair(key);
    assert.equal(await get(url), original);
    assert.deepEqual((await target.status(key, { verify: true })).drift, []);
  });
});
