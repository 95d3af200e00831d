import type { Registry } from '../index.js';
import {
  ImageReader,
  type DescriptorView,
  type ImageConfigView,
  type PlatformView,
} from './image-reader.js';
import { pushOf, type PushLog, type PushRecord, type PushView } from './push-log.js';

export interface RepositorySummary {
  /** `<team>/<app>` */
  repository: string;
  app: string;
  tagCount: number;
  /** Bytes of the distinct blobs and manifests its tags reach. */
  size: number;
  lastPush: (PushView & { tag: string | null; digest: string }) | null;
}

export interface TagSummary {
  tag: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  platforms: PlatformView[];
  created: string | null;
  pushed: PushView | null;
}

export interface ChildManifestView extends DescriptorView {
  platform: PlatformView | null;
}

export interface ReferrerView extends DescriptorView {
  artifactType: string | null;
  annotations: Record<string, string>;
}

export interface ManifestDetail {
  repository: string;
  digest: string;
  mediaType: string;
  kind: 'image' | 'index';
  size: number;
  created: string | null;
  /** Tags that point at it now. */
  tags: string[];
  pushed: PushView | null;
  platforms: PlatformView[];
  /** An image's config (null for an index). */
  config: ImageConfigView | null;
  layers: DescriptorView[];
  /** An index's images, each with its platform and its own size. */
  manifests: ChildManifestView[];
  subject: DescriptorView | null;
  artifactType: string | null;
  annotations: Record<string, string>;
  /** Manifests whose subject this one is; absent when the registry keeps no referrers. */
  referrers?: ReferrerView[];
}

/** The referrers API, on registries that have it. */
type ReferrersLister = (
  repo: string,
  digest: string,
) => Promise<
  { mediaType: string; digest: string; size: number; artifactType?: string; annotations?: object }[]
>;

/**
 * What the registry holds, read for people: repositories with their size and last push, tags
 * with their size, platforms and pusher, a manifest's layers and config. Reads through the
 * registry's API and the push log; access is checked by the caller (routes.ts).
 */
export class ImageCatalog {
  constructor(
    private readonly registry: Registry,
    private readonly pushes: PushLog,
  ) {}

  /** Repositories named `<team>/<app>` that hold anything. */
  async repositoriesOf(team: string): Promise<string[]> {
    return (await this.registry.listRepositories()).filter((repo) => {
      const [owner, app, ...rest] = repo.split('/');
      return owner === team && app !== undefined && rest.length === 0;
    });
  }

  async summary(repo: string): Promise<RepositorySummary> {
    const reader = new ImageReader(this.registry, repo);
    const tags = await this.registry.listTags(repo);
    const blobs = new Map<string, number>();
    for (const tag of tags) {
      const manifest = await reader.manifest(tag);
      if (manifest) await reader.collectBlobs(manifest, blobs);
    }
    const last = await this.pushes.latest(repo);
    return {
      repository: repo,
      app: repo.split('/')[1] ?? repo,
      tagCount: tags.length,
      size: [...blobs.values()].reduce((sum, size) => sum + size, 0),
      lastPush: last && {
        by: last.by,
        at: last.at,
        via: last.via,
        run: last.run,
        tag: last.tag,
        digest: last.digest,
      },
    };
  }

  /** Every tag of the repository, in the registry's order, with what it points at. */
  async tags(repo: string): Promise<TagSummary[]> {
    if (!(await this.registry.repositoryExists(repo))) return [];
    const reader = new ImageReader(this.registry, repo);
    const history = await this.pushes.history(repo);
    const rows: TagSummary[] = [];
    for (const tag of await this.registry.listTags(repo)) {
      const manifest = await reader.manifest(tag);
      // Deleted between listing and reading: not a tag any more.
      if (!manifest) continue;
      rows.push({
        tag,
        digest: manifest.digest,
        mediaType: manifest.mediaType,
        kind: manifest.kind,
        size: await reader.size(manifest),
        platforms: await reader.platforms(manifest),
        created: await reader.created(manifest),
        pushed: pushOf(history, manifest.digest, tag),
      });
    }
    return rows;
  }

  /** A manifest by digest or tag, with its config, layers or child images; null if unknown. */
  async manifest(repo: string, reference: string): Promise<ManifestDetail | null> {
    if (!(await this.registry.repositoryExists(repo))) return null;
    const reader = new ImageReader(this.registry, repo);
    const manifest = await reader.manifest(reference);
    if (!manifest) return null;
    const tags: string[] = [];
    for (const tag of await this.registry.listTags(repo)) {
      if ((await reader.manifest(tag))?.digest === manifest.digest) tags.push(tag);
    }
    const children: ChildManifestView[] = [];
    for (const child of manifest.manifests) {
      const read = await reader.manifest(child.digest);
      children.push({
        mediaType: child.mediaType,
        digest: child.digest,
        size: read ? await reader.size(read) : child.size,
        platform: child.platform,
      });
    }
    const referrers = await this.referrers(repo, manifest.digest);
    const history: PushRecord[] = await this.pushes.history(repo);
    return {
      repository: repo,
      digest: manifest.digest,
      mediaType: manifest.mediaType,
      kind: manifest.kind,
      size: await reader.size(manifest),
      created: await reader.created(manifest),
      tags,
      pushed: pushOf(history, manifest.digest, tags[0]),
      platforms: await reader.platforms(manifest),
      config:
        manifest.kind === 'image' && manifest.config ? await reader.config(manifest.config) : null,
      layers: manifest.layers,
      manifests: children,
      subject: manifest.subject,
      artifactType: manifest.artifactType,
      annotations: manifest.annotations,
      ...(referrers ? { referrers } : {}),
    };
  }

  /** Removes a tag; the manifest stays (pullable by digest). Whether the tag existed. */
  deleteTag(repo: string, tag: string): Promise<boolean> {
    return this.registry.deleteTag(repo, tag);
  }

  private async referrers(repo: string, digest: string): Promise<ReferrerView[] | null> {
    const list = (this.registry as unknown as { listReferrers?: ReferrersLister }).listReferrers;
    if (typeof list !== 'function') return null;
    return (await list.call(this.registry, repo, digest)).map((referrer) => ({
      mediaType: referrer.mediaType,
      digest: referrer.digest,
      size: referrer.size,
      artifactType: referrer.artifactType ?? null,
      annotations: (referrer.annotations ?? {}) as Record<string, string>,
    }));
  }
}
