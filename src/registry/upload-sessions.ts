import { createHash, randomUUID, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { RegistryError } from './errors.js';
import { isNotFound, readFileIfExists, sizeIfExists, writeFileDurably } from './durable-fs.js';
import { sha256Hex, validateRepositoryName } from './names.js';
import {
  writeHashed,
  type BlobRange,
  type BlobSource,
  type StagedBlob,
  type StoredBlob,
} from './storage/index.js';

export interface UploadStatus {
  id: string;
  repo: string;
  /** Bytes received so far; the spec's `Range: 0-<size-1>`. */
  size: number;
}

/** A session garbage collection removed (or would remove): no activity since `lastActivity`. */
export interface AbandonedUpload {
  id: string;
  /** Null when the session's info.json is missing or unreadable. */
  repo: string | null;
  size: number;
  lastActivity: string;
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
 *
 * Sessions stay on local disk whatever the storage driver: chunks arrive in order over many
 * requests, and a verified local file is what every driver adopts (S3 uploads it whole, in
 * parts when large). The cost is local disk for the uploads in flight.
 */
export class UploadSessions {
  private readonly dir: string;
  private readonly live = new Map<string, SessionState>();
  private readonly locks = new Map<string, Promise<void>>();

  constructor(
    root: string,
    /**
     * Makes the verified session file the blob and part of the session's repository; it may
     * refuse (a team over its quota) before anything becomes visible.
     */
    private readonly commit: (repo: string, staged: StagedBlob) => Promise<void>,
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
      const sessionDir = path.join(this.dir, id);
      const file = path.join(sessionDir, 'data');
      if (data) await this.appendLocked(id, state, data, range);
      try {
        const actual = `sha256:${(await this.hashOf(id, state)).copy().digest('hex')}`;
        if (actual !== digest) {
          throw new RegistryError(
            'DIGEST_INVALID',
            `uploaded content has digest ${actual}, not ${digest}`,
            { expected: digest, actual },
          );
        }
        await this.commit(repo, { file, digest, size: state.size });
      } catch (error) {
        // The session stays as it was before this request (its last chunk undone), so the
        // client may retry the closing PUT; unless the bytes were already moved into place.
        if ((await sizeIfExists(file)) === null) {
          this.live.delete(id);
          await rm(sessionDir, { recursive: true, force: true });
        } else {
          if (state.size !== before.size) await truncate(file, before.size);
          Object.assign(state, before);
        }
        throw error;
      }
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

  /**
   * Removes the sessions with no activity (no chunk, no start) since `before` (ms since the
   * epoch); with `dryRun` only lists them. A session busy with a request is never removed.
   */
  async removeAbandoned(before: number, dryRun: boolean): Promise<AbandonedUpload[]> {
    let ids: string[];
    try {
      ids = await readdir(this.dir);
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const removed: AbandonedUpload[] = [];
    for (const id of ids) {
      if (!SESSION_ID.test(id)) continue;
      const found = await this.withLock(id, async () => {
        const activity = await this.lastActivity(id);
        if (!activity || activity.at >= before) return null;
        if (!dryRun) {
          this.live.delete(id);
          await rm(path.join(this.dir, id), { recursive: true, force: true });
        }
        return activity;
      });
      if (found) {
        const { repo, size, at } = found;
        removed.push({ id, repo, size, lastActivity: new Date(at).toISOString() });
      }
    }
    return removed;
  }

  private async lastActivity(
    id: string,
  ): Promise<{ at: number; size: number; repo: string | null } | null> {
    const dir = path.join(this.dir, id);
    let at = -Infinity;
    let size = 0;
    for (const name of ['.', 'info.json', 'data']) {
      try {
        const info = await stat(path.join(dir, name));
        at = Math.max(at, info.mtimeMs);
        if (name === 'data') size = info.size;
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    if (at === -Infinity) return null;
    let repo: string | null = null;
    try {
      const info = await readFileIfExists(path.join(dir, 'info.json'));
      repo = info ? ((JSON.parse(info.toString('utf8')) as { repo?: string }).repo ?? null) : null;
    } catch {
      // A session whose info.json is torn is garbage all the same.
    }
    return { at, size, repo };
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
