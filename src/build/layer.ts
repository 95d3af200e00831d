import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable, Transform, pipeline } from 'node:stream';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Descriptor, StoredBlob } from '../registry/index.js';
import { mediaTypes } from '../registry/index.js';
import type { ContextEntry } from './context-files.js';

export interface LayerOptions {
  /** Absolute, normalized directory of the image the entries land in, e.g. `/app`. */
  workingDir: string;
  /** The one timestamp every entry carries (0, or SOURCE_DATE_EPOCH). */
  mtime: Date;
}

export interface BuiltLayer {
  /** The compressed blob, as the manifest lists it. */
  descriptor: Descriptor;
  /** sha256 of the uncompressed tar, as the config's rootfs.diff_ids lists it. */
  diffId: string;
}

/** Where the compressed bytes go; the registry's `putBlob`. */
export type BlobSink = (data: NodeJS.ReadableStream) => Promise<StoredBlob>;

/**
 * Packs `entries` into one gzip tar layer under `workingDir`, streaming it into `store` while
 * hashing both the tar (diff ID) and the gzip (blob digest).
 *
 * Reproducible: the entries come sorted, every header has the same mtime, uid/gid 0, no user
 * or group names, and a mode from the file's execute bit only; zlib writes no timestamp or
 * file name into the gzip header, and the compression level is fixed.
 */
export async function packLayer(
  entries: readonly ContextEntry[],
  options: LayerOptions,
  store: BlobSink,
): Promise<BuiltLayer> {
  const pack = tar.pack();
  const diffHash = createHash('sha256');
  const hashTar = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      diffHash.update(chunk);
      callback(null, chunk);
    },
  });
  // Errors anywhere in the chain destroy the gzip stream, so they reach `store` as a failed
  // read and reject it; the callback has nothing left to do.
  const compressed = pipeline(Readable.from(pack), hashTar, createGzip({ level: 6 }), () => {});

  // A pack error reaches `store` through the iterator of Readable.from; this listener only
  // keeps a second emission (after the consumer has stopped) from crashing the process.
  pack.on('error', () => undefined);
  let entryError: unknown;
  const writing = writeEntries(pack, entries, options).then(
    () => pack.finalize(),
    (error: unknown) => {
      entryError = error;
      pack.destroy(error as Error);
    },
  );
  let blob: StoredBlob;
  try {
    blob = await store(compressed);
  } catch (error) {
    // The entry's error names the file; the stream's is only its echo.
    throw entryError ?? error;
  }
  await writing;

  return {
    descriptor: { mediaType: mediaTypes.ociLayerGzip, digest: blob.digest, size: blob.size },
    diffId: `sha256:${diffHash.digest('hex')}`,
  };
}

async function writeEntries(
  pack: tar.Pack,
  entries: readonly ContextEntry[],
  { workingDir, mtime }: LayerOptions,
): Promise<void> {
  const common = { uid: 0, gid: 0, uname: '', gname: '', mtime };
  const prefix = workingDir.replace(/^\/+/, '').replace(/\/+$/, '');
  // The working directory and its parents, so unpacking creates them with fixed modes.
  const parts = prefix ? prefix.split('/') : [];
  for (let i = 1; i <= parts.length; i++) {
    await addEntry(pack, {
      ...common,
      name: `${parts.slice(0, i).join('/')}/`,
      type: 'directory',
      mode: 0o755,
    });
  }
  for (const entry of entries) {
    const name = prefix ? `${prefix}/${entry.path}` : entry.path;
    if (entry.type === 'directory') {
      await addEntry(pack, { ...common, name: `${name}/`, type: 'directory', mode: 0o755 });
    } else if (entry.type === 'symlink') {
      await addEntry(pack, {
        ...common,
        name,
        type: 'symlink',
        mode: 0o777,
        linkname: entry.linkname ?? '',
      });
    } else {
      const header = {
        ...common,
        name,
        type: 'file' as const,
        size: entry.size,
        mode: entry.executable ? 0o755 : 0o644,
      };
      try {
        await addEntry(pack, header, createReadStream(entry.source));
      } catch (error) {
        const reason =
          (error as Error).message === 'Size mismatch'
            ? 'it changed while being read'
            : (error as Error).message;
        throw new Error(`cannot add ${entry.path} to the layer: ${reason}`, { cause: error });
      }
    }
  }
}

/** Adds one entry; resolves once tar-stream has taken all of it. */
async function addEntry(
  pack: tar.Pack,
  header: Partial<tar.Header> & { name: string },
  content?: Readable,
): Promise<void> {
  if (!content) {
    await new Promise<void>((resolve, reject) => {
      pack.entry(header, Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
    });
    return;
  }
  let settle!: { resolve: () => void; reject: (error: unknown) => void };
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  // Awaited below; this only keeps an early failure from counting as an unhandled rejection.
  done.catch(() => undefined);
  const sink = pack.entry(header, (error) => (error ? settle.reject(error) : settle.resolve()));
  // A failed entry (unreadable file, size changed while read) is reported here and through
  // the callback; both settle `done`, and the pack itself is destroyed by tar-stream.
  sink.on('error', (error: Error) => settle.reject(error));
  try {
    for await (const chunk of content) {
      // tar-stream's sink is a streamx Writable: honour its backpressure, and stop waiting
      // when the entry fails (e.g. the file changed size while it was read).
      if (!sink.write(chunk)) {
        await Promise.race([
          new Promise<void>((resolve) => sink.once('drain', () => resolve())),
          done,
        ]);
      }
    }
    sink.end(undefined);
  } catch (error) {
    content.destroy();
    sink.destroy(error as Error);
    throw error;
  }
  await done;
}
