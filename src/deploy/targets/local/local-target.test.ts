import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { describeTargetContract } from '../target.case.test.js';
import type { WorkloadSpec } from '../target.js';
import { LocalTarget, type LocalTargetOptions } from './local-target.js';
import { isAlive } from './process-group.js';
import { localStateSchema } from './state-file.js';
import {
  MemoryImageSource,
  publishImage,
  publishTestApp,
  buildLayer,
  testServerSource,
} from './test-images.js';
import { ProcessTracker, get, portBase, waitForStatus } from './test-processes.js';

describeTargetContract('local', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'valve-local-contract-'));
  const source = new MemoryImageSource();
  const tracker = new ProcessTracker();
  const target = new LocalTarget({
    dataDir,
    portBase: portBase(),
    images: source,
    startTimeoutMs: 5000,
  });
  return {
    target,
    images: {
      v1: await publishTestApp(source, 'team/hello', { version: 'v1' }),
      v2: await publishTestApp(source, 'team/hello', { version: 'v2' }),
      neverReady: await publishTestApp(source, 'team/hello', { version: 'v3', healthy: false }),
      serverError: await publishTestApp(source, 'team/hello', { version: 'v4', errorRate: 1 }),
    },
    versions: { v1: 'v1', v2: 'v2' },
    afterRollout(before, after) {
      tracker.track(before);
      tracker.track(after);
      const [old] = before.instances;
      assert.ok(old && old.pid > 0);
      assert.equal(isAlive(old.pid), false, 'the v1 process is gone');
      assert.ok(after.instances.every((instance) => isAlive(instance.pid)));
    },
    async afterDelete(before) {
      tracker.track(before);
      assert.ok(
        before.instances.every((instance) => !isAlive(instance.pid)),
        'every process is gone',
      );
      const state = localStateSchema.parse(
        JSON.parse(await readFile(join(dataDir, 'targets/local/state.json'), 'utf8')),
      );
      assert.deepEqual(state.workloads, []);
      assert.deepEqual(await readdir(join(dataDir, 'targets/local/workloads')), []);
    },
    async cleanup() {
      await target.close();
      await tracker.killAll(dataDir);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
});

describe('local target: supervision and server restarts', () => {
  const key = 'team/hello/prod';
  const tracker = new ProcessTracker();
  const targets: LocalTarget[] = [];
  let dataDir: string;
  let options: LocalTargetOptions;
  let spec: WorkloadSpec;

  const newTarget = () => {
    const target = new LocalTarget(options);
    targets.push(target);
    return target;
  };
  const status = async (target: LocalTarget) => tracker.track(await target.status(key));

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'valve-local-'));
    const source = new MemoryImageSource();
    options = { dataDir, portBase: portBase(), images: source };
    spec = {
      key,
      image: await publishTestApp(source, 'team/hello', { version: 'v1' }),
      env: { GREETING: 'hi' },
      port: 8080,
      replicas: 2,
      readiness: { path: '/healthz', periodSeconds: 1 },
    };
  });

  after(async () => {
    for (const target of targets) await target.close();
    await tracker.killAll(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs every replica on its own port behind one address, round-robin', async () => {
    const target = newTarget();
    const applied = tracker.track(await target.apply(spec));
    assert.equal(applied.health, 'healthy');
    assert.equal(applied.readyReplicas, 2);
    const ports = applied.instances.map((instance) => instance.port);
    assert.equal(new Set(ports).size, 2);
    assert.ok(!ports.includes(Number(new URL(applied.url!).port)));
    assert.equal(await get(applied.url!), 'v1');
    const logs = await target.logs(key);
    for (const instance of applied.instances) {
      assert.match(
        logs,
        new RegExp(`==> ${instance.id} .*\\n.*listening on ${instance.port} as v1`),
      );
    }
  });

  it('restarts a killed instance and counts the restart', async () => {
    const target = targets[0]!;
    const before = await status(target);
    const victim = before.instances[0]!;
    process.kill(victim.pid, 'SIGKILL');
    const after = await waitForStatus(target, key, (current) => {
      const instance = current.instances.find((candidate) => candidate.id === victim.id);
      return (
        current.health === 'healthy' && instance?.restarts === 1 && instance.pid !== victim.pid
      );
    });
    tracker.track(after);
    const restarted = after.instances.find((instance) => instance.id === victim.id)!;
    assert.equal(restarted.port, victim.port, 'the instance keeps its port');
    assert.ok(isAlive(restarted.pid));
    assert.equal(await get(after.url!), 'v1');
    assert.match(await target.logs(key), /listening on \d+ as v1[\s\S]*listening on \d+ as v1/);
  });

  it('after a server restart, adopts the running processes on the same address', async () => {
    const first = targets[0]!;
    const before = await status(first);
    await first.close();
    assert.ok(
      before.instances.every((instance) => isAlive(instance.pid)),
      'close() leaves instances running',
    );
    await assert.rejects(fetch(before.url!), 'the address is down with its server');

    const second = newTarget();
    await second.recover();
    const after = await status(second);
    assert.equal(after.url, before.url);
    assert.equal(after.health, 'healthy');
    // The same instances (in any order: a restarted one may be listed last).
    const identities = (instances: typeof before.instances) =>
      instances
        .map(({ id, pid, port, restarts }) => ({ id, pid, port, restarts }))
        .sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(identities(after.instances), identities(before.instances));
    assert.equal(await get(after.url!), 'v1');
    // Adopted processes are supervised too.
    const victim = after.instances[1]!;
    process.kill(victim.pid, 'SIGKILL');
    tracker.track(
      await waitForStatus(second, key, (current) => {
        const instance = current.instances.find((candidate) => candidate.id === victim.id);
        return current.health === 'healthy' && instance?.pid !== victim.pid;
      }),
    );
  });

  it('after a server restart, restarts the processes that died meanwhile', async () => {
    const second = targets[1]!;
    const before = await status(second);
    await second.close();
    const victim = before.instances[0]!;
    process.kill(victim.pid, 'SIGKILL');
    while (isAlive(victim.pid)) await delay(20);

    const third = newTarget();
    await third.recover();
    const after = await waitForStatus(third, key, (current) => current.health === 'healthy');
    tracker.track(after);
    const restarted = after.instances.find((instance) => instance.id === victim.id)!;
    assert.notEqual(restarted.pid, victim.pid);
    assert.equal(restarted.restarts, victim.restarts + 1);
    const survivor = before.instances[1]!;
    assert.equal(
      after.instances.find((instance) => instance.id === survivor.id)?.pid,
      survivor.pid,
    );
    assert.equal(await get(after.url!), 'v1');
  });

  it('delete stops every process and forgets the workload', async () => {
    const third = targets[2]!;
    const before = await status(third);
    await third.delete(key);
    assert.ok(before.instances.every((instance) => !isAlive(instance.pid)));
    assert.equal((await third.status(key)).health, 'missing');
    assert.equal(await third.logs(key), '');
  });
});

