import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { BlobStore, type BlobRange, type BlobSource, type StoredBlob } from './blob-store.js';
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
import { UploadSessions } from './upload-sessions.js';

export interface RegistryOptions {
  dataDir: string;
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
 *   repositories/<name>/_blobs/sha256/<hex>        empty: the blob belongs to the repository
 *   repositories/<name>/_manifests/sha256/<hex>    the manifest's media type
 *   repositories/<name>/_tags/<tag>                the digest the tag points to
 *   uploads/<uuid>/{info.json,data}                resumable upload sessions
 *   tmp/                                           blobs being written, never visible
 *
 * Repository bookkeeping lives under `_` names, which no name component can start with.
 */
export class Registry {
  readonly root: string;
  readonly uploads: UploadSessions;
  private readonly blobs: BlobStore;

  constructor(options: RegistryOptions) {
    this.root = path.join(options.dataDir, 'registry');
    this.blobs = new BlobStore(this.root);
    this.uploads = new UploadSessions(this.root, this.blobs, (repo, digest) =>
      this.linkBlob(repo, digest),
    );
  }

  // --- blobs (the whole store) ---

  putBlob(data: BlobSource, expectedDigest?: string): Promise<StoredBlob> {
    return this.blobs.put(data, expectedDigest);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.blobs.stat(digest)) !== null;
  }

  statBlob(digest: string): Promise<{ size: number } | null> {
    return this.blobs.stat(digest);
  }

  openBlob(digest: string, range?: BlobRange): Promise<NodeJS.ReadableStream | null> {
    return this.blobs.open(digest, range);
  }

  // --- blobs as a repository sees them (what the HTTP API serves) ---

  /** The blob's size if it is stored and belongs to `repo`, else null. */
  async statRepositoryBlob(repo: string, digest: string): Promise<{ size: number } | null> {
    validateRepositoryName(repo);
    if (!(await existsOnDisk(this.blobLinkPath(repo, digest)))) return null;
    return this.blobs.stat(digest);
  }

  /** Stores a blob and makes it part of `repo` (the spec's single-POST upload). */
  async putRepositoryBlob(
    repo: string,
    data: BlobSource,
    expectedDigest: string,
  ): Promise<StoredBlob> {
    validateRepositoryName(repo);
    const stored = await this.blobs.put(data, expectedDigest);
    await this.linkBlob(repo, stored.digest);
    return stored;
  }

  /** Makes a stored blob part of `repo` (cross-repository mount; the caller checks access). */
  async linkBlob(repo: string, digest: string): Promise<void> {
    validateRepositoryName(repo);
    if (!(await this.blobs.stat(digest))) {
      throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} is not stored`, { digest });
    }
    const link = this.blobLinkPath(repo, digest);
    if (!(await existsOnDisk(link))) await writeFileDurably(link, '');
  }

  // --- manifests and tags ---

  async putManifest(
    repo: string,
    reference: string,
    body: Buffer,
    mediaType: string,
    options: PutManifestOptions = {},
  ): Promise<{ digest: string }> {
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

    // Each step is durable before the next, so a crash leaves at worst an unreferenced blob.
    await this.blobs.put(body, digest);
    for (const blob of references.blobs) await this.linkBlob(repo, blob.digest);
    await writeFileDurably(this.manifestLinkPath(repo, digest), references.mediaType);
    for (const tag of tags) await writeFileDurably(this.tagPath(repo, tag), digest);
    return { digest };
  }

  async getManifest(repo: string, reference: string): Promise<StoredManifest | null> {
    validateRepositoryName(repo);
    const target = parseReference(reference);
    const digest =
      target.kind === 'digest' ? target.digest : await this.resolveTag(repo, target.tag);
    if (!digest) return null;
    const mediaType = await this.manifestMediaType(repo, digest);
    if (!mediaType) return null;
    const body = await readFileIfExists(this.blobs.pathOf(digest));
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
   * store (there is no garbage collection yet). Returns whether the manifest was there.
   */
  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    validateRepositoryName(repo);
    if (!(await this.manifestMediaType(repo, digest))) return false;
    for (const tag of await this.listTags(repo)) {
      if ((await this.resolveTag(repo, tag)) === digest)
        await removeDurably(this.tagPath(repo, tag));
    }
    return removeDurably(this.manifestLinkPath(repo, digest));
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
