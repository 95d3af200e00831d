import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { isNotFound } from './durable-fs.js';
import { parseManifest } from './manifests.js';
import { readBlob, type BlobStorage, type ListedBlob } from './storage/index.js';
import type { AbandonedUpload, UploadSessions } from './upload-sessions.js';

export interface GarbageCollectionOptions {
  /** Report what would go, delete nothing. */
  dryRun?: boolean;
  /**
   * Blobs and repository links younger than this are kept even when no manifest references
   * them: they belong to a push in progress (layers go up before the manifest that names them).
   */
  graceMs?: number;
  /** Upload sessions and staging files untouched for this long are abandoned and removed. */
  uploadMaxAgeMs?: number;
  /** Runs between mark and sweep (tests use it to write during a collection). */
  afterMark?: () => Promise<void>;
}

export const defaultGarbageCollection = {
  graceMs: 60 * 60 * 1000,
  uploadMaxAgeMs: 24 * 60 * 60 * 1000,
} as const;

export interface GarbageReport {
  dryRun: boolean;
  startedAt: string;
  durationMs: number;
  repositories: number;
  manifests: number;
  /** Blobs (and manifests) that stay. */
  keptBlobs: number;
  /** Blobs deleted (or, in a dry run, that would be). */
  deletedBlobs: { digest: string; size: number }[];
  /** Repository links to blobs no manifest of the repository references, past the grace. */
  removedLinks: { repo: string; digest: string }[];
  removedUploads: AbandonedUpload[];
  removedStagingFiles: { name: string; size: number }[];
  /** Bytes of deleted blobs, upload sessions and staging files. */
  bytesFreed: number;
  /** Inconsistencies found on the way (a manifest whose bytes are missing), nothing fatal. */
  problems: string[];
}

/** What garbage collection needs from the registry: its storage and its bookkeeping. */
export interface GarbageCollectionSubject {
  storage: BlobStorage;
  fence: WriteFence;
  uploads: UploadSessions;
  listRepositories(): Promise<string[]>;
  manifestLinks(repo: string): Promise<{ digest: string; mediaType: string }[]>;
  blobLinks(repo: string): Promise<{ digest: string; linkedAt: Date }[]>;
  removeBlobLink(repo: string, digest: string): Promise<void>;
}

/**
 * Mark and sweep. Marks: every manifest linked in any repository (tagged or not, referrers
 * included: they are manifests too), everything those manifests reference (config, layers,
 * child manifests of an index), and every blob linked into a repository within the grace
 * period. Sweeps: stored blobs not marked, and repository links past the grace that no
 * manifest of their repository references (so a team's usage drops once its images are gone,
 * even when another team still holds the same blob). Then abandoned upload sessions and
 * staging leftovers.
 *
 * Safety while pushes go on, in three layers:
 * - The candidates are listed before the mark, so a blob stored during the collection is never
 *   one; and a blob written within the grace period is kept whatever marks it has.
 * - Links and blobs younger than the grace are marks: a push in progress has linked its
 *   layers but not yet pushed the manifest naming them.
 * - Every write that makes a blob reachable (storing it, linking it, storing a manifest) holds
 *   its digest in the `WriteFence` while it checks and writes. The sweep skips a digest held
 *   now, or released since the collection began or within the grace period (which covers a
 *   push that checked a blob before the mark and writes its manifest after), and a write that
 *   wants a digest being deleted waits for the deletion and then finds it gone. This is what
 *   lets an upload that deduplicates against an old, unreferenced blob survive a collection
 *   that started before it. (A grace of 0, for tests and quiet servers, keeps the first and
 *   the last but no longer covers a push that straddles the start of the collection.)
 * Crash safety: links go before blobs, so an interrupted collection leaves at worst
 * unreferenced blobs for the next one.
 */
