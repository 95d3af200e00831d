import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * What an unpacked image root held when it was unpacked: for every regular file its size,
 * mtime, mode and sha256, for every symlink its target. Checking it again stats every file
 * and hashes only those whose size, mtime or mode moved, so a check of an unchanged root
 * costs one lstat per file. Files added later are not reported: apps may write into their
 * working directory (the root is read-only by convention only), and a new file changes none
 * of the image's own.
 */

export type FileEntry =
  | { type: 'file'; size: number; mtimeMs: number; mode: number; sha256: string }
  | { type: 'symlink'; target: string };

/** Keyed by the path inside the image, e.g. `/app/server.js`. */
export type FileIndex = Record<string, FileEntry>;

export async function indexFiles(rootfs: string): Promise<FileIndex> {
  const index: FileIndex = {};
  const walk = async (dir: string, inside: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const host = join(dir, entry.name);
      const path = `${inside}/${entry.name}`;
      if (entry.isDirectory()) await walk(host, path);
      else if (entry.isSymbolicLink())
        index[path] = { type: 'symlink', target: await readlink(host) };
      else if (entry.isFile()) {
        const stat = await lstat(host);
        index[path] = {
          type: 'file',
          size: stat.size,
          mtimeMs: stat.mtimeMs,
          mode: stat.mode,
          sha256: await hashFile(host),
        };
      }
    }
  };
  await walk(rootfs, '');
  return index;
}

/**
 * How the root differs from its index, one sentence per file ("file /app/server.js changed in
 * the image root"). A file whose stat moved but whose content did not (touched) is updated in
 * `index`, so it is not hashed again.
 */
export async function changedFiles(rootfs: string, index: FileIndex): Promise<string[]> {
  const changes: string[] = [];
  for (const [path, expected] of Object.entries(index)) {
    const host = join(rootfs, path);
    let stat;
    try {
      stat = await lstat(host);
    } catch {
      changes.push(`file ${path} removed from the image root`);
      continue;
    }
    if (expected.type === 'symlink') {
      if (!stat.isSymbolicLink() || (await readlink(host)) !== expected.target) {
        changes.push(`file ${path} changed in the image root`);
      }
      continue;
    }
    if (!stat.isFile()) {
      changes.push(`file ${path} changed in the image root`);
      continue;
    }
    if (stat.mode !== expected.mode) {
      changes.push(`file ${path} changed mode in the image root`);
      continue;
    }
    if (stat.size === expected.size && stat.mtimeMs === expected.mtimeMs) continue;
    if (stat.size === expected.size && (await hashFile(host)) === expected.sha256) {
      expected.mtimeMs = stat.mtimeMs;
      continue;
    }
    changes.push(`file ${path} changed in the image root`);
  }
  return changes;
}

function hashFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}
