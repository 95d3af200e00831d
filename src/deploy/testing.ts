/**
 * Fakes for tests of the deploy service and the reconciler: an image source holding images a
 * test adds, and a target that runs nothing, records what it is asked and reports what a test
 * tells it. Real images and real targets: the registry tests and src/deploy/targets/.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { GitService } from '../git/index.js';
import type {
  ImageSource,
  Target,
  TargetCapabilities,
  WorkloadSpec,
  WorkloadStatus,
} from './targets/target.js';

export class FakeImages implements ImageSource {
  private readonly manifests = new Map<string, { body: Buffer; digest: string }>();
  private readonly blobs = new Map<string, Buffer>();

  /** @param repo the only repository it holds images of */
  constructor(private readonly repo = 'dev/hello') {}

  /** Stores an image built from `revision`; returns its digest. */
  add(tag: string, revision: string): string {
    const config = Buffer.from(
      JSON.stringify({ config: { Labels: { 'org.opencontainers.image.revision': revision } } }),
    );
    const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
    this.blobs.set(configDigest, config);
    const body = Buffer.from(
      JSON.stringify({ schemaVersion: 2, config: { digest: configDigest }, layers: [] }),
    );
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    this.manifests.set(digest, { body, digest });
    this.manifests.set(tag, { body, digest });
    return digest;
  }

  async getManifest(repo: string, reference: string) {
    if (repo !== this.repo) return null;
    const found = this.manifests.get(reference);
    return found ? { ...found, mediaType: 'application/vnd.oci.image.manifest.v1+json' } : null;
  }

  async openBlob(digest: string) {
    const blob = this.blobs.get(digest);
    return blob ? Readable.from([blob]) : null;
  }
}

export class FakeTarget implements Target {
  readonly capabilities: TargetCapabilities = {
    rollingUpdate: true,
    canary: false,
    blueGreen: false,
    restartOnCrash: true,
    selfHeal: true,
    logs: true,
    prune: true,
  };
  readonly running = new Map<string, { spec: WorkloadSpec; drift: string[] }>();
  applies: WorkloadSpec[] = [];
  repairs: string[] = [];
  deletes: string[] = [];
  /** status() calls per workload key. */
  readonly statusCalls = new Map<string, number>();
  failNext: string | null = null;
  /** apply() of a key with a gate waits for it before it records the spec as running. */
  readonly gates = new Map<string, Promise<void>>();

  constructor(readonly name = 'local') {}

  async apply(spec: WorkloadSpec): Promise<WorkloadStatus> {
    this.applies.push(spec);
    if (this.failNext) {
      const message = this.failNext;
      this.failNext = null;
      throw new Error(message);
    }
    await this.gates.get(spec.key);
    this.running.set(spec.key, { spec, drift: [] });
    return this.status(spec.key);
  }

  async status(key: string): Promise<WorkloadStatus> {
    this.statusCalls.set(key, (this.statusCalls.get(key) ?? 0) + 1);
    const found = this.running.get(key);
    return {
      key,
      health: found ? 'healthy' : 'missing',
      url: found ? `http://${this.name}.test/${key}` : null,
      image: found?.spec.image.digest ?? null,
      imageReference: found?.spec.image.reference ?? null,
      desiredReplicas: found?.spec.replicas ?? 0,
      readyReplicas: found?.spec.replicas ?? 0,
      instances: [],
      message: null,
      drift: found?.drift ?? [],
    };
  }

  async repair(key: string) {
    this.repairs.push(key);
    const found = this.running.get(key);
    if (found) found.drift = [];
  }

  async delete(key: string) {
    this.deletes.push(key);
    this.running.delete(key);
  }

  async logs() {
    return '';
  }
  async recover() {}
  async close() {}
}

/** Makes the app's source repo `<team>/<app>.git` with `valve.yaml` on main, committed by `author`. */
export async function createAppRepo(
  git: GitService,
  app: string,
  valveYaml: string,
  author = 'alice',
): Promise<void> {
  await git.createRepo(`${app}.git`);
  await git.commit(
    `${app}.git`,
    {
      branch: 'main',
      changes: { 'valve.yaml': { content: valveYaml } },
      message: 'init',
      author: { name: author, email: `${author}@valve` },
    },
    author,
  );
}
