import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, readdir, readlink, rm, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';

/**
 * Applies one OCI layer (a tar, maybe gzipped) onto a root directory: regular files,
 * directories, symlinks and hard links, with OCI whiteouts (`.wh.<name>` deletes a lower
 * file, `.wh..wh..opq` empties a lower directory). Paths are resolved as if the root were
 * `/` (symlinks included), so no entry can write outside it; names with `..` escaping the
 * root are refused.
 */

export type LayerCompression = 'gzip' | 'none';

export class LayerError extends Error {
  override name = 'LayerError';
}

/** One entry of a layer: its header and a stream of its content. */
type LayerEntry = tar.Extract extends AsyncIterable<infer Entry> ? Entry : never;

const whiteoutPrefix = '.wh.';
const opaqueWhiteout = '.wh..wh..opq';

export async function extractLayer(
  root: string,
  blob: NodeJS.ReadableStream,
  options: { digest: string; compression: LayerCompression },
): Promise<void> {
  const extract = tar.extract();
  const piping = pipeline(
    blob as Readable,
    digestCheck(options.digest),
    options.compression === 'gzip' ? createGunzip() : new PassThrough(),
    extract,
  );
  // Surfaced below; attached now so an early failure is never an unhandled rejection.
  piping.catch(() => {});
  const layer = new LayerState(root);
  try {
    for await (const entry of extract) {
      await layer.apply(entry);
    }
  } catch (error) {
    extract.destroy();
    await piping.catch(() => {});
    throw error;
  }
  await piping;
}

/** Passes bytes through and fails at the end when they do not hash to `digest`. */
function digestCheck(digest: string): Transform {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const expected = digest.slice(colon + 1);
  let hash: ReturnType<typeof createHash>;
  try {
    hash = createHash(algorithm);
  } catch {
    throw new LayerError(`unsupported digest algorithm in ${digest}`);
  }
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = hash.digest('hex');
      callback(
        actual === expected
          ? null
          : new LayerError(
              `layer ${digest} does not match its digest (got ${algorithm}:${actual})`,
            ),
      );
    },
  });
}

class LayerState {
  /** Paths this layer wrote, with their ancestors: whiteouts only hide lower layers. */
  private readonly touched = new Set<string>();

  constructor(private readonly root: string) {}

  async apply(entry: LayerEntry): Promise<void> {
    const { header } = entry;
    const name = entryPath(header.name);
    if (name === null) {
      entry.resume(); // the root itself
      return;
    }
    const base = posix.basename(name);
    const parent = posix.dirname(name);
    if (base === opaqueWhiteout) {
      entry.resume();
      await this.emptyLowerContents(parent === '.' ? '' : parent);
      return;
    }
    if (base.startsWith(whiteoutPrefix)) {
      entry.resume();
      const hidden = posix.join(parent, base.slice(whiteoutPrefix.length));
      if (!this.touched.has(hidden))
        await rm(await this.resolve(hidden), { recursive: true, force: true });
      return;
    }
    this.touch(name);
    const target = await this.resolve(name);
    const mode = (header.mode ?? 0o644) & 0o777;
    switch (header.type) {
      case 'directory': {
        const existing = await lstatOrNull(target);
        if (existing && !existing.isDirectory()) await rm(target, { recursive: true, force: true });
        // Owner rwx always, so later layers can write here and the cache can be removed.
        await mkdir(target, { recursive: true });
        await chmod(target, mode | 0o700);
        entry.resume();
        return;
      }
      case 'file':
      case 'contiguous-file': {
        await this.replace(target);
        await pipeline(entry, createWriteStream(target, { flags: 'wx', mode: mode | 0o600 }));
        return;
      }
      case 'symlink': {
        entry.resume();
        await this.replace(target);
        await symlink(header.linkname ?? '', target);
        return;
      }
      case 'link': {
        entry.resume();
        const linked = entryPath(header.linkname ?? '');
        if (linked === null) throw new LayerError(`hard link ${name} has no target`);
        const source = await this.resolve(linked);
        await this.replace(target);
        await link(source, target);
        return;
      }
      default:
        // Devices and fifos cannot be made without privileges and apps do not need them.
        entry.resume();
    }
  }

  private touch(name: string): void {
    for (let path = name; path !== '.' && path !== ''; path = posix.dirname(path)) {
      this.touched.add(path);
    }
  }

  /** Makes room for a new entry: removes what is there and makes sure the parent exists. */
  private async replace(target: string): Promise<void> {
    await rm(target, { recursive: true, force: true });
    await mkdir(join(target, '..'), { recursive: true });
  }

  /** Host path of `name` inside the root; parent symlinks resolve within the root. */
  private resolve(name: string): Promise<string> {
    return resolveInRoot(this.root, name);
  }

  private async emptyLowerContents(dir: string): Promise<void> {
    const hostDir = dir === '' ? this.root : await this.resolve(dir);
    let names: string[];
    try {
      names = await readdir(hostDir);
    } catch {
      return;
    }
    for (const child of names) {
      const childPath = dir === '' ? child : `${dir}/${child}`;
      const hostPath = join(hostDir, child);
      if (!this.touched.has(childPath)) {
        await rm(hostPath, { recursive: true, force: true });
      } else if ((await lstat(hostPath)).isDirectory()) {
        await this.emptyLowerContents(childPath);
      }
    }
  }
}

/** Normalized path of a tar entry relative to the root; null for the root; refuses escapes. */
export function entryPath(raw: string): string | null {
  const relative = posix.normalize(raw.replace(/^\/+/, ''));
  if (relative === '..' || relative.startsWith('../')) {
    throw new LayerError(`layer entry ${JSON.stringify(raw)} points outside the image root`);
  }
  const trimmed = relative.replace(/\/+$/, '');
  return trimmed === '' || trimmed === '.' ? null : trimmed;
}

/**
 * Resolves `name` (relative to the root) to a host path, following symlinks in its parent
 * directories as if the root were `/` (absolute targets restart at the root, `..` stops at
 * it). The last component is not followed: it is what an entry creates or replaces.
 */
export async function resolveInRoot(root: string, name: string): Promise<string> {
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  const last = parts.pop();
  if (last === undefined) return root;
  if (last === '..') throw new LayerError(`layer entry ${JSON.stringify(name)} is not a file name`);
  const resolved: string[] = [];
  let pending = parts;
  let linksFollowed = 0;
  while (pending.length > 0) {
    const [part, ...rest] = pending as [string, ...string[]];
    pending = rest;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const hostPath = join(root, ...resolved, part);
    const stats = await lstatOrNull(hostPath);
    if (stats?.isSymbolicLink()) {
      if (++linksFollowed > 40) throw new LayerError(`too many symlinks resolving ${name}`);
      const target = await readlink(hostPath);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...target.split('/'), ...pending];
      continue;
    }
    resolved.push(part);
  }
  return join(root, ...resolved, last);
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
