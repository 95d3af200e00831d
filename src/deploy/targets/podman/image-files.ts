import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { PodmanError, type PodmanCli } from './cli.js';
import { removeContainers } from './containers.js';

/**
 * The files of an image and of a container as tar streams out of podman show them: what the
 * file drift check (file-drift.ts) compares a container's changed paths with. Only podman's
 * command line is used (`create`, `cp`), so this works rootless and remote alike, without
 * mounting podman's storage. (`podman export` would do for the image too, but it opens
 * /dev/stdout by name, which fails on the socket Node gives a child for its stdout.)
 */

/** A regular file's permission bits, size and content; a symlink's target. */
export type ImageFile =
  | { type: 'file'; mode: number; size: number; sha256: string }
  | { type: 'symlink'; target: string };

/** The image's regular files and symlinks, by absolute path (`/app/server.js`). */
export type ImageFileIndex = Map<string, ImageFile>;

/**
 * Indexes the image's root as a container of it starts out: a container is created (never
 * started, labelled `label` so an interrupted index can be cleaned up) and its root copied
 * out as a tar (`podman cp <container>:/ -`); each regular file is hashed as it streams by.
 * Reads the whole image once.
 */
export async function indexImage(
  cli: PodmanCli,
  image: string,
  label: { key: string; value: string },
): Promise<ImageFileIndex> {
  const created = await cli.check(
    [
      'create',
      '--pull=never',
      '--label',
      `${label.key}=${label.value}`,
      // Never run: only its root is read. An explicit command, as the image may have none.
      '--entrypoint',
      '["/valve-index-only"]',
      image,
    ],
    { timeoutMs: 60_000 },
  );
  const container = created.trim().split('\n').at(-1) ?? '';
  try {
    return await cli.stream(['cp', `${container}:/`, '-'], readIndex, {
      timeoutMs: 30 * 60_000,
    });
  } finally {
    await removeContainers(cli, [container], 0);
  }
}

async function readIndex(stdout: Readable): Promise<ImageFileIndex> {
  const index: ImageFileIndex = new Map();
  const extract = tar.extract();
  const piping = pipeline(stdout, extract);
  piping.catch(() => {});
  for await (const entry of extract) {
    const { header } = entry;
    const path = pathInImage(header.name);
    if (header.type === 'file' || header.type === 'contiguous-file') {
      index.set(path, {
        type: 'file',
        mode: (header.mode ?? 0) & 0o7777,
        size: header.size ?? 0,
        sha256: await sha256(entry),
      });
      continue;
    }
    entry.resume();
    if (header.type === 'symlink')
      index.set(path, { type: 'symlink', target: header.linkname ?? '' });
    else if (header.type === 'link') {
      // A hard link: the same file as one listed before it.
      const linked = index.get(pathInImage(header.linkname ?? ''));
      if (linked) index.set(path, linked);
    }
  }
  await piping;
  return index;
}

/** A file of a container as `podman cp` reads it (which follows a symlink at the path). */
export type ContainerFile =
  | { type: 'file'; mode: number; size: number; sha256: string }
  | { type: 'other' }
  | { type: 'missing' };

/**
 * Reads `path` out of the container (`podman cp <container>:<path> -`) and hashes it; a
 * directory is not read past its first entry.
 */
export async function readContainerFile(
  cli: PodmanCli,
  container: string,
  path: string,
): Promise<ContainerFile> {
  try {
    return await cli.stream(
      ['cp', `${container}:${path}`, '-'],
      async (stdout) => {
        const extract = tar.extract();
        const piping = pipeline(stdout, extract);
        piping.catch(() => {});
        for await (const entry of extract) {
          const { header } = entry;
          if (header.type !== 'file' && header.type !== 'contiguous-file') return { type: 'other' };
          return {
            type: 'file',
            mode: (header.mode ?? 0) & 0o7777,
            size: header.size ?? 0,
            sha256: await sha256(entry),
          };
        }
        await piping;
        return { type: 'missing' };
      },
      { timeoutMs: 10 * 60_000 },
    );
  } catch (error) {
    // Gone since podman diff listed it (or now a symlink to nowhere).
    if (error instanceof PodmanError && /could not be found/i.test(error.result.stderr))
      return { type: 'missing' };
    throw error;
  }
}

/** `etc/passwd`, `./etc/passwd` and `/etc/passwd/` are `/etc/passwd`. */
function pathInImage(name: string): string {
  const trimmed = name.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  return `/${trimmed}`;
}

async function sha256(stream: AsyncIterable<unknown>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
