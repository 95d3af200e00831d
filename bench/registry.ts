/**
 * Valve's registry against CNCF Distribution (Debian's `docker-registry`), on the same machine in
 * the same run, with the same client (skopeo) and the same bytes; and `cp` of those bytes as the
 * disk's own limit.
 *
 * The image is written by the bench as an OCI image layout: N layers, each a tar holding one file
 * of random bytes, gzipped at level 0 (stored blocks: random data does not compress at any level,
 * and level 0 keeps generation cheap). The layers are gzip media types so that skopeo sends them
 * as they are (it compresses uncompressed tar layers on the way to a docker:// destination, which
 * would measure gzip instead of the registries). Every repetition writes a new image with new
 * random bytes, so no registry can answer "already there" to skopeo's HEAD; writing it is not
 * timed.
 *
 * Per repetition, the servers in alternating order: push (`skopeo copy oci:... docker://...`)
 * into a new tag, then pull (`skopeo copy docker://... oci:<new dir>`) and check the pulled
 * manifest is the one pushed. Each server's memory is sampled every 50 ms (VmRSS) and its VmHWM
 * read at the end; its CPU time is read from /proc around each copy. `sync` runs (untimed) before
 * every timed step, so one step's dirty pages are not written back during the next.
 *
 *   npm run bench:registry
 *   env: BENCH_REGISTRY_MB (image size in MiB, default 320), BENCH_REGISTRY_RUNS (default 3),
 *        BENCH_REGISTRY_LAYERS (default 6)
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { rename, stat, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { api, signup, startValve, waitFor, type Valve } from '../test/e2e/harness.js';

const MiB = 1024 * 1024;
const positive = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer`);
  return value;
};
const imageMiB = positive('BENCH_REGISTRY_MB', 320);
const runs = positive('BENCH_REGISTRY_RUNS', 3);
const layerCount = positive('BENCH_REGISTRY_LAYERS', 6);
const REPO = 'dev/bench';
const DISTRIBUTION = '/usr/bin/docker-registry';
const SAMPLE_MS = 50;
/** Sequential small requests for the per-request latency probe. */
const PROBES = 200;
/** cp + sync runs per repetition. */
const CP_SAMPLES = 3;

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const rate = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
const mibs = (value: number) => `${value.toFixed(0)} MiB/s`;
const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MiB`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const loadAverage = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const percent = (a: number, b: number) => `${((a / b) * 100).toFixed(0)}%`;

// ---------------------------------------------------------------------------------------------
// Clean-up: everything started or created is undone on success, failure and Ctrl-C alike.

const cleanups: (() => Promise<void> | void)[] = [];
const children = new Set<ChildProcess>();
let cleaning: Promise<void> | undefined;
/** Undoes everything in reverse order, once: Ctrl-C and the failing main both wait for it. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const child of children) child.kill('SIGKILL');
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (error) {
        console.error(`clean-up: ${String(error)}`);
      }
    }
  })();
  return cleaning;
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.error(`\n${signal}: stopping the servers and removing temp dirs`);
    void cleanUp().then(() => process.exit(130));
  });
}
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Tools.

const installed = (command: string, args: string[]) => spawnSync(command, args).status === 0;

/** skopeo and docker-registry from Debian, installed like scripts/setup-podman.sh does. */
function ensureTools(): void {
  const missing = [
    ...(installed('skopeo', ['--version']) ? [] : ['skopeo']),
    ...(installed(DISTRIBUTION, ['--version']) ? [] : ['docker-registry']),
  ];
  if (!missing.length) return;
  console.log(`installing ${missing.join(' ')} (apt)`);
  const sudo = process.getuid?.() === 0 ? [] : ['sudo'];
  const run = (args: string[]) => {
    const [command, ...rest] = [...sudo, ...args];
    execFileSync(command!, rest, {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  };
  run(['apt-get', 'update', '-qq']);
  run(['apt-get', 'install', '-y', '-qq', ...missing]);
}

const version = (command: string) =>
  execFileSync(command, ['--version'], { encoding: 'utf8' }).trim().split('\n')[0]!;

function sync(): void {
  execFileSync('sync');
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The test image: an OCI image layout written from scratch.

interface Blob {
  mediaType: string;
  digest: string;
  size: number;
}
interface Image {
  dir: string;
  manifest: Blob;
  layers: Blob[];
  /** Every blob skopeo moves: layers, config and manifest. */
  bytes: number;
}

/** A ustar header for one regular file. */
function tarHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  const field = (offset: number, length: number, value: string) =>
    header.write(value, offset, length, 'ascii');
  const octal = (value: number, length: number) =>
    `${value.toString(8).padStart(length - 1, '0')}\0`;
  field(0, 100, name);
  field(100, 8, octal(0o644, 8));
  field(108, 8, octal(0, 8));
  field(116, 8, octal(0, 8));
  field(124, 12, octal(size, 12));
  field(136, 12, octal(0, 12));
  field(148, 8, ' '.repeat(8));
  field(156, 1, '0');
  field(257, 8, 'ustar\u000000');
  let sum = 0;
  for (const byte of header) sum += byte;
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return header;
}

/** A tar with one file of `size` random bytes, fed to `diffId` as it goes. */
async function* randomTar(name: string, size: number, diffId: ReturnType<typeof createHash>) {
  const emit = (chunk: Buffer) => {
    diffId.update(chunk);
    return chunk;
  };
  yield emit(tarHeader(name, size));
  for (let left = size; left > 0; left -= MiB) {
    yield emit(randomFillSync(Buffer.allocUnsafe(Math.min(MiB, left))));
  }
  // Pad the file to a whole block, then the two zero blocks that end an archive.
  yield emit(Buffer.alloc(((512 - (size % 512)) % 512) + 1024));
}

async function writeBlob(dir: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(dir, 'blobs/sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

async function writeImage(dir: string, totalMiB: number, layers: number): Promise<Image> {
  mkdirSync(join(dir, 'blobs/sha256'), { recursive: true });
  const layerBlobs: Blob[] = [];
  const diffIds: string[] = [];
  const fileSize = Math.floor((totalMiB * MiB) / layers);
  for (let i = 0; i < layers; i++) {
    const diffId = createHash('sha256');
    const digest = createHash('sha256');
    let size = 0;
    const temp = join(dir, 'blobs/sha256', `.layer-${i}`);
    await pipeline(
      randomTar(`random-${i}.bin`, fileSize, diffId),
      createGzip({ level: 0, chunkSize: MiB }),
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          digest.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(temp),
    );
    const hex = digest.digest('hex');
    await rename(temp, join(dir, 'blobs/sha256', hex));
    layerBlobs.push({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: `sha256:${hex}`,
      size,
    });
    diffIds.push(`sha256:${diffId.digest('hex')}`);
  }
  const config = await writeBlob(
    dir,
    Buffer.from(
      JSON.stringify({
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
        os: 'linux',
        config: {},
        rootfs: { type: 'layers', diff_ids: diffIds },
      }),
    ),
  );
  const manifest = await writeBlob(
    dir,
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layerBlobs,
      }),
    ),
  );
  const manifestBlob = { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest };
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        { ...manifestBlob, annotations: { 'org.opencontainers.image.ref.name': 'bench' } },
      ],
    }),
  );
  const bytes = layerBlobs.reduce((sum, l) => sum + l.size, 0) + config.size + manifest.size;
  return { dir, manifest: manifestBlob, layers: layerBlobs, bytes };
}

// ---------------------------------------------------------------------------------------------
// The servers.

interface Server {
  name: string;
  host: string;
  pid: number;
  /** skopeo's credentials for this server, if it wants any. */
  creds: string | null;
}

async function startDistribution(root: string): Promise<Server> {
  const port = await freePort();
  const config = join(root, 'config.yml');
  // Debian's shipped config less its htpasswd auth, with storage and address of our own.
  await writeFile(
    config,
    [
      'version: 0.1',
      // Valve logs no requests (fastify's request logging is off); neither does this.
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  cache:',
      '    blobdescriptor: inmemory',
      '  filesystem:',
      `    rootdirectory: ${join(root, 'storage')}`,
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const child = spawn(DISTRIBUTION, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  });
  const host = `127.0.0.1:${port}`;
  await waitFor(
    'docker-registry to listen',
    async () => {
      if (child.exitCode !== null) throw new Error(`docker-registry exited:\n${output}`);
      return (await fetch(`http://${host}/v2/`)).ok;
    },
    30_000,
    50,
  );
  return { name: 'Distribution', host, pid: child.pid!, creds: null };
}

