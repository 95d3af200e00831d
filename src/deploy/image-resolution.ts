/**
 * The image a deploy names, found in the team's registry and pinned by digest
 * (`resolveImage`: a digest, `repo@digest`, `repo:tag` or a tag), and the source commit it was
 * built from (`sourceCommitOf`: the image's `org.opencontainers.image.revision` label, else the
 * `Source-Commit:` trailer of an earlier deploy of the same digest).
 */
import { text } from 'node:stream/consumers';
import { ValveError } from '../errors.js';
import { logCommits, type GitService } from '../git/index.js';
import { parseTrailers } from './deploy-change.js';
import { deployRepoPath } from './desired-state.js';
import { repositoryOf } from './manifests.js';
import type { ImageSource } from './targets/target.js';

/** What looking an image up takes (a part of PromotionOptions). */
export interface ImageLookup {
  git: GitService;
  images: ImageSource;
  /** host:port clients pull images from, e.g. 127.0.0.1:7080 */
  registryHost: () => string;
}

/** An image of the registry pinned by digest. */
export interface ResolvedImage {
  repo: string;
  digest: string;
  /** `<registry host>/<repo>@<digest>` */
  reference: string;
}

/** An image of the team's registry, pinned by digest: `{reference, repo, digest}`. */
export async function resolveImage(
  lookup: ImageLookup,
  team: string,
  app: string,
  input: string,
): Promise<ResolvedImage> {
  const value = input.trim();
  let repo = `${team}/${app}`;
  let reference = value;
  if (!/^sha256:[a-f0-9]{64}$/.test(value)) {
    const at = value.lastIndexOf('@');
    const colon = value.lastIndexOf(':');
    let name = '';
    if (at > 0) {
      name = value.slice(0, at);
      reference = value.slice(at + 1);
    } else if (colon > value.lastIndexOf('/')) {
      name = value.slice(0, colon);
      reference = value.slice(colon + 1);
    } else if (value.includes('/')) {
      throw new ValveError(
        'INPUT_INVALID',
        `image: expected a tag or digest in "${value}" (e.g. ${repo}:v1 or ${repo}@sha256:...)`,
      );
    }
    if (name) repo = repositoryOf(name);
  }
  if (!repo.startsWith(`${team}/`))
    throw new ValveError('INPUT_INVALID', `image: ${repo} is not a repository of team ${team}`);
  let manifest;
  try {
    manifest = await lookup.images.getManifest(repo, reference);
  } catch {
    throw new ValveError('INPUT_INVALID', `image: "${value}" is not an image reference`);
  }
  if (!manifest)
    throw new ValveError(
      'DEPLOY_IMAGE_UNAVAILABLE',
      `image ${repo}${reference.startsWith('sha256:') ? '@' : ':'}${reference} is not in the registry`,
    );
  return {
    repo,
    digest: manifest.digest,
    reference: `${lookup.registryHost()}/${repo}@${manifest.digest}`,
  };
}

/** The commit an image was built from: its revision label, else an earlier deploy's trailer. */
export async function sourceCommitOf(
  lookup: ImageLookup,
  team: string,
  app: string,
  image: { repo: string; digest: string },
): Promise<string | null> {
  try {
    const label = await revisionLabel(lookup.images, image.repo, image.digest);
    if (label) return label;
  } catch {
    // Unreadable config: fall back to the deploy history.
  }
  const gitDir = lookup.git.pathOf(deployRepoPath(team, app));
  for (const commit of await logCommits(gitDir, 'refs/heads/main', { limit: 500 })) {
    const trailers = parseTrailers(commit.body);
    const source = trailers['Source-Commit'];
    if (trailers.Image?.endsWith(image.digest) && source && source !== 'unknown') return source;
  }
  return null;
}

async function revisionLabel(
  images: ImageSource,
  repo: string,
  digest: string,
): Promise<string | null> {
  let manifest = JSON.parse((await images.getManifest(repo, digest))!.body.toString()) as {
    manifests?: { digest: string }[];
    config?: { digest: string };
  };
  if (manifest.manifests?.[0]) {
    const first = await images.getManifest(repo, manifest.manifests[0].digest);
    if (!first) return null;
    manifest = JSON.parse(first.body.toString()) as typeof manifest;
  }
  if (!manifest.config) return null;
  const blob = await images.openBlob(manifest.config.digest);
  if (!blob) return null;
  const config = JSON.parse(await text(blob as NodeJS.ReadableStream & AsyncIterable<Buffer>)) as {
    config?: { Labels?: Record<string, string> };
  };
  const revision = config.config?.Labels?.['org.opencontainers.image.revision'];
  return revision && /^[0-9a-f]{7,64}$/.test(revision) ? revision : null;
}
