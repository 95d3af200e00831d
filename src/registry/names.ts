import { RegistryError } from './errors.js';

/** The spec's `<name>` grammar (spec.md, "Pulling manifests"), anchored. */
const REPOSITORY_NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
/** The spec's tag grammar: at most 128 characters. */
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** The only algorithm stored; the spec requires sha256 and makes others optional. */
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** The image spec's general digest grammar, to tell "a digest we don't store" from garbage. */
const ANY_DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/**
 * Clients cap `host:port/name` at 255 characters; 200 leaves room for the host. Valve names
 * are `<team>/<app>[/...]`: a name needs at least two components so the first one is always
 * the owning team, which is what authorization keys on.
 */
const MAX_NAME_LENGTH = 200;

export function validateRepositoryName(name: string): string {
  if (name.length > MAX_NAME_LENGTH || !REPOSITORY_NAME.test(name) || !name.includes('/')) {
    throw new RegistryError(
      'NAME_INVALID',
      `invalid repository name "${name}": expected <team>/<app>, lowercase components of letters, digits and . _ __ - separators, at most ${MAX_NAME_LENGTH} characters`,
      { name },
    );
  }
  return name;
}

export function isTag(reference: string): boolean {
  return TAG.test(reference);
}

export function validateTag(tag: string): string {
  if (!isTag(tag)) {
    throw new RegistryError(
      'MANIFEST_INVALID',
      `invalid tag "${tag}": expected 1-128 of letters, digits, _ . -, not starting with . or -`,
      { tag },
    );
  }
  return tag;
}

export function looksLikeDigest(value: string): boolean {
  return ANY_DIGEST.test(value);
}

/** Returns the hex part of a sha256 digest, or throws DIGEST_INVALID. */
export function sha256Hex(digest: string): string {
  if (!SHA256_DIGEST.test(digest)) {
    throw new RegistryError(
      'DIGEST_INVALID',
      `invalid digest "${digest}": expected sha256:<64 lowercase hex digits>`,
      { digest },
    );
  }
  return digest.slice('sha256:'.length);
}

export function isSha256Digest(value: string): boolean {
  return SHA256_DIGEST.test(value);
}

export type ManifestReference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: string };

/** A `<tag-or-digest>`: anything with a colon must be a sha256 digest, everything else a tag. */
export function parseReference(reference: string): ManifestReference {
  if (reference.includes(':')) {
    sha256Hex(reference);
    return { kind: 'digest', digest: reference };
  }
  return { kind: 'tag', tag: validateTag(reference) };
}
