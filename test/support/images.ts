/**
 * Test images made locally, without any registry: a rootfs with Debian's static busybox
 * (`busybox-static`, installed by scripts/setup-podman.sh) and a symlink for each of its
 * applets, imported with `podman import`. Built once per machine (kept in podman's storage
 * under its name), and at most once per test process.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const BUSYBOX = '/bin/busybox';

export const busyboxImage = 'localhost/valve-test/busybox:1';
/** Busybox whose default command serves `$GREETING` over HTTP on port 80 (for `services:`). */
export const busyboxHttpImage = 'localhost/valve-test/busybox-httpd:1';

const building = new Map<string, Promise<string>>();

export function ensureBusyboxImage(): Promise<string> {
  return ensureImage(busyboxImage, ['CMD ["sh"]']);
}

export function ensureBusyboxHttpImage(): Promise<string> {
  return ensureImage(busyboxHttpImage, [
    'CMD ["sh", "-c", "mkdir -p /www && echo \\"${GREETING:-hello}\\" > /www/index.html && exec httpd -f -p 80 -h /www"]',
    'EXPOSE 80',
  ]);
}

/** Whether the podman CLI is installed (the podman tests skip without it). */
export async function podmanInstalled(): Promise<boolean> {
  try {
    await run('podman', ['--version']);
    return true;
  } catch {
    return false;
  }
}

function ensureImage(name: string, changes: string[]): Promise<string> {
  let pending = building.get(name);
  if (!pending) {
    pending = build(name, changes);
    building.set(name, pending);
    pending.catch(() => building.delete(name));
  }
  return pending;
}

async function build(name: string, changes: string[]): Promise<string> {
  const exists = await run('podman', ['image', 'exists', name]).then(
    () => true,
    () => false,
  );
  if (exists) return name;
  const scratch = mkdtempSync(join(tmpdir(), 'valve-test-image-'));
  try {
    const tarball = join(scratch, 'rootfs.tar');
    await writeBusyboxRootfs(tarball, name);
    const changeArgs = ['ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin', ...changes].flatMap((c) => [
      '--change',
      c,
    ]);
    await run('podman', ['import', '--quiet', ...changeArgs, tarball, name]);
    return name;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Writes the busybox root filesystem the test images are made of as a tar to `tarball`: a
 * static busybox with a symlink for each applet, /etc/passwd and /etc/group, and
 * /etc/valve-test-image holding `marker` (lets tests tell the image's filesystem from the
 * host's). Owners are root, numerically.
 */
export async function writeBusyboxRootfs(tarball: string, marker: string): Promise<void> {
  if (!existsSync(BUSYBOX))
    throw new Error(`${BUSYBOX} is missing: install busybox-static (scripts/setup-podman.sh)`);
  const scratch = mkdtempSync(join(tmpdir(), 'valve-test-rootfs-'));
  try {
    const root = join(scratch, 'rootfs');
    for (const dir of ['bin', 'etc', 'root', 'tmp', 'var/tmp', 'usr/bin', 'usr/sbin', 'sbin'])
      mkdirSync(join(root, dir), { recursive: true });
    await run('cp', [BUSYBOX, join(root, 'bin/busybox')]);
    const { stdout } = await run(BUSYBOX, ['--list-full']);
    for (const applet of stdout.split('\n').filter(Boolean)) {
      const path = join(root, applet);
      if (!existsSync(path)) symlinkSync('/bin/busybox', path);
    }
    writeFileSync(
      join(root, 'etc/passwd'),
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    );
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
    writeFileSync(join(root, 'etc/valve-test-image'), `${marker}\n`);
    await run('chmod', ['1777', join(root, 'tmp'), join(root, 'var/tmp')]);
    await run('tar', [
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      '-C',
      root,
      '-cf',
      tarball,
      '.',
    ]);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
