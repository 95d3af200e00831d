import { createHash } from 'node:crypto';
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  WriteFence,
  collectGarbage,
  defaultGarbageCollection,
  type GarbageCollectionOptions,
  type GarbageReport,
} from './gc.js';
import { TeamQuotas, type LinkedBlob, type TeamUsage } from './quota.js';
import {
  openBlobStorage,
  readBlob,
  stageBlob,
  type BlobRange,
  type BlobSource,
  type BlobStorage,
  type RegistryStorageConfig,
  type StagedBlob,
  type StoredBlob,
} from './storage/index.js';
import {
  existsOnDisk,
  isNotFound,
  readFileIfExists,
  removeDurably,
  writeFileDurably,
} from './durable-fs.js';
import { RegistryError } from './errors.js';
import { parseManifest, type Descriptor } from './manifests.js';
import {
  isSha256Digest,
  parseReference,
  sha256Hex,
  validateRepositoryName,
  validateTag,
} from './names.js';
import { ReferrersIndex, type ReferrerDescriptor } from './referrers.js';
import { UploadSessions } from './upload-sessions.js';

export interface RegistryOptions {
  dataDir: string;
  /** Where blob bytes live; bookkeeping (links, tags, uploads) stays under `dataDir` always. */
  storage?: RegistryStorageConfig;
  /** Defaults of `collectGarbage` (grace period, age of abandoned uploads). */
  gc?: Pick<GarbageCollectionOptions, 'graceMs' | 'uploadMaxAgeMs'>;
}

export interface StoredManifest {
  body: Buffer;
  mediaType: string;
  digest: string;
}

export interface PutManifestOptions {
  /**
   * Where the referenced blobs must already be. `store` (the default, for trusted callers such
   * as the builder) accepts any stored blob; `repository` (what the HTTP API uses) accepts only
   * blobs pushed or mounted into this repository, so knowing another team's digest is not
   * enough to pull its layers through your own repository.
   */
  blobsFrom?: 'store' | 'repository';
  /** More tags for the same manifest (the spec's `PUT .../manifests/<digest>?tag=...`). */
  tags?: string[];
}

export interface TagPage {
  /** At most this many tags. */
  n?: number;
  /** Only tags after this one, in the spec's ASCII order. */
  last?: string;
}

/**
 * The OCI registry's storage and its internal API. Layout under `<dataDir>/registry/`:
 *
 *   blobs/sha256/<2 hex>/<hex>                     every blob and manifest, by content
 *                                                  (in the bucket with the S3 driver)
 *   repositories/<name>/_blobs/sha256/<hex>        empty: the blob belongs to the repository
 *   repositories/<name>/_manifests/sha256/<hex>    the manifest's media type
 *   repositories/<name>/_tags/<tag>                the digest the tag points to
 *   uploads/<uuid>/{info.json,data}                resumable upload sessions
 *   tmp/                                           blobs being written, never visible
 *   quotas.json                                    storage quota per team
 *
 * Repository bookkeeping lives under `_` names, which no name component can start with.
 */
export class Registry {
  readonly root: string;
  readonly uploads: UploadSessions;
  private readonly blobs: BlobStorage;
  private readonly fence: WriteFence;
  private readonly quotas: TeamQuotas;
  private readonly gcDefaults: Pick<GarbageCollectionOptions, 'graceMs' | 'uploadMaxAgeMs'>;
  private gcRuns: Promise<unknown> = Promise.resolve();
  private readonly referrers = new ReferrersIndex((repo) => this.repositoryPath(repo));

  constructor(options: RegistryOptions) {
    this.root = path.join(options.dataDir, 'registry');
    this.blobs = openBlobStorage(options.storage, this.root);
    this.gcDefaults = { ...defaultGarbageCollection, ...options.gc };
    this.fence = new WriteFence(this.gcDefaults.graceMs);
    this.quotas = new TeamQuotas(path.join(this.root, 'quotas.json'), () => this.linkedBlobs());
    this.uploads = new UploadSessions(this.root, (repo, staged) =>
      this.commitToRepository(repo, staged),
    );
  }

  // --- blobs (the whole store) ---

  /** Stores a blob in no repository (trusted callers, e.g. the builder, before the manifest). */
  async putBlob(data: BlobSource, expectedDigest?: string): Promise<StoredBlob> {
    const staged = await stageBlob(this.blobs.stagingDir, data, expectedDigest);
    try {
      await this.fence.hold([staged.digest], () => this.blobs.adopt(staged.file, staged.digest));
      return { digest: staged.digest, size: staged.size };
    } finally {
      await rm(staged.file, { force: true });
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.blobs.stat(digest)) !== null;
  }

