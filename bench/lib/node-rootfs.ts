/**
 * A root filesystem that runs node in a container without pulling a base image: this host's
 * node binary, the shared libraries `ldd` names (with the loader), /etc/passwd and /etc/group,
 * /tmp and /app, as a tar owned by root. Import it as a base (POST .../images/import).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** Writes the tar to `tarball`; returns the host files it holds. */
export function writeNodeRootfs(tarball: string): string[] {
  const node = spawnSync('sh', ['-c', 'readlink -f "$(command -v node)"'], {
    encoding: 'utf8',
  }).stdout.trim();
  if (!node) throw new Error('node is not on the PATH');
  const ldd = spawnSync('ldd', [node], { encoding: 'utf8' });
  if (ldd.status !== 0) throw new Error(`ldd ${node}: ${ldd.stderr}`);
  // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`.
  const libraries = [...ldd.stdout.matchAll(/(\/\S+) \(0x[0-9a-f]+\)/g)].map((match) => match[1]!);
  const root = mkdtempSync(join(tmpdir(), 'valve-bench-rootfs-'));
  try {
    const files = [node, ...libraries];
    for (const file of [...files, ...(node === '/usr/bin/node' ? [] : ['/usr/bin/node'])]) {
      mkdirSync(join(root, dirname(file)), { recursive: true });
      cpSync(file === '/usr/bin/node' ? node : file, join(root, file), { dereference: true });
    }
    for (const dir of ['etc', 'tmp', 'app', 'root'])
      mkdirSync(join(root, dir), { recursive: true });
    chmodSync(join(root, 'tmp'), 0o1777);
    writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
    const tar = spawnSync(
      'tar',
      ['--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', tarball, '.'],
      { encoding: 'utf8' },
    );
    if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
    return files;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
