import { z } from 'zod';
import { rolloutSpecSchema, type RolloutSpec, type RolloutStrategy } from '../rollout-spec.js';

// The rollout spec is the app spec's (one schema for what users write and what targets get).
export {
  rolloutStrategies,
  type RolloutAnalysis,
  type RolloutSpec,
  type RolloutStep,
  type RolloutStrategy,
} from '../rollout-spec.js';

/**
 * The seam between the deploy reconciler and whatever runs workloads (local processes, podman,
 * Kubernetes). The reconciler calls only these verbs; each driver is a folder beside this file.
 * See README.md in this folder for the contract in prose.
 */

/** Where a target reads images from. The registry implements it (structurally). */
export interface ImageSource {
  getManifest(
    repo: string,
    reference: string,
  ): Promise<{ body: Buffer; mediaType: string; digest: string } | null>;
  openBlob(digest: string): Promise<NodeJS.ReadableStream | null>;
}

/** The image a workload runs, pinned by digest. */
export interface WorkloadImage {
  /** What the user wrote or the deploy repo pins, e.g. `localhost:7080/team-a/hello@sha256:…`. */
  reference: string;
  /** Repository inside the registry, e.g. `team-a/hello`. */
  repo: string;
  /** Digest of the manifest (image manifest or index). */
  digest: string;
}

export interface ReadinessProbe {
  /** HTTP GET path; a 2xx or 3xx answer means ready. */
  path: string;
  /** Seconds between probes once the instance is serving (default 10). */
  periodSeconds?: number;
  /** Seconds one probe may take (default 1). */
  timeoutSeconds?: number;
  /** Consecutive failed probes before a serving instance is taken out of rotation (default 3). */
  failureThreshold?: number;
}

/** What a target should run for one environment of one app. */
export interface WorkloadSpec {
  /** Unique per environment, e.g. `team-a/hello/dev`. */
  key: string;
  image: WorkloadImage;
  /** Replaces the image Entrypoint (and then the image Cmd is ignored unless `args` is set). */
  command?: string[];
  /** Replaces the image Cmd. */
  args?: string[];
  env: Record<string, string>;
  /**
   * Port the app listens on inside a container. Targets that run several instances on one host
   * (local) give each instance its own port instead and pass it as env `PORT`.
   */
  port: number;
  replicas: number;
  /** Without one, an instance is ready when `GET /` answers 2xx/3xx. */
  readiness?: ReadinessProbe;
  /**
   * How a new version replaces the serving one; without it, a rolling switch. Canary and
   * blue-green need `capabilities.canary` / `capabilities.blueGreen`.
   */
  rollout?: RolloutSpec;
}

const digestPattern = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export const workloadSpecSchema: z.ZodType<WorkloadSpec> = z.object({
  key: z
    .string()
    .min(1)
    .max(200)
    .refine((key) => ![...key].some((char) => char.charCodeAt(0) < 0x20), {
      message: 'must not contain control characters',
    }),
  image: z.object({
    reference: z.string().min(1),
    repo: z.string().min(1),
    digest: z.string().regex(digestPattern, 'expected a digest like sha256:<hex>'),
  }),
  command: z.array(z.string()).optional(),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()),
  port: z.number().int().min(1).max(65535),
  replicas: z.number().int().min(0).max(100),
  readiness: z
    .object({
      path: z.string().startsWith('/'),
      periodSeconds: z.number().positive().optional(),
      timeoutSeconds: z.number().positive().optional(),
      failureThreshold: z.number().int().min(1).optional(),
    })
    .optional(),
  rollout: rolloutSpecSchema.optional(),
});

/**
 * Health of a workload, best first. The order is the ranking used by `worstHealth`: a
 * workload with nothing running ('missing') is worse than one running short ('degraded').
 */
export const healthStates = ['healthy', 'progressing', 'degraded', 'missing'] as const;
export type HealthState = (typeof healthStates)[number];

/** Folds health states so the worst wins; no states at all is 'healthy'. */
export function worstHealth(states: Iterable<HealthState>): HealthState {
  let worst: HealthState = 'healthy';
  for (const state of states) {
    if (healthStates.indexOf(state) > healthStates.indexOf(worst)) worst = state;
  }
  return worst;
}

/** Lifecycle of one instance, as a target reports it. */
export const instanceStates = [
  'starting', // launched, not ready yet
  'ready', // passes readiness; receives traffic when it belongs to the serving version
  'unready', // running but failing readiness: out of rotation
  'restarting', // exited unexpectedly, waiting for its restart
  'draining', // replaced: finishing in-flight requests before it is stopped
  'stopping',
  'stopped',
] as const;
export type InstanceState = (typeof instanceStates)[number];

export interface InstanceStatus {
  id: string;
  /** Process id on the target's host; 0 while no process runs (e.g. waiting to restart). */
  pid: number;
  port: number;
  /** Manifest digest of the image the instance runs. */
  image: string;
  /** The image as the spec referenced it. */
  imageReference: string;
  /** Passes readiness now. */
  healthy: boolean;
  state: InstanceState;
  startedAt: string;
  restarts: number;
}

/**
 * Where a canary or blue-green rollout stands. `progressing`: starting the new version's
 * instances or moving traffic; `analyzing`: holding a step while its 5xx rate and health
 * checks are measured; `paused`: waiting for `promote(key)`, still analysing; `promoted`: the
 * new version is the stable one; `rolled-back`: the analysis (or `abort`) sent all traffic back
 * to the stable version and stopped the new one; `failed`: the new version never got ready (or
 * the rollback itself failed), the stable version serves.
 */
