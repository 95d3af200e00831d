import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, mkdir, realpath, rm, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { isInside, type WorkspaceEntry } from './workspace-files.js';

/**
 * The gzip tar archives behind caches and artifacts: packing selected workspace entries
 * (regular files and symlinks) and unpacking them into a directory without ever writing
 * outside it.
 */

export interface ArchivedFile {
  /** Path inside the archive (POSIX, relative). */
  path: string;
  size: number;
  /** sha256 of the content, hex. */
  sha256: string;
  mode: number;
}

export interface WrittenArchive {
  /** Bytes of the compressed archive. */
  size: number;
  /** `sha256:<hex>` of the compressed archive. */
  digest: string;
  /** Regular files, in archive order. */
  files: ArchivedFile[];
  /** Symlinks, in archive order. */
  links: { path: string; target: string }[];
}

export interface PackOptions {
  /** Workspace-relative directory the entry names are relative to (`''`: the workspace). */
  root: string;
  /** zlib level, 0-9. */
  level: number;
  signal?: AbortSignal;
}

// Every entry carries the same timestamp: the archive depends only on names and contents.
const EPOCH = new Date(0);

/** Writes `entries` as a gzip tar to `file` (the caller renames it into place). */
export async function writeArchive(
  entries: readonly WorkspaceEntry[],
  file: string,
  options: PackOptions,
): Promise<WrittenArchive> {
  const pack = tar.pack();
  const archiveHash = createHash('sha256');
  let size = 0;
  const writing = pipeline(
    pack,
    createGzip({ level: options.level }),
    tap((chunk) => {
      archiveHash.update(chunk);
      size += chunk.length;
    }),
    createWriteStream(file, { flags: 'wx', mode: 0o600 }),
    { signal: options.signal },
  );
  // Awaited below; this keeps an early failure from counting as unhandled meanwhile.
  writing.catch(() => undefined);
  const files: ArchivedFile[] = [];
  const links: WrittenArchive['links'] = [];
  try {
    for (const entry of entries) {
      options.signal?.throwIfAborted();
      const name = options.root ? posix.relative(options.root, entry.path) : entry.path;
      if (entry.type === 'symlink') {
        await addEntry(pack, {
          name,
          type: 'symlink',
          linkname: entry.linkname ?? '',
          mode: 0o777,
          mtime: EPOCH,
        });
        links.push({ path: name, target: entry.linkname ?? '' });
        continue;
      }
      const hash = createHash('sha256');
      const mode = entry.mode & 0o111 ? 0o755 : 0o644;
      try {
        await addEntry(
          pack,
          { name, type: 'file', size: entry.size, mode, mtime: EPOCH },
          createReadStream(entry.source).pipe(tap((chunk) => hash.update(chunk))),
        );
      } catch (error) {
        const reason =
          (error as Error).message === 'Size mismatch'
            ? 'it changed while being read'
            : (error as Error).message;
        throw new Error(`cannot archive ${entry.path}: ${reason}`, { cause: error });
      }
      files.push({ path: name, size: entry.size, sha256: hash.digest('hex'), mode });
    }
    pack.finalize();
  } catch (error) {
    pack.destroy(error as Error);
    await writing.catch(() => undefined);
    throw error;
  }
  await writing;
  return { size, digest: `sha256:${archiveHash.digest('hex')}`, files, links };
}

export interface ExtractOptions {
  /**
   * When given, every regular file must be listed with its size and sha256, and every listed
   * file must be in the archive; anything else (symlinks included) is refused.
   */
  expect?: ReadonlyMap<string, { size: number; sha256: string }>;
  signal?: AbortSignal;
}

/**
 * Unpacks a gzip tar into `dest` (created if missing): regular files (replacing what is there)
 * and symlinks. Entry names that leave `dest`, and parents that resolve outside it through a
 * symlink, are refused; other entry types (devices, hard links) too. Returns the paths
 * written.
 */
