import { z } from 'zod';
import { mediaTypes, type Registry } from '../../registry/index.js';
import { DistributionClient, streamBody } from './distribution-client.js';
import { defineStep, type StepContext } from './step.js';

/**
 * Copies an image of the app's team from Valve's registry to an external registry, byte for
 * byte (so the digest stays the same): blobs the target lacks, child manifests of an index,
 * then the manifest under the target tag (or by digest).
 */

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const HOST =
  /^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+)(:\d{1,5})?$/;

export interface ImageReference {
  /** `host[:port]`, or '' when the reference has none. */
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/**
 * `[host[:port]/]name[:tag][@sha256:...]`. The first component is a host when it has a dot
 * or a port or is `localhost`, as Docker reads references.
 */
export function parseImageReference(reference: string): ImageReference {
  let rest = reference.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new Error(`"${reference}": expected a sha256 digest after @`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new Error(`"${reference}": "${tag}" is not a valid tag`);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  const hasHost = first.includes('.') || first.includes(':') || first === 'localhost';
  const host = hasHost ? first : '';
  const repository = hasHost ? rest.slice(slash + 1) : rest;
  if (host && !HOST.test(host)) throw new Error(`"${reference}": "${host}" is not a host`);
  if (!NAME.test(repository)) {
    throw new Error(`"${reference}": "${repository}" is not a repository name`);
  }
  return { host, repository, tag, digest };
}

const flag = z.enum(['true', 'false']).default('false');

export const pushImageStep = defineStep({
  name: 'push-image',
  description: "Copy an image from Valve's registry to an external registry.",
  inputs: z
    .strictObject({
      image: z.string().min(1),
      to: z.string().min(1),
      username: z.string().min(1).optional(),
      password: z.string().optional(),
      insecure: flag,
    })
    .refine((inputs) => inputs.password === undefined || inputs.username !== undefined, {
      message: 'a password needs a username',
      path: ['username'],
    }),
  async run(context, inputs) {
    const source = sourceImage(context, inputs.image);
    const target = parseImageReference(inputs.to);
    if (!target.host) {
      throw new Error(`with.to: "${inputs.to}" names no registry host (e.g. ghcr.io/org/app:tag)`);
    }
    const registry = context.services.registry;
    const top = await registry.getManifest(source.repository, source.digest ?? source.tag!);
    if (!top) throw new Error(`with.image: ${inputs.image} is not in Valve's registry`);
    if (target.digest && target.digest !== top.digest) {
      throw new Error(`with.to: the image's digest is ${top.digest}, not ${target.digest}`);
    }
    const client = new DistributionClient({
      host: target.host,
      insecure: inputs.insecure === 'true',
      username: inputs.username,
      password: inputs.password,
      signal: context.signal,
    });
    const copy = new ImageCopy(registry, client, source.repository, target.repository, context);
    await copy.manifest(top.digest, top.body, top.mediaType, true);
    const reference = target.tag ?? source.tag ?? top.digest;
    const pushed = await client.putManifest(target.repository, reference, top.mediaType, top.body);
    if (pushed && pushed !== top.digest) {
      throw new Error(`${target.host} stored the manifest as ${pushed}, expected ${top.digest}`);
    }
    const image = `${target.host}/${target.repository}@${top.digest}`;
    context.log(
      `pushed ${target.host}/${target.repository}${reference === top.digest ? '' : `:${reference}`} (${top.digest}): ${copy.uploaded} blob(s) uploaded, ${copy.present} already there`,
    );
    return { digest: top.digest, image };
  },
});

/** The source: Valve's registry (host optional), and only a repository of the run's team. */
function sourceImage(context: StepContext, reference: string): ImageReference {
  const valveHost = context.services.registryHost();
  // Strip Valve's own host first: it need not look like a host (no dot, no port).
  const local = reference.startsWith(`${valveHost}/`)
    ? reference.slice(valveHost.length + 1)
    : reference;
  const parsed = parseImageReference(local);
  if (parsed.host) {
    throw new Error(`with.image: ${reference} is not in Valve's registry (${valveHost})`);
  }
  const team = parsed.repository.split('/')[0];
  if (team !== context.run.team || !parsed.repository.includes('/')) {
    throw new Error(
      `with.image: ${parsed.repository} is not a repository of team ${context.run.team}`,
    );
  }
  if (!parsed.tag && !parsed.digest) {
    throw new Error(`with.image: ${reference} needs a :tag or an @sha256: digest`);
  }
  return parsed;
}

/** Walks a manifest (and an index's children) and pushes what the target lacks. */
class ImageCopy {
  uploaded = 0;
  present = 0;
  private readonly done = new Set<string>();

  constructor(
    private readonly registry: Registry,
    private readonly client: DistributionClient,
    private readonly from: string,
    private readonly to: string,
    private readonly context: StepContext,
  ) {}

  /** Pushes what `body` references; the manifest itself too unless it is the top one. */
  async manifest(digest: string, body: Buffer, mediaType: string, top = false): Promise<void> {
    const document = JSON.parse(body.toString('utf8')) as {
      config?: { digest: string };
      layers?: { digest: string; urls?: string[] }[];
      manifests?: { digest: string }[];
    };
    if (document.manifests) {
      for (const child of document.manifests) {
        if (this.done.has(child.digest)) continue;
        const stored = await this.registry.getManifest(this.from, child.digest);
        if (!stored) throw new Error(`${this.from}: index entry ${child.digest} is missing`);
        await this.manifest(child.digest, stored.body, stored.mediaType);
      }
    } else {
      const blobs = [document.config, ...(document.layers ?? [])].filter(
        (blob): blob is { digest: string } => blob !== undefined,
      );
      for (const blob of blobs) await this.blob(blob.digest);
    }
    if (!top) {
      await this.client.putManifest(this.to, digest, mediaType || mediaTypes.ociManifest, body);
      this.done.add(digest);
    }
  }

  private async blob(digest: string): Promise<void> {
    if (this.done.has(digest)) return;
    this.done.add(digest);
    if (await this.client.hasBlob(this.to, digest)) {
      this.present++;
      return;
    }
    const stat = await this.registry.statBlob(digest);
    if (!stat) throw new Error(`${this.from}: blob ${digest} is missing from Valve's registry`);
    this.context.log(`uploading ${digest.slice(0, 19)} (${stat.size} bytes)`);
    await this.client.uploadBlob(this.to, digest, async () => {
      const stream = await this.registry.openBlob(digest);
      if (!stream) throw new Error(`blob ${digest} disappeared from Valve's registry`);
      return { body: streamBody(stream), length: stat.size };
    });
    this.uploaded++;
  }
}
