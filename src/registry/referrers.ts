import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { isNotFound, readFileIfExists, removeDurably, writeFileDurably } from './durable-fs.js';
import { mediaTypes } from './manifests.js';
import { sha256Hex } from './names.js';

/** One entry of a referrers list: the descriptor of a manifest whose `subject` is the digest. */
export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/**
 * The referrers index of one registry (OCI Distribution 1.1, "Listing Referrers"): for every
 * manifest pushed with a `subject`, a small file holding its descriptor under
 *
 *   repositories/<name>/_referrers/sha256/<subject hex>/<referrer hex>
 *
 * so listing the referrers of a digest reads one directory. Entries are written after the
 * referrer's manifest is stored and removed when it is deleted; the subject itself need not
 * exist (the spec lets a signature be pushed before the image it signs).
 */
export class ReferrersIndex {
  constructor(private readonly repositoryPath: (repo: string) => string) {}

  async record(repo: string, subject: string, referrer: ReferrerDescriptor): Promise<void> {
    await writeFileDurably(
      this.entryPath(repo, subject, referrer.digest),
      JSON.stringify(referrer),
    );
  }

  async remove(repo: string, subject: string, referrer: string): Promise<void> {
    await removeDurably(this.entryPath(repo, subject, referrer));
  }

  /** The referrers of `subject` in `repo`, only those of `artifactType` when it is given. */
  async list(repo: string, subject: string, artifactType?: string): Promise<ReferrerDescriptor[]> {
    const dir = this.subjectDir(repo, subject);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const found: ReferrerDescriptor[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      const content = await readFileIfExists(path.join(dir, name));
      if (!content) continue;
      const entry = JSON.parse(content.toString('utf8')) as ReferrerDescriptor;
      if (artifactType === undefined || entry.artifactType === artifactType) found.push(entry);
    }
    return found;
  }

  /** The image index the referrers API answers with. */
  static asIndex(referrers: ReferrerDescriptor[]): object {
    return { schemaVersion: 2, mediaType: mediaTypes.ociIndex, manifests: referrers };
  }

  private subjectDir(repo: string, subject: string): string {
    return path.join(this.repositoryPath(repo), '_referrers', 'sha256', sha256Hex(subject));
  }

  private entryPath(repo: string, subject: string, referrer: string): string {
    return path.join(this.subjectDir(repo, subject), sha256Hex(referrer));
  }
}