  async statBlob(digest: string): Promise<{ size: number } | null> {
    const found = await this.blobs.stat(digest);
    return found && { size: found.size };
  }

  openBlob(digest: string, range?: BlobRange): Promise<NodeJS.ReadableStream | null> {
    return this.blobs.open(digest, range);
  }

  // --- blobs as a repository sees them (what the HTTP API serves) ---

  /** The blob's size if it is stored and belongs to `repo`, else null. */
  async statRepositoryBlob(repo: string, digest: string): Promise<{ size: number } | null> {
    validateRepositoryName(repo);
    if (!(await existsOnDisk(this.blobLinkPath(repo, digest)))) return null;
    return this.statBlob(digest);
  }

  /** Stores a blob and makes it part of `repo` (the spec's single-POST upload). */
  async putRepositoryBlob(
    repo: string,
    data: BlobSource,
    expectedDigest: string,
  ): Promise<StoredBlob> {
    validateRepositoryName(repo);
    const staged = await stageBlob(this.blobs.stagingDir, data, expectedDigest);
    try {
      await this.commitToRepository(repo, staged);
      return { digest: staged.digest, size: staged.size };
    } finally {
      await rm(staged.file, { force: true });
    }
  }

  /**
   * Makes a stored blob part of `repo` (cross-repository mount; the caller checks access).
   * DENIED when the team has no room for it.
   */
  async linkBlob(repo: string, digest: string): Promise<void> {
    validateRepositoryName(repo);
    await this.fence.hold([digest], async () => {
      const stored = await this.blobs.stat(digest);
      if (!stored) {
        throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} is not stored`, { digest });
      }
      await this.writeBlobLink(repo, digest, stored.size);
    });
  }

  /**
   * A verified staged file becomes the blob and part of `repo`, within the team's quota, which
   * is checked before anything is visible. The end of every upload.
   */
  private commitToRepository(repo: string, staged: StagedBlob): Promise<void> {
    return this.fence.hold([staged.digest], () =>
      this.writeBlobLink(repo, staged.digest, staged.size, () =>
        this.blobs.adopt(staged.file, staged.digest),
      ),
    );
  }

  /** Links `digest` into `repo`, running `store` first when given; the caller holds the digest. */
  private async writeBlobLink(
    repo: string,
    digest: string,
    size: number,
    store?: () => Promise<void>,
  ): Promise<void> {
    const link = this.blobLinkPath(repo, digest);
    if (await existsOnDisk(link)) return store?.();
    await this.quotas.reserve(repo, [{ digest, size }], async () => {
      await store?.();
      await writeFileDurably(link, '');
    });
  }

  // --- manifests and tags ---

  async putManifest(
    repo: string,
    reference: string,
    body: Buffer,
    mediaType: string,
    options: PutManifestOptions = {},
  ): Promise<{ digest: string; subject?: string }> {
    validateRepositoryName(repo);
    const target = parseReference(reference);
    const tags = [
      ...(target.kind === 'tag' ? [target.tag] : []),
      ...(options.tags ?? []).map(validateTag),
    ];
    const references = parseManifest(body, mediaType);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (target.kind === 'digest' && target.digest !== digest) {
      throw new RegistryError(
        'DIGEST_INVALID',
        `manifest has digest ${digest}, not ${target.digest}`,
        {
          expected: target.digest,
          actual: digest,
        },
      );
    }

    const missing: string[] = [];
    for (const blob of references.blobs) {
      const stored = await this.findReferencedBlob(repo, blob, options.blobsFrom ?? 'store');
      if (!stored) missing.push(blob.digest);
    }
    for (const child of references.manifests) {
      const known =
        isSha256Digest(child.digest) && (await this.manifestMediaType(repo, child.digest));
      if (!known) missing.push(child.digest);
    }
    if (missing.length > 0) {
      throw new RegistryError(
        'MANIFEST_BLOB_UNKNOWN',
        `manifest references ${missing.length} unknown blob(s) or manifest(s) in ${repo}: ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}`,
        { missing },
      );
    }

    // All or nothing: blobs the repository does not hold yet must fit the team's quota.
    await this.quotas.check(repo, references.blobs);
    // Each step is durable before the next, so a crash leaves at worst an unreferenced blob.
    await this.putBlob(body, digest);
    for (const blob of references.blobs) await this.linkBlob(repo, blob.digest);
    await writeFileDurably(this.manifestLinkPath(repo, digest), references.mediaType);
    for (const tag of tags) await writeFileDurably(this.tagPath(repo, tag), digest);
    const subject = references.subject;
    if (subject && isSha256Digest(subject.digest)) {
      await this.referrers.record(repo, subject.digest, {
        mediaType: references.mediaType,
        digest,
        size: body.length,
        ...(references.artifactType ? { artifactType: references.artifactType } : {}),
        ...(references.annotations ? { annotations: references.annotations } : {}),
      });
    }
    return { digest, ...(subject ? { subject: subject.digest } : {}) };
  }

  /**
   * The manifests in `repo` whose `subject` is `digest` (the referrers API), only those of
   * `artifactType` when given. Empty, never an error, when the subject is unknown.
   */
  listReferrers(
    repo: string,
    digest: string,
    artifactType?: string,
  ): Promise<ReferrerDescriptor[]> {
    validateRepositoryName(repo);
    return this.referrers.list(repo, digest, artifactType);
  }

  async getManifest(repo: string, reference: string): Promise<StoredManifest | null> {
    validateRepositoryName(repo);
    const target = parseReference(reference);
    const digest =
      target.kind === 'digest' ? target.digest : await this.resolveTag(repo, target.tag);
    if (!digest) return null;
    const mediaType = await this.manifestMediaType(repo, digest);
    if (!mediaType) return null;
    const body = await readBlob(this.blobs, digest);
    if (!body) return null;
    return { body, mediaType, digest };
  }

  async listTags(repo: string, page: TagPage = {}): Promise<string[]> {
    validateRepositoryName(repo);
    const tags = (await this.readDirIfExists(path.join(this.repositoryPath(repo), '_tags')))
      .filter((name) => !name.startsWith('.'))
      .sort(asciiOrder);
    const last = page.last;
    const after = last === undefined ? tags : tags.filter((tag) => tag > last);
    return page.n === undefined ? after : after.slice(0, page.n);
  }

  /** A repository exists once anything was pushed to it (a blob or a manifest). */
  async repositoryExists(repo: string): Promise<boolean> {
    validateRepositoryName(repo);
    const dir = this.repositoryPath(repo);
    return (
      (await existsOnDisk(path.join(dir, '_manifests'))) ||
      (await existsOnDisk(path.join(dir, '_blobs')))
    );
  }

  async listRepositories(): Promise<string[]> {
    const found: string[] = [];
    const walk = async (dir: string, name: string[]): Promise<void> => {
      const children = await this.readDirIfExists(dir);
      if (children.includes('_manifests') || children.includes('_blobs'))
        found.push(name.join('/'));
      for (const child of children) {
        if (!child.startsWith('_') && !child.startsWith('.')) {
          await walk(path.join(dir, child), [...name, child]);
        }
      }
    };
    await walk(path.join(this.root, 'repositories'), []);
    return found.sort(asciiOrder);
  }

  /** Removes a tag; the manifest stays pullable by digest. Returns whether the tag existed. */
  async deleteTag(repo: string, tag: string): Promise<boolean> {
    validateRepositoryName(repo);
    return removeDurably(this.tagPath(repo, validateTag(tag)));
  }

  /**
   * Removes a manifest from a repository, with every tag pointing at it. Blob bytes stay in the
   * store until garbage collection finds them unreferenced. Returns whether the manifest was
   * there.
   */
  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    validateRepositoryName(repo);
    const stored = await this.getManifest(repo, digest);
    if (!stored) return false;
    const subject = parseManifest(stored.body, stored.mediaType).subject;
    if (subject && isSha256Digest(subject.digest)) {
      await this.referrers.remove(repo, subject.digest, digest);
    }
    for (const tag of await this.listTags(repo)) {
      if ((await this.resolveTag(repo, tag)) === digest)
        await removeDurably(this.tagPath(repo, tag));
    }
    return removeDurably(this.manifestLinkPath(repo, digest));
  }

  // --- garbage collection and quotas ---

  /**
   * Deletes blobs no manifest references, stale repository links and abandoned uploads (see
   * gc.ts: safe while pushes go on). One collection at a time; a second call waits its turn.
   */
  collectGarbage(options: GarbageCollectionOptions = {}): Promise<GarbageReport> {
    const run = this.gcRuns.then(async () => {
      const report = await collectGarbage(
        {
          storage: this.blobs,
          fence: this.fence,
          uploads: this.uploads,
          listRepositories: () => this.listRepositories(),
          manifestLinks: (repo) => this.manifestLinks(repo),
          blobLinks: (repo) => this.blobLinks(repo),
          removeBlobLink: async (repo, digest) => {
            await removeDurably(this.blobLinkPath(repo, digest));
            this.quotas.unlinked(repo, digest);
          },
        },
        { ...this.gcDefaults, ...options },
      );
      if (!report.dryRun) await this.quotas.recount();
      return report;
    });
    this.gcRuns = run.catch(() => undefined);
    return run;
  }

  /** The team's storage use (distinct blobs linked into `<team>/...`) and its quota. */
  teamUsage(team: string): Promise<TeamUsage> {
    return this.quotas.usageOf(team);
  }

  /** Sets the team's quota in bytes (null: none). Pushes past it are refused with DENIED. */
  setTeamQuota(team: string, bytes: number | null): Promise<TeamUsage> {
    return this.quotas.setQuota(team, bytes);
  }

  private async manifestLinks(repo: string): Promise<{ digest: string; mediaType: string }[]> {
    const found: { digest: string; mediaType: string }[] = [];
    for (const digest of await this.linkedDigests(repo, '_manifests')) {
      const mediaType = await this.manifestMediaType(repo, digest);
      if (mediaType) found.push({ digest, mediaType });
    }
    return found;
  }

  private async blobLinks(repo: string): Promise<{ digest: string; linkedAt: Date }[]> {
    const found: { digest: string; linkedAt: Date }[] = [];
    for (const digest of await this.linkedDigests(repo, '_blobs')) {
      try {
        found.push({ digest, linkedAt: (await stat(this.blobLinkPath(repo, digest))).mtime });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    return found;
  }

  private async linkedDigests(repo: string, kind: '_blobs' | '_manifests'): Promise<string[]> {
    const dir = path.join(this.repositoryPath(repo), kind, 'sha256');
    return (await this.readDirIfExists(dir))
      .filter((name) => /^[0-9a-f]{64}$/.test(name))
      .map((hex) => `sha256:${hex}`);
  }

  /** Every blob link of every repository, with the blob's size: what quotas count. */
  private async linkedBlobs(): Promise<LinkedBlob[]> {
    const sizes = new Map<string, number>();
    for await (const blob of this.blobs.list()) sizes.set(blob.digest, blob.size);
    const links: LinkedBlob[] = [];
    for (const repo of await this.listRepositories()) {
      for (const digest of await this.linkedDigests(repo, '_blobs')) {
        const size = sizes.get(digest);
        if (size !== undefined) links.push({ repo, digest, size });
      }
    }
    return links;
  }

  // --- internals ---

  private async findReferencedBlob(
    repo: string,
    blob: Descriptor,
    scope: 'store' | 'repository',
  ): Promise<{ size: number } | null> {
    if (!isSha256Digest(blob.digest)) return null;
    const stored =
      scope === 'store'
        ? await this.blobs.stat(blob.digest)
        : await this.statRepositoryBlob(repo, blob.digest);
    if (stored && stored.size !== blob.size) {
      throw new RegistryError(
        'MANIFEST_INVALID',
        `descriptor of ${blob.digest} says ${blob.size} bytes but the blob has ${stored.size}`,
        { digest: blob.digest, declared: blob.size, actual: stored.size },
      );
    }
    return stored;
  }

  private async resolveTag(repo: string, tag: string): Promise<string | null> {
    const content = await readFileIfExists(this.tagPath(repo, tag));
    const digest = content?.toString('utf8').trim();
    return digest && isSha256Digest(digest) ? digest : null;
  }

  private async manifestMediaType(repo: string, digest: string): Promise<string | null> {
    const content = await readFileIfExists(this.manifestLinkPath(repo, digest));
    return content ? content.toString('utf8').trim() : null;
  }

  private repositoryPath(repo: string): string {
    return path.join(this.root, 'repositories', ...repo.split('/'));
  }

  private blobLinkPath(repo: string, digest: string): string {
    return path.join(this.repositoryPath(repo), '_blobs', 'sha256', sha256Hex(digest));
  }

  private manifestLinkPath(repo: string, digest: string): string {
    return path.join(this.repositoryPath(repo), '_manifests', 'sha256', sha256Hex(digest));
  }

  private tagPath(repo: string, tag: string): string {
    return path.join(this.repositoryPath(repo), '_tags', tag);
  }

  private async readDirIfExists(dir: string): Promise<string[]> {
    try {
      return await readdir(dir);
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
  }
}

/** The spec's "ASCIIbetical" order (Go's sort.Strings), independent of locale. */
function asciiOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
