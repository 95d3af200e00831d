import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import {
  BlobStore,
  writeHashed,
  type BlobRange,
  type BlobSource,
  type StoredBlob,
} from './blob-store.js';
import { RegistryError } from './errors.js';
import { readFileIfExists, sizeIfExists, writeFileDurably } from './durable-fs.js';
import { sha256Hex, validateRepositoryName } from './names.js';

export interface UploadStatus {
  id: string;
  repo: string;
  /** Bytes received so far; the spec's `Range: 0-<size-1>`. */
  size: number;
}

interface SessionState {
  repo: string;
  size: number;
  /** Running sha256 of the bytes so far; null after a restart until it is rebuilt from disk. */
  hash: Hash | null;
}

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Resumable blob uploads (the spec's POST, PATCH, PUT session). Each session is a directory
 * `uploads/<uuid>/` with `info.json` (its repository) and `data` (the bytes so far, fsynced
 * after every chunk), so a session survives a restart. The bytes become a blob only when the
 * closing PUT's digest matches; until then nothing is visible under any digest.
 */
export class UploadSessions {
  private readonly dir: string;
  private readonly live = new Map<string, SessionState>();
  private readonly locks = new Map<string, Promise<void>>();

  constructor(
    root: string,
    private readonly blobs: BlobStore,
    /** Called once the blob is stored, to make it part of the session's repository. */
    private readonly onStored: (repo: string, digest: string) => Promise<void>,
  ) {
    this.dir = path.join(root, 'uploads');
  }

  async start(repo: string): Promise<UploadStatus> {
    validateRepositoryName(repo);
    const id = randomUUID();
    const sessionDir = path.join(this.dir, id);
    await mkdir(sessionDir, { recursive: true });
    await (await open(path.join(sessionDir, 'data'), 'wx')).close();
    await writeFileDurably(
      path.join(sessionDir, 'info.json'),
      JSON.stringify({ repo, startedAt: new Date().toISOString() }),
    );
    this.live.set(id, { repo, size: 0, hash: createHash('sha256') });
    return { id, repo, size: 0 };
  }

  async status(repo: string, id: string): Promise<UploadStatus> {
    const state = await this.load(repo, id);
    return { id, repo, size: state.size };
  }

  /**
   * Appends a chunk. With `range` (the request's Content-Range) the chunk must start where the
   * upload stands (else 416) and be exactly that long; a failed chunk is rolled back entirely.
   */
  append(repo: string, id: string, data: BlobSource, range?: BlobRange): Promise<UploadStatus> {
    return this.withLock(id, async () => {
      const state = await this.load(repo, id);
      await this.appendLocked(id, state, data, range);
      return { id, repo, size: state.size };
    });
  }

  /** Closes the session: an optional last chunk, then the whole upload must match `digest`. */
  finish(
    repo: string,
    id: string,
    digest: string,
    data?: BlobSource,
    range?: BlobRange,
  ): Promise<StoredBlob> {
    sha256Hex(digest);
    return this.withLock(id, async () => {
      const state = await this.load(repo, id);
      const before = { size: state.size, hash: (await this.hashOf(id, state)).copy() };
      if (data) await this.appendLocked(id, state, data, range);
      const actual = `sha256:${(await this.hashOf(id, state)).copy().digest('hex')}`;
      if (actual !== digest) {
        // Nothing is stored and the session stays as it was before this request (its last
        // chunk undone), so the client may retry the closing PUT.
        if (state.size !== before.size)
          await truncate(path.join(this.dir, id, 'data'), before.size);
        Object.assign(state, before);
        throw new RegistryError(
          'DIGEST_INVALID',
          `uploaded content has digest ${actual}, not ${digest}`,
          {
            expected: digest,
            actual,
          },
        );
      }
      const sessionDir = path.join(this.dir, id);
      await this.blobs.adopt(path.join(sessionDir, 'data'), digest);
      await this.onStored(repo, digest);
      this.live.delete(id);
      await rm(sessionDir, { recursive: true, force: true });
      return { digest, size: state.size };
    });
  }

  cancel(repo: string, id: string): Promise<void> {
    return this.withLock(id, async () => {
      await this.load(repo, id);
      this.live.delete(id);
      await rm(path.join(this.dir, id), { recursive: true, force: true });
    });
  }

  private async appendLocked(
    id: string,
    state: SessionState,
    data: BlobSource,
    range: BlobRange | undefined,
  ): Promise<void> {
    if (range && range.start !== state.size) {
      throw new RegistryError(
        'BLOB_UPLOAD_INVALID',
        `chunk starts at ${range.start} but the upload has ${state.size} bytes`,
        { size: state.size },
        416,
      );
    }
    const expectedLength = range ? range.end - range.start + 1 : undefined;
    // Work on a copy of the running hash so a failed chunk leaves the session as it was.
    const hash = (await this.hashOf(id, state)).copy();
    const handle = await open(path.join(this.dir, id, 'data'), 'a');
    try {
      const written = await writeHashed(handle, data, hash);
      if (expectedLength !== undefined && written !== expectedLength) {
        throw new RegistryError(
          'SIZE_INVALID',
          `Content-Range announces ${expectedLength} bytes but ${written} arrived`,
          { expected: expectedLength, received: written },
        );
      }
      await handle.sync();
      state.size += written;
      state.hash = hash;
    } catch (error) {
      await handle.truncate(state.size);
      throw error;
    } finally {
      await handle.close();
    }
  }

  private async load(repo: string, id: string): Promise<SessionState> {
    const unknown = () =>
      new RegistryError('BLOB_UPLOAD_UNKNOWN', `no upload ${id} in ${repo}`, { id });
    if (!SESSION_ID.test(id)) throw unknown();
    let state = this.live.get(id);
    if (!state) {
      // A session from before a restart: its bytes are on disk, its hash is rebuilt lazily.
      const info = await readFileIfExists(path.join(this.dir, id, 'info.json'));
      const size = await sizeIfExists(path.join(this.dir, id, 'data'));
      if (!info || size === null) throw unknown();
      state = {
        repo: (JSON.parse(info.toString('utf8')) as { repo: string }).repo,
        size,
        hash: null,
      };
      this.live.set(id, state);
    }
    if (state.repo !== repo) throw unknown();
    return state;
  }

  private async hashOf(id: string, state: SessionState): Promise<Hash> {
    if (!state.hash) {
      const hash = createHash('sha256');
      for await (const chunk of createReadStream(path.join(this.dir, id, 'data'))) {
        hash.update(chunk as Buffer);
      }
      state.hash = hash;
    }
    return state.hash;
  }

  /** Serializes the requests of one session; different sessions proceed in parallel. */
  private withLock<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const result = previous.then(work);
    const done = result.then(
      () => undefined,
      () => undefined,
    );
    this.locks.set(id, done);
    void done.then(() => {
      if (this.locks.get(id) === done) this.locks.delete(id);
    });
    return result;
  }
}