async function startValveServer(): Promise<Server> {
  // Our own data dir, so it goes away even when the server fails to start.
  const valve: Valve = await startValve({ dataDir: tempDir('valve-bench-data-') });
  cleanups.push(() => valve.destroy());
  const alice = await signup(valve, 'alice', 'dev');
  const created = await api(valve, alice.token, 'POST', '/api/apps', {
    team: 'dev',
    name: 'bench',
    template: 'node-http',
  });
  if (created.status !== 201) throw new Error(`create app: ${JSON.stringify(created.body)}`);
  const creds = `${alice.username}:${alice.token}`;
  return {
    name: 'Valve',
    host: new URL(valve.url).host,
    // The harness spawns node itself (no npm or shell wrapper), so this is the server.
    pid: valve.child.pid!,
    creds,
  };
}

// ---------------------------------------------------------------------------------------------
// Measuring.

function procStatus(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]);
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }));
/** Fields of /proc/<pid>/stat from the third (state) on, so index 11 is field 14, utime. */
function statFields(pid: number | 'self'): number[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
}
const ticksToMs = (ticks: number) => (ticks / CLOCK_TICKS) * 1000;
/** User + system CPU time of a process so far, in ms. */
function cpuMs(pid: number): number {
  const fields = statFields(pid);
  return ticksToMs(fields[11]! + fields[12]!);
}
/** User + system CPU time of this process's children that have ended and been waited for. */
function endedChildrenCpuMs(): number {
  const fields = statFields('self');
  return ticksToMs(fields[13]! + fields[14]!);
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5), so the peak leaves out start-up. */
function resetPeak(pid: number): boolean {
  try {
    execFileSync('sh', ['-c', `echo 5 > /proc/${pid}/clear_refs`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

class MemorySampler {
  peak = 0;
  samples = 0;
  private failure: unknown;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
  }
  sample(): void {
    try {
      this.peak = Math.max(this.peak, procStatus(this.pid).rss);
      this.samples++;
    } catch (error) {
      this.failure ??= error;
    }
  }
  stop(): void {
    clearInterval(this.timer);
    this.sample();
    if (this.failure) throw this.failure;
  }
}

let skopeoHome = '';
let skopeoPolicy = '';

/** Runs skopeo; its wall time and CPU time (it is the only child that ends meanwhile). */
async function skopeo(args: string[]): Promise<{ ms: number; cpuMs: number }> {
  const cpuBefore = endedChildrenCpuMs();
  const started = process.hrtime.bigint();
  const child = spawn('skopeo', ['--policy', skopeoPolicy, ...args], {
    env: { ...process.env, HOME: skopeoHome },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve(status ?? -1));
  });
  children.delete(child);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (code !== 0) {
    const shown = args.map((arg, i) =>
      /-creds$/.test(args[i - 1] ?? '') ? '<user>:<token>' : arg,
    );
    throw new Error(`skopeo ${shown.join(' ')} failed (${code}):\n${stderr}`);
  }
  return { ms, cpuMs: endedChildrenCpuMs() - cpuBefore };
}

interface Copy {
  ms: number;
  serverCpuMs: number;
  skopeoCpuMs: number;
}

async function timed(
  server: Server,
  work: () => Promise<{ ms: number; cpuMs: number }>,
): Promise<Copy> {
  sync();
  const cpuBefore = cpuMs(server.pid);
  const { ms, cpuMs: skopeoCpuMs } = await work();
  return { ms, serverCpuMs: cpuMs(server.pid) - cpuBefore, skopeoCpuMs };
}

function push(server: Server, image: Image, tag: string): Promise<Copy> {
  return timed(server, () =>
    skopeo([
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      ...(server.creds ? ['--dest-creds', server.creds] : []),
      `oci:${image.dir}:bench`,
      `docker://${server.host}/${REPO}:${tag}`,
    ]),
  );
}

async function pull(server: Server, image: Image, tag: string, into: string): Promise<Copy> {
  const copy = await timed(server, () =>
    skopeo([
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      ...(server.creds ? ['--src-creds', server.creds] : []),
      `docker://${server.host}/${REPO}:${tag}`,
      `oci:${into}:x`,
    ]),
  );
  // skopeo checked every digest; the manifest must also be the one pushed (nothing recompressed).
  const index = JSON.parse(readFileSync(join(into, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  if (index.manifests[0]?.digest !== image.manifest.digest)
    throw new Error(
      `${server.name} served ${index.manifests[0]?.digest}, pushed ${image.manifest.digest}`,
    );
  for (const layer of image.layers) {
    const { size } = await stat(join(into, 'blobs/sha256', layer.digest.slice('sha256:'.length)));
    if (size !== layer.size)
      throw new Error(`${server.name}: layer ${layer.digest} is ${size} bytes`);
  }
  return copy;
}

/** The disk's limit: the same blob files copied with cp into a new dir, and synced. */
function copyWithCp(image: Image, into: string): number {
  sync();
  const started = process.hrtime.bigint();
  execFileSync('cp', ['-r', join(image.dir, 'blobs'), into]);
  sync();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/**
 * What a client such as skopeo ends up sending: nothing if `/v2/` is open; Basic credentials
 * for a Basic challenge; for a Bearer challenge, the registry token its realm hands out.
 */
async function clientAuthorization(
  server: Server,
): Promise<{ headers: Record<string, string>; auth: string }> {
  const probe = await fetch(`http://${server.host}/v2/`);
  await probe.arrayBuffer();
  if (probe.ok) return { headers: {}, auth: 'none' };
  const challenge = probe.headers.get('www-authenticate') ?? '';
  if (probe.status !== 401 || !server.creds)
    throw new Error(`${server.name}: /v2/ answered ${probe.status} ${challenge}`);
  const basic = `Basic ${Buffer.from(server.creds).toString('base64')}`;
  if (/^basic/i.test(challenge)) return { headers: { authorization: basic }, auth: 'Basic' };
  const param = (name: string) => new RegExp(`${name}="([^"]*)"`).exec(challenge)?.[1];
  const realm = param('realm');
  if (!/^bearer/i.test(challenge) || !realm)
    throw new Error(`${server.name}: unexpected challenge ${challenge}`);
  const url = new URL(realm);
  url.searchParams.set('service', param('service') ?? '');
  url.searchParams.set('scope', `repository:${REPO}:pull`);
  const response = await fetch(url, { headers: { authorization: basic } });
  const body = (await response.json()) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (!response.ok || !token) throw new Error(`${server.name}: token endpoint ${response.status}`);
  return { headers: { authorization: `Bearer ${token}` }, auth: 'Bearer (registry token)' };
}

/**
 * Sequential HEAD requests for one blob on one kept-alive connection: what a small request
 * costs, auth included. node:http rather than fetch, whose own overhead is larger here.
 */
async function requestLatency(
  server: Server,
  digest: string,
): Promise<{ ms: number; auth: string }> {
  const { headers, auth } = await clientAuthorization(server);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const [hostname, port] = server.host.split(':');
  const head = () =>
    new Promise<number>((resolve, reject) => {
      const started = process.hrtime.bigint();
      const options = {
        hostname,
        port: Number(port),
        method: 'HEAD',
        path: `/v2/${REPO}/blobs/${digest}`,
        headers,
        agent,
      };
      request(options, (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode !== 200)
            reject(new Error(`${server.name}: HEAD blob answered ${response.statusCode}`));
          else resolve(Number(process.hrtime.bigint() - started) / 1e6);
        });
      })
        .on('error', reject)
        .end();
    });
  try {
    const times: number[] = [];
    for (let i = 0; i < PROBES; i++) times.push(await head());
    return { ms: median(times), auth };
  } finally {
    agent.destroy();
  }
}

function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    `  ${row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')}`;
  console.log(line(rows[0]!));
  console.log(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const row of rows.slice(1)) console.log(line(row));
}

// ---------------------------------------------------------------------------------------------

interface Result {
  push: Copy[];
  pull: Copy[];
  idleRss: number;
  sampler?: MemorySampler;
  hwm: number;
  hwmSinceStart: boolean;
  latency: { ms: number; auth: string };
}

async function main() {
  ensureTools();
  const work = tempDir('valve-bench-registry-');
  skopeoHome = join(work, 'home');
  skopeoPolicy = join(work, 'policy.json');
  mkdirSync(skopeoHome);
  await writeFile(skopeoPolicy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));

  const servers = [
    await startValveServer(),
    await startDistribution(tempDir('valve-bench-distribution-')),
  ];
  console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model.trim()}), node ${process.version}, ` +
      `${version('skopeo')}, docker-registry ${version(DISTRIBUTION).split(' ').slice(-2).join(' ')}`,
  );
  const disk = execFileSync('df', ['--output=source,fstype', work], { encoding: 'utf8' })
    .trim()
    .split('\n')[1]!
    .trim()
    .replace(/\s+/, ' ');
  console.log(`disk for images, both servers' storage and cp: ${tmpdir()} on ${disk}`);
  for (const s of servers) console.log(`${s.name} at ${s.host} (pid ${s.pid})`);
  console.log(`load average before: ${loadAverage()}`);

  // Warm-up: a small image through both servers, not counted (JIT, first-request paths).
  const warm = await writeImage(join(work, 'warm'), 8, 2);
  for (const server of servers) {
    await push(server, warm, 'warm-up');
    await pull(server, warm, 'warm-up', join(work, `warm-pull-${server.name}`));
  }
  rmSync(join(work, 'warm'), { recursive: true, force: true });
  for (const server of servers) rmSync(join(work, `warm-pull-${server.name}`), { recursive: true });

  const results = new Map<Server, Result>();
  for (const server of servers) {
    results.set(server, {
      push: [],
      pull: [],
      idleRss: procStatus(server.pid).rss,
      hwm: 0,
      hwmSinceStart: !resetPeak(server.pid),
      latency: await requestLatency(server, warm.layers[0]!.digest),
    });
  }
  const samplers = new Map(servers.map((s) => [s, new MemorySampler(s.pid)]));
  const cp: number[] = [];
  let bytes = 0;
  console.log(
    `\n${runs} repetition${runs === 1 ? '' : 's'} of an image of ${layerCount} layers, ${imageMiB} MiB of random bytes, new each time:`,
  );
  for (let run = 1; run <= runs; run++) {
    const started = performance.now();
    const image = await writeImage(join(work, `image-${run}`), imageMiB, layerCount);
    bytes = image.bytes;
    const generated = performance.now() - started;
    const order = run % 2 === 1 ? servers : [...servers].reverse();
    const parts: string[] = [];
    for (const server of order) {
      const result = results.get(server)!;
      const tag = `run-${run}`;
      const pushed = await push(server, image, tag);
      const into = join(work, `pull-${run}`);
      const pulled = await pull(server, image, tag, into);
      rmSync(into, { recursive: true, force: true });
      result.push.push(pushed);
      result.pull.push(pulled);
      parts.push(
        `${server.name} push ${seconds(pushed.ms)} (${mibs(rate(image.bytes, pushed.ms))}), ` +
          `pull ${seconds(pulled.ms)} (${mibs(rate(image.bytes, pulled.ms))})`,
      );
    }
    // cp + sync varies more than the copies through the servers, so it takes more samples.
    const cpMs: number[] = [];
    for (let i = 0; i < CP_SAMPLES; i++) {
      const into = join(work, `cp-${run}-${i}`);
      mkdirSync(into);
      cpMs.push(copyWithCp(image, into));
      rmSync(into, { recursive: true, force: true });
    }
    cp.push(...cpMs);
    rmSync(image.dir, { recursive: true, force: true });
    console.log(
      `#${run} (image written in ${seconds(generated)}, not counted): ${parts.join('; ')}; ` +
        `cp ${cpMs.map((ms) => mibs(rate(image.bytes, ms))).join(', ')}`,
    );
  }
  for (const [server, sampler] of samplers) {
    sampler.stop();
    const result = results.get(server)!;
    result.sampler = sampler;
    result.hwm = procStatus(server.pid).hwm;
  }

  // Summary.
  const [valve, distribution] = servers.map((s) => results.get(s)!) as [Result, Result];
  const cpRate = rate(bytes, median(cp));
  const pushRate = (r: Result) => rate(bytes, median(r.push.map((c) => c.ms)));
  const pullRate = (r: Result) => rate(bytes, median(r.pull.map((c) => c.ms)));
  const cpu = (copies: Copy[]) =>
    `${(median(copies.map((c) => c.serverCpuMs)) / 1000).toFixed(2)} s`;
  const skopeoCpu = (copies: Copy[]) =>
    `${(median(copies.map((c) => c.skopeoCpuMs)) / 1000).toFixed(2)} s`;
  const hwmLabel = [valve, distribution].some((r) => r.hwmSinceStart)
    ? 'VmHWM (since start)'
    : 'VmHWM (measured phase)';
  console.log(
    `\n${(bytes / MiB).toFixed(1)} MiB per copy (${layerCount} layers + config + manifest), medians of ${runs}; MiB = 2^20 bytes`,
  );
  printTable([
    ['', 'Valve', 'Distribution', 'Valve/Distribution'],
    [
      'push',
      mibs(pushRate(valve)),
      mibs(pushRate(distribution)),
      ratio(pushRate(valve), pushRate(distribution)),
    ],
    [
      'pull',
      mibs(pullRate(valve)),
      mibs(pullRate(distribution)),
      ratio(pullRate(valve), pullRate(distribution)),
    ],
    [
      'push, % of cp',
      percent(pushRate(valve), cpRate),
      percent(pushRate(distribution), cpRate),
      '',
    ],
    [
      'pull, % of cp',
      percent(pullRate(valve), cpRate),
      percent(pullRate(distribution), cpRate),
      '',
    ],
    ['server CPU per push', cpu(valve.push), cpu(distribution.push), ''],
    ['server CPU per pull', cpu(valve.pull), cpu(distribution.pull), ''],
    ['skopeo CPU per push', skopeoCpu(valve.push), skopeoCpu(distribution.push), ''],
    ['skopeo CPU per pull', skopeoCpu(valve.pull), skopeoCpu(distribution.pull), ''],
    [
      'RSS idle, before',
      mb(valve.idleRss),
      mb(distribution.idleRss),
      ratio(valve.idleRss, distribution.idleRss),
    ],
    [
      `RSS peak (every ${SAMPLE_MS} ms)`,
      mb(valve.sampler!.peak),
      mb(distribution.sampler!.peak),
      ratio(valve.sampler!.peak, distribution.sampler!.peak),
    ],
    [hwmLabel, mb(valve.hwm), mb(distribution.hwm), ratio(valve.hwm, distribution.hwm)],
    [
      `HEAD blob, ${PROBES} in a row`,
      `${valve.latency.ms.toFixed(2)} ms`,
      `${distribution.latency.ms.toFixed(2)} ms`,
      ratio(valve.latency.ms, distribution.latency.ms),
    ],
  ]);
  console.log(
    `  cp -r of the same blob files + sync: ${mibs(cpRate)} (median of ${cp.length}; the disk's limit here)`,
  );
  console.log(
    `  CPU: ${cpus().length} cores, so a copy has ${cpus().length} CPU-seconds per second of wall time for skopeo, the server and the kernel's write-back together.`,
  );
  console.log(
    `  load average after: ${loadAverage()} (anything else running on the machine shows here and in the numbers)`,
  );
  const pushRequests = 4 * (layerCount + 1) + 3;
  const authCost = Math.max(0, valve.latency.ms - distribution.latency.ms) * pushRequests;
  console.log(
    [
      '',
      'Fairness:',
      `- Distribution runs without auth; Valve authenticates every request (the HEAD-blob probe`,
      `  used what skopeo gets: ${valve.latency.auth}) and checks the app's team role. The`,
      '  HEAD-blob row is the cost of one small request with that; skopeo makes about 4 per blob',
      `  on a push (HEAD, POST, PATCH, PUT), ~${pushRequests} here, so Valve's extra per request adds`,
      `  up to ${authCost < 5 ? 'nothing measurable' : `~${seconds(authCost)}`} per push (an estimate, from an idle server).`,
      '- Both fsync before acknowledging: Valve the data after every PATCH, then the directories',
      '  of its renames; Distribution 2.8 every file it writes (upload data, hash state, links),',
      '  as strace shows.',
      '- The image was just written, so skopeo reads it from the page cache, and pulls are served',
      '  from the page cache on both servers: pull measures HTTP, hashing and the client writing.',
      '- skopeo, the server and the sync all share the same cores; skopeo hashes every blob too.',
    ].join('\n'),
  );
}

try {
  await main();
} catch (error) {
  // After Ctrl-C the killed skopeo fails too; that is not worth a message.
  if (!interrupted) console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
} finally {
  await cleanUp();
}