export const rolloutPhases = [
  'progressing',
  'paused',
  'analyzing',
  'promoted',
  'rolled-back',
  'failed',
] as const;
export type RolloutPhase = (typeof rolloutPhases)[number];

export interface RolloutAnalysisStatus {
  /** Requests that reached the new version since the rollout began (within the target's window). */
  requests: number;
  /** Of those, answered 5xx or not answered at all (connection failed). */
  errors5xx: number;
  /** errors5xx / requests; 0 without requests. */
  errorRate: number;
  /** Failed health checks (readiness probes, crashes) of the new version's instances. */
  failedChecks: number;
}

export interface RolloutStatus {
  strategy: Exclude<RolloutStrategy, 'rolling'>;
  phase: RolloutPhase;
  /** 1-based step under way (blue-green has one); 0 before the first. */
  step: number;
  steps: number;
  /** Share of the stable address's requests the new version gets now, 0-100. */
  weight: number;
  /** Manifest digests, like `WorkloadStatus.image`. */
  canaryImage: string;
  stableImage: string | null;
  /** Blue-green: an address serving only the new version until the switch; else null. */
  previewUrl: string | null;
  /** What happens now, or why it was rolled back. */
  message: string;
  analysis: RolloutAnalysisStatus;
  startedAt: string;
  updatedAt: string;
}

export interface WorkloadStatus {
  key: string;
  health: HealthState;
  /** Stable address of the workload; the same across applies and server restarts. */
  url: string | null;
  /** Manifest digest of the image that serves now (compare with `spec.image.digest`). */
  image: string | null;
  /** The serving image as the spec referenced it. */
  imageReference: string | null;
  desiredReplicas: number;
  readyReplicas: number;
  instances: InstanceStatus[];
  /** Why it is not healthy, or what the last failed apply said; null when all is well. */
  message: string | null;
  /**
   * What differs from the applied spec, one sentence each ("instance inst_x not running", "file
   * /app/server.js changed in the image root"); empty when nothing does or the target cannot
   * tell (`capabilities.selfHeal` false). `repair(key)` re-creates it.
   */
  drift: string[];
  /** The last canary or blue-green rollout of this workload, while and after it runs. */
  rollout?: RolloutStatus;
}

/** A pino logger fits; targets log through this and nothing else. */
export interface TargetLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: TargetLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/** What a driver can do beyond the verbs every driver has; the console shows only these. */
export interface TargetCapabilities {
  /** A new version replaces the old one without a failed request (start, switch, stop). */
  rollingUpdate: boolean;
  /**
   * `true`: exact traffic weights (a proxy splits requests); `'replica-ratio'`: the weight is
   * approximated by the ratio of new to old replicas behind one address (a Kubernetes Service
   * without a mesh); `false`: a canary spec is refused.
   */
  canary: boolean | 'replica-ratio';
  /** The new version runs beside the old one on a preview address, then takes over at once. */
  blueGreen: boolean;
  /** Crashed instances are restarted. */
  restartOnCrash: boolean;
  /** `status().drift` reports what differs from the applied spec, and `repair()` re-creates it. */
  selfHeal: boolean;
  logs: boolean;
  /** Removes what it runs for a workload that the spec no longer has (extra instances, objects). */
  prune: boolean;
}

export interface Target {
  readonly name: string;
  readonly capabilities: TargetCapabilities;
  /**
   * Brings the workload to the spec: resolves once the new version serves at the stable url
   * (and the old one is stopped); on failure the old version keeps serving, the status message
   * says why and it throws. Applying the spec that already serves is a no-op. With a canary or
   * blue-green `spec.rollout` it resolves once the new version is promoted (a manual promotion
   * is waited for) and throws DEPLOY_ROLLOUT_FAILED when it was rolled back.
   */
  apply(spec: WorkloadSpec, onProgress?: (message: string) => void): Promise<WorkloadStatus>;
  /**
   * The workload as it runs. `verify`: check for drift now rather than report what the last
   * periodic check found (may read files or ask an API: slower).
   */
  status(key: string, options?: { verify?: boolean }): Promise<WorkloadStatus>;
  /**
   * Re-creates what drifted (see `WorkloadStatus.drift`) without a failed request; a workload
   * without drift, or unknown, is left alone. Runs between applies, never during one.
   */
  repair(key: string): Promise<void>;
  /**
   * A canary or blue-green rollout in progress: skip the remaining steps (or end the wait for
   * a manual promotion) and make the new version the stable one. Resolves once asked; the
   * `apply` under way resolves when it is done. Throws CONFLICT when no rollout runs.
   */
  promote?(key: string): Promise<void>;
  /**
   * A canary or blue-green rollout in progress: roll it back now (its `apply` throws
   * DEPLOY_ROLLOUT_FAILED). Throws CONFLICT when no rollout runs.
   */
  abort?(key: string): Promise<void>;
  /** Stops and forgets the workload; deleting an unknown key is a no-op. */
  delete(key: string): Promise<void>;
  /** The tail of the workload's output, one block per instance. */
  logs(key: string, options?: { tailLines?: number }): Promise<string>;
  /** Called once at server start: re-adopts instances still running from an earlier server process. */
  recover(): Promise<void>;
  /** Server shutdown: stops proxies and timers but LEAVES instances running for recover(). */
  close(): Promise<void>;
}
