import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { z } from 'zod';
import { ValveError } from '../../../errors.js';
import { hostPlatform } from '../../../registry/index.js';
import { pickPlatform } from '../local/image-cache.js';
import { imageInvalid, imageUnavailable } from '../shared/image-errors.js';
import type { ImageSource, TargetLogger, WorkloadImage } from '../target.js';
import type { PodmanCli } from './cli.js';

/**
 * Gets the image a workload runs into podman's storage and names it for `podman run`.
 *
 * - With `registry`: `podman pull <host>/<repo>@<digest>` from Valve's registry, with
 *   credentials asked for at each pull (a short-lived token is fine) in a 0600 auth file that
 *   is removed right after. This is what a podman on another host would do too.
 * - With `source` (an ImageSource, e.g. the Registry object itself): the manifest for this
 *   host's platform, its config and layers are written as an OCI archive and `podman load`ed
 *   under `localhost/valve-deploy/<repo>:sha256-<hex>`. No network and no credentials: it is
 *   the fallback when a pull fails, and the only way when no registry address is configured.
 *
 * An image already in podman's storage under either name is used as it is; containers are
 * then created with `--pull=never`.
 */

export interface RegistryAccess {
  /**
   * `host:port` of Valve's registry as podman reaches it, e.g. `127.0.0.1:7080`; a function when
   * it is known only later (the server's port once it listens), asked at each use.
   */
  host: string | (() => string);
  /**
   * Asked before each pull, with the repository it is for; a short-lived token scoped to it as
   * the password is fine.
   */
  credentials: (repo: string) => Promise<{ username: string; password: string }>;
  /** Verify the registry's TLS certificate (default false: Valve's registry is often plain HTTP on loopback). */
  tlsVerify?: boolean;
}

const descriptorSchema = z.object({
  mediaType: z.string().optional(),
  digest: z.string(),
  size: z.number().optional(),
  platform: z
    .object({ os: z.string(), architecture: z.string(), variant: z.string().optional() })
    .optional(),
});

const manifestSchema = z.object({
  mediaType: z.string().optional(),
  config: descriptorSchema.optional(),
  layers: z.array(descriptorSchema).optional(),
  manifests: z.array(descriptorSchema).optional(),
});

const indexMediaTypes = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

export class PodmanImages {
  private readonly pending = new Map<string, Promise<string>>();

  constructor(
    private readonly options: {
      cli: PodmanCli;
      registry?: RegistryAccess;
      source?: ImageSource;
      /** Where auth files and archives are written while in use (removed after). */
      scratchDir: string;
      logger: TargetLogger;
    },
  ) {
    if (!options.registry && !options.source)
      throw new Error('the podman target needs a registry address or an image source');
  }

  /** The name to `podman run` the image by; pulls or loads it first when podman lacks it. */
  ensure(image: WorkloadImage, progress: (message: string) => void = () => {}): Promise<string> {
    let pending = this.pending.get(image.digest);
    if (!pending) {
      pending = this.get(image, progress).finally(() => this.pending.delete(image.digest));
      this.pending.set(image.digest, pending);
    }
    return pending;
  }

  /** The names this target gives `image` in podman's storage (for tests and cleanup). */
  localNames(image: WorkloadImage): string[] {
    const { registry, source } = this.options;
    return [
      ...(registry ? [pulledName({ host: registryHost(registry) }, image)] : []),
      ...(source ? [loadedName(image)] : []),
    ];
  }

  private async get(image: WorkloadImage, progress: (message: string) => void): Promise<string> {
    for (const name of this.localNames(image)) {
      if (await this.exists(name)) return name;
    }
    const { registry, source, logger } = this.options;
    let pullError: Error | null = null;
    if (registry) {
      progress(`pulling ${image.reference} from ${registryHost(registry)}`);
      try {
        return await this.pull(registry, image);
      } catch (error) {
        pullError = error as Error;
        if (!source) throw error;
        logger.warn(
          { image: image.reference, err: pullError.message },
          'pull failed; loading the image from the registry storage instead',
        );
      }
    }
    progress(`loading ${image.reference} into podman`);
    try {
      return await this.load(source!, image);
    } catch (error) {
      if (pullError && error instanceof ValveError) {
        error.message = `${error.message} (and pulling it failed: ${pullError.message})`;
      }
      throw error;
    }
  }

  private async exists(name: string): Promise<boolean> {
    return (await this.options.cli.run(['image', 'exists', name])).code === 0;
  }