export async function collectGarbage(
  subject: GarbageCollectionSubject,
  options: GarbageCollectionOptions = {},
): Promise<GarbageReport> {
  const dryRun = options.dryRun ?? false;
  const graceMs = options.graceMs ?? defaultGarbageCollection.graceMs;
  const uploadMaxAgeMs = options.uploadMaxAgeMs ?? defaultGarbageCollection.uploadMaxAgeMs;
  const started = Date.now();
  const epoch = subject.fence.beginCollection();
  try {
    return await collect(subject, options.afterMark, {
      dryRun,
      uploadMaxAgeMs,
      started,
      since: started - graceMs,
      epoch,
    });
  } finally {
    subject.fence.endCollection();
  }
}

interface CollectionRun {
  dryRun: boolean;
  uploadMaxAgeMs: number;
  /** When the collection started (ms). */
  started: number;
  /** Younger than this (ms) is within the grace period. */
  since: number;
  /** The fence's epoch at the start. */
  epoch: number;
}

async function collect(
  subject: GarbageCollectionSubject,
  afterMark: (() => Promise<void>) | undefined,
  { dryRun, uploadMaxAgeMs, started, since, epoch }: CollectionRun,
): Promise<GarbageReport> {
  const problems: string[] = [];

  const candidates: ListedBlob[] = [];
  for await (const blob of subject.storage.list()) candidates.push(blob);

  // --- mark ---
  const marked = new Set<string>();
  const staleLinks: { repo: string; digest: string }[] = [];
  const repositories = await subject.listRepositories();
  let manifests = 0;
  for (const repo of repositories) {
    const referenced = new Set<string>();
    for (const manifest of await subject.manifestLinks(repo)) {
      manifests += 1;
      referenced.add(manifest.digest);
      const body = await readBlob(subject.storage, manifest.digest);
      if (!body) {
        problems.push(`${repo}: manifest ${manifest.digest} is linked but its bytes are missing`);
        continue;
      }
      // A stored manifest was validated when pushed; one that no longer parses stops the
      // collection here, before anything is deleted, rather than guess what it references.
      const references = parseManifest(body, manifest.mediaType);
      for (const child of [...references.blobs, ...references.manifests]) {
        referenced.add(child.digest);
      }
    }
    for (const digest of referenced) marked.add(digest);
    for (const link of await subject.blobLinks(repo)) {
      if (link.linkedAt.getTime() > since) marked.add(link.digest);
      else if (!referenced.has(link.digest)) staleLinks.push({ repo, digest: link.digest });
    }
  }
  await afterMark?.();

  // --- sweep: links first, then blobs ---
  const removedLinks: { repo: string; digest: string }[] = [];
  for (const link of staleLinks) {
    const removed = dryRun
      ? !subject.fence.isHeldSince(link.digest, since, epoch)
      : await subject.fence.removeUnlessHeld(link.digest, since, epoch, () =>
          subject.removeBlobLink(link.repo, link.digest),
        );
    if (removed) removedLinks.push(link);
  }
  const deletedBlobs: { digest: string; size: number }[] = [];
  for (const blob of candidates) {
    if (marked.has(blob.digest) || blob.modifiedAt.getTime() > since) continue;
    const deleted = dryRun
      ? !subject.fence.isHeldSince(blob.digest, since, epoch)
      : await subject.fence.removeUnlessHeld(blob.digest, since, epoch, () =>
          subject.storage.delete(blob.digest),
        );
    if (deleted) deletedBlobs.push({ digest: blob.digest, size: blob.size });
  }

  // --- abandoned uploads and staging files ---
  const uploadsBefore = started - uploadMaxAgeMs;
  const removedUploads = await subject.uploads.removeAbandoned(uploadsBefore, dryRun);
  const removedStagingFiles = await removeOldFiles(
    subject.storage.stagingDir,
    uploadsBefore,
    dryRun,
  );

  const sum = (items: { size: number }[]) => items.reduce((total, item) => total + item.size, 0);
  return {
    dryRun,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    repositories: repositories.length,
    manifests,
    keptBlobs: candidates.length - deletedBlobs.length,
    deletedBlobs,
    removedLinks,
    removedUploads,
    removedStagingFiles,
    bytesFreed: sum(deletedBlobs) + sum(removedUploads) + sum(removedStagingFiles),
    problems,
  };
}

