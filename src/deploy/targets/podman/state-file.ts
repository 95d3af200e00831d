import { z } from 'zod';
import { rolloutStatusSchema } from '../rollout.js';
import { workloadSpecSchema } from '../target.js';
import { readJsonStateFile, writeJsonStateFile } from '../shared/state-file-io.js';

/**
 * The podman target's memory across server restarts: which workloads exist, the stable proxy
 * port of each, and every instance's container, so a new server process can adopt them. The
 * containers carry the same facts in their labels; the file adds what labels cannot hold (the
 * spec, the proxy port, the role of an instance during an apply).
 */

/**
 * `candidate`: started by an apply, not serving yet, or the new version of a canary or
 * blue-green rollout (then it may get a share of the traffic); `retiring`: replaced, being
 * stopped.
 */
export const instanceRoles = ['active', 'candidate', 'retiring'] as const;
export type InstanceRole = (typeof instanceRoles)[number];

export const instanceRecordSchema = z.object({
  id: z.string(),
  role: z.enum(instanceRoles),
  /** Container name, chosen before the container is created. */
  name: z.string(),
  /** Container id; null before `podman run` returned. Changes when a removed container is re-created. */
  container: z.string().nullable(),
  /** Host port published to the container's `spec.port` on 127.0.0.1. */
  port: z.number().int(),
  /** Host pid of the container's main process; 0 while it does not run. */
  pid: z.number().int(),
  startedAt: z.string(),
  restarts: z.number().int(),
  image: z.object({ reference: z.string(), repo: z.string(), digest: z.string() }),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

export const workloadRecordSchema = z.object({
  key: z.string(),
  /** Name-safe form of the key, part of every container name. */
  dirName: z.string(),
  proxyPort: z.number().int(),
  /** The last spec applied (it may have failed). */
  desired: workloadSpecSchema.nullable(),
  /** The spec the active instances run; null before the first successful apply. */
  serving: workloadSpecSchema.nullable(),
  instances: z.array(instanceRecordSchema),
  message: z.string().nullable(),
  /** The last canary or blue-green rollout; a server that finds one unfinished rolls it back. */
  rollout: rolloutStatusSchema.nullable().optional(),
});
export type WorkloadRecord = z.infer<typeof workloadRecordSchema>;

export const podmanStateSchema = z.object({
  version: z.literal(1),
  workloads: z.array(workloadRecordSchema),
});
export type PodmanState = z.infer<typeof podmanStateSchema>;

export async function readStateFile(file: string): Promise<PodmanState | null> {
  return readJsonStateFile(file, podmanStateSchema, 'podman target state file');
}

export async function writeStateFile(file: string, state: PodmanState): Promise<void> {
  await writeJsonStateFile(file, state, { mode: 0o600 });
}