  private async pull(registry: RegistryAccess, image: WorkloadImage): Promise<string> {
    const { cli, scratchDir } = this.options;
    const host = registryHost(registry);
    const name = pulledName({ host }, image);
    const { username, password } = await registry.credentials(image.repo);
    await mkdir(scratchDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(scratchDir, 'pull-'));
    // An auth file rather than `--creds`: a command line is visible to every user through `ps`.
    const authFile = join(dir, 'auth.json');
    try {
      const auth = Buffer.from(`${username}:${password}`).toString('base64');
      await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }), {
        mode: 0o600,
      });
      const result = await cli.run([
        'pull',
        '--quiet',
        `--tls-verify=${registry.tlsVerify ?? false}`,
        '--authfile',
        authFile,
        name,
      ]);
      if (result.code !== 0) {
        throw imageUnavailable(image, `podman pull ${name} failed: ${firstError(result.stderr)}`);
      }
      // Pulled through an index, podman may know the image by its platform manifest only.
      if (await this.exists(name)) return name;
      const id = result.stdout.trim().split('\n').at(-1);
      if (!id) throw imageUnavailable(image, `podman pull ${name} printed no image id`);
      return id;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Writes the image as an OCI archive from the source and `podman load`s it. */
  private async load(source: ImageSource, image: WorkloadImage): Promise<string> {
    const { cli, scratchDir } = this.options;
    const name = loadedName(image);
    await mkdir(scratchDir, { recursive: true, mode: 0o700 });
    const dir = await mkdtemp(join(scratchDir, 'load-'));
    try {
      const { digest, body } = await platformManifest(source, image);
      const manifest = manifestSchema.parse(JSON.parse(body.toString('utf8')));
      if (!manifest.config) throw imageInvalid(image, `manifest ${digest} has no config`);
      const blobs = [manifest.config, ...(manifest.layers ?? [])];
      const files = new Map<string, string>();
      await writeFile(join(dir, 'manifest'), body);
      files.set(digest, join(dir, 'manifest'));
      for (const [index, blob] of blobs.entries()) {
        const file = join(dir, `blob-${index}`);
        await copyBlob(source, image, blob.digest, file);
        files.set(blob.digest, file);
      }
      const archive = join(dir, 'image.tar');
      await writeOciArchive(archive, files, {
        schemaVersion: 2,
        manifests: [
          {
            mediaType: manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json',
            digest,
            size: body.length,
            annotations: { 'org.opencontainers.image.ref.name': name },
          },
        ],
      });
      const result = await cli.run(['load', '--quiet', '--input', archive]);
      if (result.code !== 0)
        throw imageInvalid(image, `podman load failed: ${firstError(result.stderr)}`);
      if (!(await this.exists(name)))
        throw imageInvalid(image, `podman load did not name the image ${name}`);
      return name;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}

/** `127.0.0.1:7080/team-a/hello@sha256:…`: how podman names an image pulled by digest. */
export function pulledName(registry: { host: string }, image: WorkloadImage): string {
  return `${registry.host}/${image.repo}@${image.digest}`;
}

function registryHost(registry: RegistryAccess): string {
  return typeof registry.host === 'function' ? registry.host() : registry.host;
}

/** `localhost/valve-deploy/team-a/hello:sha256-…`: the name of an image loaded from a source. */
export function loadedName(image: WorkloadImage): string {
  return `localhost/valve-deploy/${image.repo}:${image.digest.replace(':', '-')}`;
}

/** The image manifest to run on this host: the digest itself, or its platform's entry of an index. */
async function platformManifest(
  source: ImageSource,
  image: WorkloadImage,
): Promise<{ digest: string; body: Buffer }> {
  let digest = image.digest;
  for (let depth = 0; depth < 3; depth++) {
    const stored = await source.getManifest(image.repo, digest);
    if (!stored) throw imageUnavailable(image, `manifest ${digest} is not in ${image.repo}`);
    verifyDigest(image, digest, stored.body);
    const parsed = manifestSchema.safeParse(JSON.parse(stored.body.toString('utf8')));
    if (!parsed.success) throw imageInvalid(image, `manifest ${digest} is not an OCI manifest`);
    const mediaType = parsed.data.mediaType ?? stored.mediaType;
    const isIndex =
      indexMediaTypes.has(mediaType) ||
      (parsed.data.manifests !== undefined && parsed.data.layers === undefined);
    if (!isIndex) return { digest, body: stored.body };
    digest = pickPlatform(parsed.data.manifests ?? [], hostPlatform(), image).digest;
  }
  throw imageInvalid(image, 'image indexes nest too deep');
}

/** Streams one blob to `file`, checking its digest on the way. */
async function copyBlob(
  source: ImageSource,
  image: WorkloadImage,
  digest: string,
  file: string,
): Promise<void> {
  const [algorithm, expected] = digest.split(':');
  if ((algorithm !== 'sha256' && algorithm !== 'sha512') || !expected)
    throw imageInvalid(image, `unsupported digest ${digest}`);
  const stream = await source.openBlob(digest);
  if (!stream) throw imageUnavailable(image, `blob ${digest} is missing`);
  const hash = createHash(algorithm);
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(stream, hashing, createWriteStream(file, { mode: 0o600 }));
  if (hash.digest('hex') !== expected)
    throw imageInvalid(image, `content of ${digest} does not match its digest`);
}

/** An OCI image layout as a tar, which `podman load` takes and names by the ref annotation. */
async function writeOciArchive(
  archive: string,
  blobs: Map<string, string>,
  index: object,
): Promise<void> {
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(archive, { mode: 0o600 }));
  const add = (name: string, content: Buffer) =>
    new Promise<void>((resolve, reject) =>
      pack.entry({ name, mode: 0o644 }, content, (error) => (error ? reject(error) : resolve())),
    );
  await add('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  await add('index.json', Buffer.from(JSON.stringify(index)));
  for (const [digest, file] of blobs) {
    const { size } = await stat(file);
    const [algorithm, hex] = digest.split(':');
    await new Promise<void>((resolve, reject) => {
      const entry = pack.entry({ name: `blobs/${algorithm}/${hex}`, size, mode: 0o644 }, (error) =>
        error ? reject(error) : resolve(),
      );
      createReadStream(file).on('error', reject).pipe(entry);
    });
  }
  pack.finalize();
  await written;
}

function verifyDigest(image: WorkloadImage, digest: string, body: Buffer): void {
  const [algorithm, expected] = digest.split(':');
  if ((algorithm !== 'sha256' && algorithm !== 'sha512') || !expected)
    throw imageInvalid(image, `unsupported digest ${digest}`);
  if (createHash(algorithm).update(body).digest('hex') !== expected)
    throw imageInvalid(image, `content of ${digest} does not match its digest`);
}

/** The error line of podman's stderr (c/image puts the cause last). */
function firstError(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/level=(warning|info|debug)/.test(line));
  return lines.at(-1) ?? 'no error message';
}