/** Files directly in `dir` last modified before `before` (ms): staging left by a crash. */
async function removeOldFiles(
  dir: string,
  before: number,
  dryRun: boolean,
): Promise<{ name: string; size: number }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
  const removed: { name: string; size: number }[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      const info = await stat(file);
      if (!info.isFile() || info.mtimeMs >= before) continue;
      if (!dryRun) await rm(file, { force: true });
      removed.push({ name, size: info.size });
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
  }
  return removed;
}

/**
 * Keeps garbage collection from deleting what a write in progress is making reachable. A write
 * holds the digests it depends on for as long as it checks and writes them; the sweep asks
 * before each deletion, synchronously, so no write can slip in between the question and the
 * start of the deletion, and a write that arrives during a deletion waits for it to finish.
 * One per process: the registry's writes and its collections run in the same server.
 */
export class WriteFence {
  private readonly held = new Map<string, number>();
  /** When each digest was last released (ms, and `epoch` count), oldest first. */
  private readonly released = new Map<string, { at: number; epoch: number }>();
  private readonly removing = new Map<string, Promise<void>>();
  private epochs = 0;
  /** The epoch of the collection running now: releases after it are remembered until its end. */
  private collecting: number | null = null;

  constructor(private readonly memoryMs: number = defaultGarbageCollection.graceMs) {}

  /**
   * Starts a collection; returns its epoch, a point in the order of events finer than the
   * clock: a release after it is later whatever the milliseconds say.
   */
  beginCollection(): number {
    this.collecting = this.epoch();
    return this.collecting;
  }

  endCollection(): void {
    this.collecting = null;
  }

  private epoch(): number {
    this.epochs += 1;
    return this.epochs;
  }

  async hold<T>(digests: readonly string[], work: () => Promise<T>): Promise<T> {
    const unique = [...new Set(digests)];
    for (;;) {
      const busy = unique.flatMap((digest) => this.removing.get(digest) ?? []);
      if (busy.length === 0) break;
      await Promise.allSettled(busy);
    }
    // No await between the check above and this: a sweep cannot start on these meanwhile.
    for (const digest of unique) this.held.set(digest, (this.held.get(digest) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const release = { at: Date.now(), epoch: this.epoch() };
      for (const digest of unique) {
        const count = (this.held.get(digest) ?? 1) - 1;
        if (count === 0) this.held.delete(digest);
        else this.held.set(digest, count);
        this.released.delete(digest);
        this.released.set(digest, release);
      }
      this.forget(release.at);
    }
  }

  /** Whether a write holds `digest` now, or released it after `since` (ms) or after `epoch`. */
  isHeldSince(digest: string, since: number, epoch: number): boolean {
    const released = this.released.get(digest);
    return (
      this.held.has(digest) ||
      this.removing.has(digest) ||
      (released !== undefined && (released.at > since || released.epoch > epoch))
    );
  }

  /** Runs `remove` unless `digest` is held (see `isHeldSince`); returns whether it ran. */
  async removeUnlessHeld(
    digest: string,
    since: number,
    epoch: number,
    remove: () => Promise<void>,
  ): Promise<boolean> {
    if (this.isHeldSince(digest, since, epoch)) return false;
    const removal = remove();
    this.removing.set(
      digest,
      removal.catch(() => undefined),
    );
    try {
      await removal;
      return true;
    } finally {
      this.removing.delete(digest);
    }
  }

  private forget(now: number): void {
    for (const [digest, { at, epoch }] of this.released) {
      if (at >= now - this.memoryMs) break;
      if (this.collecting !== null && epoch > this.collecting) break;
      this.released.delete(digest);
    }
  }
}
