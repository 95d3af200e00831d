import { z } from 'zod';
import { RegistryError } from './errors.js';
import { looksLikeDigest } from './names.js';

export const mediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const;

/** The manifest media types the registry accepts, and whether each lists images or blobs. */
const manifestKinds: Record<string, 'image' | 'index'> = {
  [mediaTypes.ociManifest]: 'image',
  [mediaTypes.dockerManifest]: 'image',
  [mediaTypes.ociIndex]: 'index',
  [mediaTypes.dockerManifestList]: 'index',
};

export const manifestMediaTypes = Object.keys(manifestKinds);

const descriptor = z.object({
  mediaType: z.string().min(1),
  digest: z.string().refine(looksLikeDigest, 'expected a digest like sha256:<hex>'),
  size: z.number().int().nonnegative(),
});

export type Descriptor = z.infer<typeof descriptor>;

const annotations = z.record(z.string(), z.string()).optional();

const imageManifest = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().min(1).optional(),
  config: descriptor,
  layers: z.array(descriptor),
  // `subject` may name a manifest that is not pushed yet (spec: "Push"), so it is not checked.
  subject: descriptor.optional(),
  annotations,
});

const imageIndex = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().min(1).optional(),
  manifests: z.array(descriptor),
  subject: descriptor.optional(),
  annotations,
});

/** What a manifest needs to exist before it may be stored. */
export interface ManifestReferences {
  /** The bare media type the manifest was validated as. */
  mediaType: string;
  blobs: Descriptor[];
  manifests: Descriptor[];
  /** The manifest this one refers to (signatures, SBOMs, attestations: the referrers API). */
  subject?: Descriptor;
  /** What the referrers API lists as the artifact's type: `artifactType`, else the config's. */
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** `application/vnd.oci.image.manifest.v1+json; charset=utf-8` -> the bare media type. */
export function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

/**
 * Validates a pushed manifest against its declared media type and returns the descriptors it
 * references. The bytes are never re-serialized: the registry stores exactly what was pushed.
 */
export function parseManifest(body: Buffer, declaredMediaType: string): ManifestReferences {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new RegistryError(
      'MANIFEST_INVALID',
      `manifest is not valid JSON: ${(error as Error).message}`,
    );
  }
  const declaredInBody = mediaTypeField(json);
  // Clients SHOULD send Content-Type; without one, the manifest's own mediaType field decides.
  const mediaType = bareMediaType(declaredMediaType) || declaredInBody || '';
  const kind = manifestKinds[mediaType];
  if (!kind) {
    throw new RegistryError(
      'MANIFEST_INVALID',
      `unsupported manifest media type "${mediaType || '(none)'}": expected one of ${manifestMediaTypes.join(', ')}`,
      { mediaType },
    );
  }
  if (declaredInBody !== undefined && declaredInBody !== mediaType) {
    throw new RegistryError(
      'MANIFEST_INVALID',
      `manifest mediaType "${declaredInBody}" does not match Content-Type "${mediaType}"`,
    );
  }
  const schema = kind === 'image' ? imageManifest : imageIndex;
  const result = schema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues
      .map((issue) => `${issue.path.join('.') || '(manifest)'}: ${issue.message}`)
      .join('; ');
    throw new RegistryError(
      'MANIFEST_INVALID',
      `manifest does not match ${mediaType}: ${problems}`,
      {
        issues: result.error.issues,
      },
    );
  }
  const { subject, annotations: notes } = result.data;
  const referrer = {
    ...(subject ? { subject } : {}),
    ...(notes ? { annotations: notes } : {}),
  };
  if ('manifests' in result.data) {
    const { artifactType } = result.data;
    return {
      mediaType,
      blobs: [],
      manifests: result.data.manifests,
      ...referrer,
      ...(artifactType ? { artifactType } : {}),
    };
  }
  return {
    mediaType,
    blobs: [result.data.config, ...result.data.layers],
    manifests: [],
    ...referrer,
    artifactType: result.data.artifactType ?? result.data.config.mediaType,
  };
}

function mediaTypeField(json: unknown): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const value = (json as { mediaType?: unknown }).mediaType;
  return typeof value === 'string' ? value : undefined;
}
