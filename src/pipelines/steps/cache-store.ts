import { createHash, randomUUID } from 'node:crypto';
import { link, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { extractArchive, writeArchive } from './archive.js';
import type { WorkspaceEntry } from './workspace-files.js';

/**
 * One app's dependency cache, shared by all its runs (`storage.cache`). Entries are immutable
 * gzip tars found by key, GitHub's way: the exact key, else the newest entry whose key starts
 * with the key or with one of the restore keys, tried in order; entries saved from the run's
 * own ref first, then entries from any ref. An entry also has a version (a hash of its path
 * list), and only entries of the same version match, so two caches with different paths never
 * restore each other.
 *
 * Layout:
 *   entries/<id>.tar.gz   the archive; id = sha256(version, key)
 *   entries/<id>.json     its metadata; written last, so an entry exists once this does
 *   tmp/                  archives being written
 *
 * Bounded: after each save, entries unused for `maxIdleDays` are removed, then the least
 * recently used ones until the total is at most `maxBytes`.
 */

export interface CacheLimits {
  /** Total bytes of all entries of the app. */
  maxBytes: number;
  /** Entries not restored or saved for this long are removed. */
  maxIdleDays: number;
}

export const defaultCacheLimits: CacheLimits = { maxBytes: 2 * 1024 ** 3, maxIdleDays: 7 };

/** Keys and restore keys: GitHub's 512-character limit, and a character set safe in logs. */
export const cacheKeySchema = z
  .string()
  .min(1)
  .max(512)
  .regex(
    /^[A-Za-z0-9._+=:@/-]+$/,
    'expected letters, digits and . _ + = : @ / - (at most 512 characters)',
  );

const entrySchema = z.object({
  key: z.string(),
  version: z.string(),
  ref: z.string(),
  createdAt: z.string(),
  lastUsedAt: z.string(),
  size: z.number(),
  digest: z.string(),
  files: z.number(),
});

export type CacheEntry = z.infer<typeof entrySchema> & { id: string };

export interface CacheLookup {
  key: string;
  restoreKeys: readonly string[];
  version: string;
  /** The run's ref: its own entries are preferred. */
  ref: string;
}

export type SaveResult =
  { saved: true; entry: CacheEntry; evicted: CacheEntry[] } | { saved: false; reason: string };

/** What makes entries with equal keys different: the path list and the archive format. */
export function cacheVersion(paths: readonly string[]): string {
  return createHash('sha256')
    .update(['gzip-tar-1', ...paths].join('\n'))
    .digest('hex');
}

// A tmp file or an archive without metadata older than this is a leftover of a crash.
const LEFTOVER_MS = 60 * 60 * 1000;

export class CacheStore {
  private readonly entriesDir: string;
  private readonly tmpDir: string;

  constructor(
    readonly dir: string,
    private readonly limits: CacheLimits = defaultCacheLimits,
    private readonly now: () => Date = () => new Date(),
  ) {
    this.entriesDir = join(dir, 'entries');
    this.tmpDir = join(dir, 'tmp');
  }

  async list(): Promise<CacheEntry[]> {
    const names = await readdir(this.entriesDir).catch(() => [] as string[]);
    const entries: CacheEntry[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -'.json'.length);
      const text = await readFile(join(this.entriesDir, name), 'utf8').catch(() => null);
      const parsed = text === null ? null : entrySchema.safeParse(safeJson(text));
      if (parsed?.success) entries.push({ ...parsed.data, id });
    }
    return entries;
  }

  async find(lookup: CacheLookup): Promise<{ entry: CacheEntry; exact: boolean } | null> {
    const candidates = (await this.list())
      .filter((entry) => entry.version === lookup.version)
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt) || a.key.localeCompare(b.key));
    const scopes = [candidates.filter((entry) => entry.ref === lookup.ref), candidates];
    for (const scope of scopes) {
      const exact = scope.find((entry) => entry.key === lookup.key);
      if (exact) return { entry: exact, exact: true };
      for (const prefix of [lookup.key, ...lookup.restoreKeys]) {
        const newest = scope.find((entry) => entry.key.startsWith(prefix));
        if (newest) return { entry: newest, exact: false };
      }
    }
    return null;
  }

  /** Unpacks an entry into `dest` and marks it used. Returns the paths written. */
  async restore(entry: CacheEntry, dest: string, signal?: AbortSignal): Promise<string[]> {
    const written = await extractArchive(this.archivePath(entry.id), dest, { signal });
    const metadata = join(this.entriesDir, `${entry.id}.json`);
    // Only an entry that still exists is touched: eviction may have removed it meanwhile.
    if (await exists(metadata)) {
      await this.writeMetadata({ ...entry, lastUsedAt: this.now().toISOString() });
    }
    return written;
  }

  /**
   * Archives `entries` under `key` unless an entry with that key and version exists (entries
   * are immutable), then enforces the limits.
   */
  async save(options: {
    key: string;
    version: string;
    ref: string;
    entries: readonly WorkspaceEntry[];
    signal?: AbortSignal;
  }): Promise<SaveResult> {
    const id = entryId(options.version, options.key);
    if (await exists(join(this.entriesDir, `${id}.json`))) {
      return { saved: false, reason: `an entry with key ${options.key} exists` };
    }
    await mkdir(this.tmpDir, { recursive: true });
    await mkdir(this.entriesDir, { recursive: true });
    const tmp = join(this.tmpDir, `${randomUUID()}.tar.gz`);
    try {
      const archive = await writeArchive(options.entries, tmp, {
        root: '',
        level: 6,
        signal: options.signal,
      });
      if (archive.size > this.limits.maxBytes) {
        return {
          saved: false,
          reason: `the archive (${archive.size} bytes) is larger than the app's cache limit (${this.limits.maxBytes} bytes)`,
        };
      }
      // link() claims the key atomically: a concurrent save of the same key gets EEXIST.
      try {
        await link(tmp, this.archivePath(id));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        return { saved: false, reason: `another job is saving key ${options.key}` };
      }
      const at = this.now().toISOString();
      const entry: CacheEntry = {
        id,
        key: options.key,
        version: options.version,
        ref: options.ref,
        createdAt: at,
        lastUsedAt: at,
        size: archive.size,
        digest: archive.digest,
        files: archive.files.length + archive.links.length,
      };
      await this.writeMetadata(entry);
      const evicted = await this.evict();
      return { saved: true, entry, evicted };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Removes entries idle for longer than `maxIdleDays`, then the least recently used until
   * the total fits `maxBytes`, and leftovers of interrupted saves. Returns the entries removed.
   */
  async evict(): Promise<CacheEntry[]> {
    const now = this.now().getTime();
    const idleLimit = now - this.limits.maxIdleDays * 24 * 60 * 60 * 1000;
    const entries = (await this.list()).sort((a, b) => a.lastUsedAt.localeCompare(b.lastUsedAt));
    const removed: CacheEntry[] = [];
    let total = entries.reduce((sum, entry) => sum + entry.size, 0);
    for (const entry of entries) {
      const keep =
        Date.parse(entry.lastUsedAt) >= idleLimit &&
        total <= this.limits.maxBytes &&
        (await exists(this.archivePath(entry.id)));
      if (keep) continue;
      await this.remove(entry.id);
      removed.push(entry);
      total -= entry.size;
    }
    await this.removeLeftovers(now, new Set(entries.map((entry) => entry.id)));
    return removed;
  }

  private async removeLeftovers(now: number, known: Set<string>): Promise<void> {
    const stale = async (path: string) =>
      now - (await stat(path).catch(() => ({ mtimeMs: now }))).mtimeMs > LEFTOVER_MS;
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      if (await stale(join(this.tmpDir, name))) await rm(join(this.tmpDir, name), { force: true });
    }
    for (const name of await readdir(this.entriesDir).catch(() => [] as string[])) {
      const id = name.replace(/\.(tar\.gz|json)$/, '');
      const path = join(this.entriesDir, name);
      if (!known.has(id) && (await stale(path))) await rm(path, { force: true });
    }
  }

  private async remove(id: string): Promise<void> {
    // Metadata first: the entry stops matching before its archive goes.
    await rm(join(this.entriesDir, `${id}.json`), { force: true });
    await rm(this.archivePath(id), { force: true });
  }

  private archivePath(id: string): string {
    return join(this.entriesDir, `${id}.tar.gz`);
  }

  private async writeMetadata(entry: CacheEntry): Promise<void> {
    const { id, ...metadata } = entry;
    const tmp = join(this.tmpDir, `${randomUUID()}.json`);
    await mkdir(this.tmpDir, { recursive: true });
    await writeFile(tmp, `${JSON.stringify(metadata, null, 2)}\n`);
    await rename(tmp, join(this.entriesDir, `${id}.json`));
  }
}

function entryId(version: string, key: string): string {
  return createHash('sha256').update(`${version}\0${key}`).digest('hex');
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
