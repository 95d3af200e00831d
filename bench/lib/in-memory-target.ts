/**
 * A target that runs nothing, for benches of the reconciler: apply() remembers the spec and
 * status() reports it running, healthy and without drift, which is what a real target answers
 * for a workload that is in sync. It counts both, so a bench can tell that a pass applied nothing.
 */
import type { ImageSource, Target, WorkloadSpec, WorkloadStatus } from '../../src/deploy/index.js';

export class InMemoryTarget implements Target {
  readonly capabilities: Target['capabilities'] = {
    rollingUpdate: true,
    canary: false,
    blueGreen: false,
    restartOnCrash: false,
    selfHeal: false,
    logs: false,
    prune: true,
  };
  applies = 0;
  statusCalls = 0;
  private readonly running = new Map<string, WorkloadSpec>();

  constructor(readonly name = 'local') {}

  async apply(spec: WorkloadSpec): Promise<WorkloadStatus> {
    this.applies++;
    this.running.set(spec.key, spec);
    return this.describe(spec.key);
  }

  async status(key: string): Promise<WorkloadStatus> {
    this.statusCalls++;
    return this.describe(key);
  }

  async repair(): Promise<void> {}

  async delete(key: string): Promise<void> {
    this.running.delete(key);
  }

  async logs(): Promise<string> {
    return '';
  }

  async recover(): Promise<void> {}

  async close(): Promise<void> {}

  private describe(key: string): WorkloadStatus {
    const spec = this.running.get(key);
    return {
      key,
      health: spec ? 'healthy' : 'missing',
      url: spec ? `http://127.0.0.1:9/${key}` : null,
      image: spec?.image.digest ?? null,
      imageReference: spec?.image.reference ?? null,
      desiredReplicas: spec?.replicas ?? 0,
      readyReplicas: spec?.replicas ?? 0,
      instances: [],
      message: null,
      drift: [],
    };
  }
}

/** An image source that has every manifest (the reconciler checks only that it exists). */
export const everyImage: ImageSource = {
  getManifest: async (_repo, reference) => ({
    body: Buffer.from('{}'),
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: reference,
  }),
  openBlob: async () => null,
};