describe('local target: images and launch', () => {
  const tracker = new ProcessTracker();
  let dataDir: string;
  let source: MemoryImageSource;
  let target: LocalTarget;

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'valve-local-images-'));
    source = new MemoryImageSource();
    target = new LocalTarget({
      dataDir,
      portBase: portBase(),
      images: source,
      startTimeoutMs: 10_000,
    });
  });

  after(async () => {
    await target.close();
    await tracker.killAll(dataDir);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('picks the host platform from an image index and caches the unpacked image', async () => {
    const image = await publishTestApp(source, 'team/multi', { version: 'multi' });
    const other = await publishTestApp(source, 'team/multi', { version: 'wrong-platform' });
    const hostArch = process.arch === 'arm64' ? 'arm64' : 'amd64';
    const otherArch = hostArch === 'arm64' ? 'amd64' : 'arm64';
    const mediaType = 'application/vnd.oci.image.index.v1+json';
    const manifest = (digest: string, architecture: string) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest,
      size: 1,
      platform: { os: 'linux', architecture },
    });
    const indexDigest = source.addManifest(
      'team/multi',
      {
        schemaVersion: 2,
        mediaType,
        manifests: [manifest(other.digest, otherArch), manifest(image.digest, hostArch)],
      },
      mediaType,
    );
    const spec: WorkloadSpec = {
      key: 'team/multi/dev',
      image: {
        reference: `localhost/team/multi@${indexDigest}`,
        repo: 'team/multi',
        digest: indexDigest,
      },
      env: {},
      port: 8080,
      replicas: 1,
    };
    const status = tracker.track(await target.apply(spec));
    assert.equal(await get(status.url!), 'multi');
    const cached = await readdir(join(dataDir, 'targets/local/images'));
    assert.deepEqual(cached, [indexDigest.slice('sha256:'.length)]);
    await target.delete(spec.key);
  });

  it('runs spec command and args instead of the image entrypoint, with the spec env', async () => {
    const layer = await buildLayer([
      { name: 'srv/', type: 'directory', mode: 0o755 },
      { name: 'srv/main.js', content: testServerSource },
    ]);
    const image = publishImage(
      source,
      'team/custom',
      {
        config: {
          Entrypoint: ['false'],
          Cmd: ['never'],
          WorkingDir: '/srv',
          Env: ['VERSION=image'],
        },
      },
      [layer],
    );
    const spec: WorkloadSpec = {
      key: 'team/custom/dev',
      image,
      command: ['node'],
      args: ['main.js'],
      env: { VERSION: 'from-spec' },
      port: 8080,
      replicas: 1,
    };
    const status = tracker.track(await target.apply(spec));
    assert.equal(await get(status.url!), 'from-spec');
    await target.delete(spec.key);
  });

  it('a crashing version fails its apply with the reason and its output', async () => {
    const layer = await buildLayer([
      { name: 'app/server.js', content: "console.error('boom: missing config'); process.exit(3);" },
    ]);
    const image = publishImage(
      source,
      'team/crash',
      { config: { Entrypoint: ['node'], Cmd: ['server.js'], WorkingDir: '/app' } },
      [layer],
    );
    const spec: WorkloadSpec = { key: 'team/crash/dev', image, env: {}, port: 8080, replicas: 1 };
    await assert.rejects(target.apply(spec), /exited with code 3[\s\S]*boom: missing config/);
    const status = await target.status(spec.key);
    assert.equal(status.health, 'missing', 'nothing ever served');
    assert.match(status.message ?? '', /exited with code 3/);
    assert.deepEqual(status.instances, []);
    await target.delete(spec.key);
  });

  it('fails clearly when the image is not in the registry', async () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    const spec: WorkloadSpec = {
      key: 'team/absent/dev',
      image: { reference: `localhost/team/absent@${digest}`, repo: 'team/absent', digest },
      env: {},
      port: 8080,
      replicas: 1,
    };
    await assert.rejects(target.apply(spec), { code: 'DEPLOY_IMAGE_UNAVAILABLE' });
    await target.delete(spec.key);
  });

  it('refuses an invalid spec', async () => {
    await assert.rejects(
      target.apply({ key: '', env: {}, port: 0, replicas: 1 } as unknown as WorkloadSpec),
      { code: 'INPUT_INVALID' },
    );
  });
});
