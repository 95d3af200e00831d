import { z } from 'zod';
import { rolloutStatusSchema } from '../rollout.js';
import { workloadSpecSchema } from '../target.js';
import { readJsonStateFile, writeJsonStateFile } from '../shared/state-file-io.js';

/**
 * The local target's memory across server restarts: which workloads exist, the stable proxy
 * port of each, and every instance's pid, so a new server process can adopt them.
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
  port: z.number().int(),
  /** 0 while no process runs. */
  pid: z.number().int(),
  /** Kernel start time of `pid` (/proc/<pid>/stat), to tell our process from a reused pid. */
  pidStartTime: z.string().nullable(),
  startedAt: z.string(),
  restarts: z.number().int(),
  image: z.object({ reference: z.string(), repo: z.string(), digest: z.string() }),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

export const workloadRecordSchema = z.object({
  key: z.string(),
  /** Filesystem-safe name of the key, for the workload's directory. */
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

export const localStateSchema = z.object({
  version: z.literal(1),
  workloads: z.array(workloadRecordSchema),
});
export type LocalState = z.infer<typeof localStateSchema>;

export async function readStateFile(file: string): Promise<LocalState | null> {
  return readJsonStateFile(file, localStateSchema, 'local target state file');
}

export async function writeStateFile(file: string, state: LocalState): Promise<void> {
  await writeJsonStateFile(file, state);
}