export async function extractArchive(
  archive: string,
  dest: string,
  options: ExtractOptions = {},
): Promise<string[]> {
  await mkdir(dest, { recursive: true });
  const realDest = await realpath(dest);
  const extract = tar.extract();
  const reading = pipeline(createReadStream(archive), createGunzip(), extract, {
    signal: options.signal,
  });
  reading.catch(() => undefined);
  const written: string[] = [];
  try {
    for await (const entry of extract) {
      const { header } = entry;
      const name = entryName(header.name);
      if (header.type === 'directory') {
        entry.resume();
        if (name) await prepareParent(realDest, `${name}/.`);
        continue;
      }
      if (!name) throw new Error(`archive entry ${JSON.stringify(header.name)} has no name`);
      if (header.type === 'symlink') {
        entry.resume();
        if (options.expect)
          throw new Error(`archive entry ${name} is a symlink, not a listed file`);
        const target = await prepareTarget(realDest, name);
        await symlink(header.linkname ?? '', target);
      } else if (header.type === 'file' || header.type === 'contiguous-file') {
        const expected = options.expect?.get(name);
        if (options.expect && !expected) {
          throw new Error(`archive entry ${name} is not in the artifact's file list`);
        }
        const target = await prepareTarget(realDest, name);
        const hash = createHash('sha256');
        let size = 0;
        await pipeline(
          entry,
          tap((chunk) => {
            hash.update(chunk);
            size += chunk.length;
          }),
          createWriteStream(target, {
            flags: 'wx',
            mode: ((header.mode ?? 0o644) & 0o755) | 0o600,
          }),
        );
        if (expected && (expected.size !== size || expected.sha256 !== hash.digest('hex'))) {
          throw new Error(`${name} does not match its recorded size and sha256`);
        }
      } else {
        throw new Error(`archive entry ${name} is a ${header.type}, which is not supported`);
      }
      written.push(name);
    }
  } catch (error) {
    extract.destroy();
    await reading.catch(() => undefined);
    throw error;
  }
  await reading;
  if (options.expect) {
    const seen = new Set(written);
    const missing = [...options.expect.keys()].filter((path) => !seen.has(path));
    if (missing.length) throw new Error(`archive lacks ${missing.slice(0, 3).join(', ')}`);
  }
  return written;
}

/** Normalized relative name of an entry; refuses names that leave the destination. */
function entryName(raw: string): string {
  const name = posix.normalize(raw).replace(/\/+$/, '');
  if (raw.startsWith('/') || name === '..' || name.startsWith('../') || raw.includes('\0')) {
    throw new Error(`archive entry ${JSON.stringify(raw)} points outside the destination`);
  }
  return name === '.' ? '' : name;
}

/**
 * Host path for entry `name`: its parent directories exist (made as needed) and resolve
 * inside `realDest`, and nothing is left at the path itself (a symlink there is removed, not
 * followed).
 */
async function prepareTarget(realDest: string, name: string): Promise<string> {
  const parent = await prepareParent(realDest, name);
  const target = join(parent, posix.basename(name));
  await rm(target, { recursive: true, force: true });
  return target;
}

async function prepareParent(realDest: string, name: string): Promise<string> {
  let current = realDest;
  for (const part of name.split('/').slice(0, -1)) {
    const next = join(current, part);
    const stats = await lstatOrNull(next);
    if (!stats) {
      await mkdir(next);
      current = next;
    } else if (stats.isDirectory()) {
      current = next;
    } else if (stats.isSymbolicLink()) {
      const real = await realpath(next).catch(() => null);
      if (!real || !isInside(realDest, real) || !(await lstat(real)).isDirectory()) {
        throw new Error(`archive entry ${name} would be written through the symlink ${part}`);
      }
      current = real;
    } else {
      await rm(next, { force: true });
      await mkdir(next);
      current = next;
    }
  }
  return current;
}

/** Adds one entry; resolves once tar-stream has taken all of it. */
async function addEntry(
  pack: tar.Pack,
  header: Partial<tar.Header> & { name: string },
  content?: NodeJS.ReadableStream,
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve());
    if (!content) {
      pack.entry(header, Buffer.alloc(0), done);
      return;
    }
    pipeline(content, pack.entry(header, done)).catch(reject);
  });
}

function tap(onChunk: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      onChunk(chunk);
      callback(null, chunk);
    },
  });
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}
