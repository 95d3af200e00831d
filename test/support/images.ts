/**
 * Test images made locally, without any registry: a rootfs with Debian's static busybox
 * (`busybox-static`, installed by scripts/setup-podman.sh) and a symlink for each of its
 * applets, imported with `podman import`. Built once per machine (kept in podman's storage
 * under its name), and at most once per test process.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';

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

/** The registry calls `publishBusyboxHttpdImage` makes (a `Registry` fits). */
export interface ImageSink {
  putBlob(data: Buffer): Promise<unknown>;
  putManifest(
    repo: string,
    reference: string,
    body: Buffer,
    mediaType: string,
  ): Promise<{ digest: string }>;
}

/** `sh` as PID 1 ignores SIGTERM unless it traps it: this one stops at once on `podman stop`. */
export const versionedHttpdCommand = [
  'sh',
  '-c',
  'echo "serving $VERSION on $PORT"; httpd -f -p "$PORT" -h /www & trap "kill $!; exit 0" TERM; wait',
];

let busyboxLayer: Promise<Buffer> | null = null;

/**
 * Pushes an OCI image into `registry` under `repo:<version>` and returns it as a deploy spec
 * pins it (`<host>/<repo>@<digest>`): the busybox root filesystem as one gzip layer, and a
 * layer with /www/index.html holding `version` (no newline) and /www/healthz, served by
 * `busybox httpd` on `$PORT` (env VERSION is set too). `healthy: false` leaves out
 * /www/healthz, so a readiness probe there gets 404 for good. For the podman deploy target.
 */
export async function publishBusyboxHttpdImage(
  registry: ImageSink,
  host: string,
  repo: string,
  options: { version: string; healthy?: boolean },
): Promise<{ reference: string; repo: string; digest: string }> {
  busyboxLayer ??= (async () => {
    const scratch = mkdtempSync(join(tmpdir(), 'valve-test-layer-'));
    try {
      const tarball = join(scratch, 'rootfs.tar');
      await writeBusyboxRootfs(tarball, 'valve-test-busybox-httpd-versioned');
      return gzipSync(readFileSync(tarball));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  })();
  const scratch = mkdtempSync(join(tmpdir(), 'valve-test-layer-'));
  let www: Buffer;
  try {
    mkdirSync(join(scratch, 'www'));
    writeFileSync(join(scratch, 'www/index.html'), options.version);
    if (options.healthy !== false) writeFileSync(join(scratch, 'www/healthz'), 'ok');
    const tarball = join(scratch, 'www.tar');
    await run('tar', [
      '--numeric-owner',
      '--owner=0',
      '--group=0',
      '-C',
      scratch,
      '-cf',
      tarball,
      'www',
    ]);
    www = gzipSync(readFileSync(tarball));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  const layers = [await busyboxLayer, www];
  const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const architectures: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
  const config = Buffer.from(
    JSON.stringify({
      architecture: architectures[process.arch] ?? process.arch,
      os: 'linux',
      config: {
        Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', `VERSION=${options.version}`],
        Cmd: versionedHttpdCommand,
        WorkingDir: '/',
      },
      rootfs: { type: 'layers', diff_ids: layers.map((layer) => sha256(gunzipSync(layer))) },
    }),
  );
  for (const blob of [config, ...layers]) await registry.putBlob(blob);
  const mediaType = 'application/vnd.oci.image.manifest.v1+json';
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: sha256(config),
        size: config.length,
      },
      layers: layers.map((layer) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: sha256(layer),
        size: layer.length,
      })),
    }),
  );
  const { digest } = await registry.putManifest(repo, options.version, manifest, mediaType);
  return { reference: `${host}/${repo}@${digest}`, repo, digest };
}
