import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { ImageSource, WorkloadImage } from '../target.js';

/**
 * Test support: real OCI images built in memory (manifest, config, gzip tar layers) and an
 * ImageSource serving them the way the registry does. Not used outside tests.
 */

export interface TestLayerEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: string;
  linkname?: string;
  mode?: number;
}

export async function buildLayer(entries: TestLayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = { name: entry.name, type, mode: entry.mode, linkname: entry.linkname };
    await new Promise<void>((resolve, reject) => {
      const callback = (error?: Error | null) => (error ? reject(error) : resolve());
      if (type === 'file') pack.entry(header, entry.content ?? '', callback);
      else pack.entry(header, callback);
    });
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks));
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

export class MemoryImageSource implements ImageSource {
  private readonly blobs = new Map<string, Buffer>();
  private readonly manifests = new Map<
    string,
    { body: Buffer; mediaType: string; digest: string }
  >();

  addBlob(data: Buffer): string {
    const digest = sha256(data);
    this.blobs.set(digest, data);
    return digest;
  }

  addManifest(repo: string, manifest: object, mediaType: string): string {
    const body = Buffer.from(JSON.stringify(manifest));
    const digest = sha256(body);
    this.manifests.set(`${repo}@${digest}`, { body, mediaType, digest });
    return digest;
  }

  async getManifest(repo: string, reference: string) {
    return this.manifests.get(`${repo}@${reference}`) ?? null;
  }

  async openBlob(digest: string) {
    const data = this.blobs.get(digest);
    return data ? Readable.from([data]) : null;
  }
}

/** Publishes an image with the given config and layers; returns it as a spec references it. */
export function publishImage(
  source: MemoryImageSource,
  repo: string,
  config: object,
  layers: Buffer[],
): WorkloadImage {
  const configBody = Buffer.from(JSON.stringify(config));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: source.addBlob(configBody),
      size: configBody.length,
    },
    layers: layers.map((layer) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: source.addBlob(layer),
      size: layer.length,
    })),
  };
  const digest = source.addManifest(repo, manifest, manifest.mediaType);
  return { reference: `localhost/${repo}@${digest}`, repo, digest };
}

/**
 * The app of the test images: an HTTP server on $PORT answering its VERSION, with /healthz
 * failing when HEALTHY=false. ERROR_RATE (0-1) answers that share of the other requests with
 * a 500, evenly spread (request n fails when ⌊(n+1)r⌋ > ⌊nr⌋), /healthz staying healthy: a
 * version that passes readiness but fails its users. PAGE_FILE answers the content of that
 * file (read on every request) instead of VERSION. Dynamic import works whether node treats
 * it as CJS or ESM.
 */
export const testServerSource = `
Promise.all([import('node:http'), import('node:fs')]).then(([{ createServer }, { readFileSync }]) => {
  const version = process.env.VERSION ?? 'unknown';
  const healthy = process.env.HEALTHY !== 'false';
  const errorRate = Number(process.env.ERROR_RATE ?? 0);
  let served = 0;
  createServer((req, res) => {
    if (req.url === '/healthz') {
      res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(healthy ? 'ok' : 'not ready');
      return;
    }
    const n = served++;
    if (Math.floor((n + 1) * errorRate) > Math.floor(n * errorRate)) {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(version + ' failed');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(process.env.PAGE_FILE ? readFileSync(process.env.PAGE_FILE, 'utf8') : version);
  }).listen(Number(process.env.PORT));
  console.log('listening on ' + process.env.PORT + ' as ' + version);
});
`;

/** A FROM-scratch-like image: only /app/server.js; runs on the host's node. */
export async function publishTestApp(
  source: MemoryImageSource,
  repo: string,
  options: {
    version: string;
    healthy?: boolean;
    /** Share (0-1) of non-/healthz requests answered 500. */
    errorRate?: number;
    /** Ships `/app/page.txt` with this content and answers it, read on every request. */
    page?: string;
  },
): Promise<WorkloadImage> {
  const layer = await buildLayer([
    { name: 'app/', type: 'directory', mode: 0o755 },
    { name: 'app/server.js', content: testServerSource, mode: 0o644 },
    ...(options.page === undefined
      ? []
      : [{ name: 'app/page.txt', content: options.page, mode: 0o644 }]),
  ]);
  const env = [`VERSION=${options.version}`];
  if (options.healthy === false) env.push('HEALTHY=false');
  if (options.errorRate !== undefined) env.push(`ERROR_RATE=${options.errorRate}`);
  if (options.page !== undefined) env.push('PAGE_FILE=page.txt');
  const config = {
    architecture: 'amd64',
    os: 'linux',
    config: { Entrypoint: ['node'], Cmd: ['server.js'], WorkingDir: '/app', Env: env },
    rootfs: { type: 'layers', diff_ids: [] },
  };
  return publishImage(source, repo, config, [layer]);
}
