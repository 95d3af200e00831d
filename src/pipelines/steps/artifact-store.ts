import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import type { WrittenArchive } from './archive.js';

/**
 * The artifacts of one run (`storage.artifacts`), shared by its jobs. An artifact is
 * immutable once uploaded: a gzip tar and its metadata (every file with size and sha256),
 * made visible together by renaming a finished directory into place.
 *
 * Layout:
 *   <name>/artifact.tar.gz
 *   <name>/artifact.json
 *   .tmp/<uuid>/            uploads being written, and replaced artifacts being removed
 */

/** File-system safe and unambiguous in URLs; GitHub's forbidden characters are all excluded. */
export const artifactNameSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/,
    'expected 1-128 letters, digits, . _ -, not starting with . or -',
  );

const metadataSchema = z.object({
  id: z.string(),
  name: z.string(),
  runId: z.string(),
  jobKey: z.string(),
  createdAt: z.string(),
  retentionDays: z.number().int(),
  expiresAt: z.string(),
  /** Bytes of the archive. */
  size: z.number().int(),
  /** `sha256:<hex>` of the archive. */
  digest: z.string(),
  files: z.array(
    z.object({ path: z.string(), size: z.number().int(), sha256: z.string(), mode: z.number() }),
  ),
});

export type ArtifactMetadata = z.infer<typeof metadataSchema>;

export interface NewArtifact {
  name: string;
  runId: string;
  jobKey: string;
  retentionDays: number;
  /** Replace an artifact of the same name instead of failing. */
  overwrite: boolean;
  /** Writes the archive to the given path. */
  write(archive: string): Promise<WrittenArchive>;
}

export class ArtifactStore {
  constructor(
    readonly dir: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async put(artifact: NewArtifact): Promise<ArtifactMetadata> {
    artifactNameSchema.parse(artifact.name);
    const staging = join(this.dir, '.tmp', randomUUID());
    await mkdir(staging, { recursive: true });
    try {
      const archive = await artifact.write(join(staging, 'artifact.tar.gz'));
      const created = this.now();
      const metadata: ArtifactMetadata = {
        id: randomUUID(),
        name: artifact.name,
        runId: artifact.runId,
        jobKey: artifact.jobKey,
        createdAt: created.toISOString(),
        retentionDays: artifact.retentionDays,
        expiresAt: new Date(created.getTime() + artifact.retentionDays * 86_400_000).toISOString(),
        size: archive.size,
        digest: archive.digest,
        files: archive.files,
      };
      await writeFile(join(staging, 'artifact.json'), `${JSON.stringify(metadata, null, 2)}\n`);
      await this.publish(staging, artifact.name, artifact.overwrite);
      return metadata;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  async get(name: string): Promise<ArtifactMetadata | null> {
    if (!artifactNameSchema.safeParse(name).success) return null;
    const text = await readFile(join(this.dir, name, 'artifact.json'), 'utf8').catch(() => null);
    if (text === null) return null;
    return metadataSchema.parse(JSON.parse(text));
  }

  async list(): Promise<ArtifactMetadata[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const found: ArtifactMetadata[] = [];
    for (const name of names.sort()) {
      const metadata = await this.get(name);
      if (metadata) found.push(metadata);
    }
    return found;
  }

  archivePath(name: string): string {
    return join(this.dir, artifactNameSchema.parse(name), 'artifact.tar.gz');
  }

  /** Checks the stored archive against the digest recorded at upload. */
  async verify(metadata: ArtifactMetadata): Promise<void> {
    const hash = createHash('sha256');
    await pipeline(createReadStream(this.archivePath(metadata.name)), hash);
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== metadata.digest) {
      throw new Error(
        `artifact ${metadata.name} is corrupt: its archive has digest ${actual}, recorded ${metadata.digest}`,
      );
    }
  }

  private async publish(staging: string, name: string, overwrite: boolean): Promise<void> {
    const target = join(this.dir, name);
    try {
      // Renaming a directory onto an existing non-empty one fails: the name is taken.
      await rename(staging, target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      if (!overwrite) {
        throw new Error(
          `an artifact named ${name} already exists in this run; artifacts are immutable (use overwrite: true to replace it)`,
          { cause: error },
        );
      }
    }
    const old = join(this.dir, '.tmp', `${randomUUID()}-replaced`);
    await rename(target, old);
    await rename(staging, target);
    await rm(old, { recursive: true, force: true });
  }
}
