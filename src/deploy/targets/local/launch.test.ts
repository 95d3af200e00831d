import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ImageConfig } from './image-cache.js';
import { planLaunch } from './launch.js';

describe('planLaunch', () => {
  let rootfs: string;
  let hostBin: string;
  const config = (overrides: Partial<ImageConfig> = {}): ImageConfig => ({
    entrypoint: ['tool'],
    cmd: ['--serve'],
    env: ['PATH=/usr/local/bin:/usr/bin', 'MODE=image', 'EMPTY='],
    workingDir: '/app',
    ...overrides,
  });

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'valve-launch-'));
    rootfs = join(dir, 'rootfs');
    hostBin = join(dir, 'host-bin');
    for (const [folder, name] of [
      [join(rootfs, 'usr/local/bin'), 'tool'],
      [join(rootfs, 'app'), 'run.sh'],
      [hostBin, 'tool'],
    ] as const) {
      await mkdir(folder, { recursive: true });
      await writeFile(join(folder, name), '#!/bin/sh\n');
      await chmod(join(folder, name), 0o755);
    }
  });

  after(async () => {
    await rm(join(rootfs, '..'), { recursive: true, force: true });
  });

  it('runs Entrypoint + Cmd in rootfs + WorkingDir, the host PATH first', () => {
    const plan = planLaunch({ rootfs, config: config(), spec: { env: {} }, hostPath: hostBin });
    assert.equal(plan.file, join(hostBin, 'tool'), 'a host runtime wins over the image');
    assert.deepEqual(plan.args, ['--serve']);
    assert.equal(plan.cwd, join(rootfs, 'app'));
    assert.equal(
      plan.env.PATH,
      [hostBin, join(rootfs, 'usr/local/bin'), join(rootfs, 'usr/bin')].join(':'),
    );
    assert.equal(plan.env.MODE, 'image');
    assert.equal(plan.env.EMPTY, '');
  });

  it('finds programs of the image when the host has none', () => {
    const plan = planLaunch({
      rootfs,
      config: config(),
      spec: { env: {} },
      hostPath: '/nonexistent',
    });
    assert.equal(plan.file, join(rootfs, 'usr/local/bin/tool'));
    const absolute = planLaunch({
      rootfs,
      config: config({ entrypoint: ['/app/run.sh'] }),
      spec: { env: {} },
      hostPath: '',
    });
    assert.equal(absolute.file, join(rootfs, 'app/run.sh'));
  });

  it('lets the spec replace command, args and env as Kubernetes does', () => {
    const commandOnly = planLaunch({
      rootfs,
      config: config(),
      spec: { command: ['./run.sh'], env: { MODE: 'spec' } },
      hostPath: hostBin,
    });
    assert.equal(commandOnly.file, join(rootfs, 'app/run.sh'));
    assert.deepEqual(commandOnly.args, [], 'a spec command drops the image Cmd');
    assert.equal(commandOnly.env.MODE, 'spec');
    const argsOnly = planLaunch({
      rootfs,
      config: config(),
      spec: { args: ['--once'], env: {} },
      hostPath: hostBin,
    });
    assert.equal(argsOnly.file, join(hostBin, 'tool'));
    assert.deepEqual(argsOnly.args, ['--once']);
  });

  it('keeps WorkingDir inside the rootfs', () => {
    const plan = planLaunch({
      rootfs,
      config: config({ workingDir: '/../../etc' }),
      spec: { env: {} },
      hostPath: hostBin,
    });
    assert.equal(plan.cwd, join(rootfs, 'etc'));
  });

  it('says what is missing', () => {
    assert.throws(
      () =>
        planLaunch({
          rootfs,
          config: config({ entrypoint: [], cmd: [] }),
          spec: { env: {} },
          hostPath: hostBin,
        }),
      /no Entrypoint or Cmd/,
    );
    assert.throws(
      () =>
        planLaunch({
          rootfs,
          config: config({ entrypoint: ['nope'] }),
          spec: { env: {} },
          hostPath: hostBin,
        }),
      /command nope is not on the PATH/,
    );
  });
});
