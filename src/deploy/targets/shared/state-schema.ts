/**
 * The state file's shape both proxy targets (local, podman) keep: workloads with their stable
 * proxy port, last desired and serving spec, rollout, and instances. Each target adds what
 * its instances carry of their own (a pid's start time, a container's name and id).
 */
import { z } from 'zod';
import { rolloutStatusSchema } from '../rollout.js';
import { workloadSpecSchema } from '../target.js';

/**
 * `candidate`: started by an apply, not serving yet, or the new version of a canary or
 * blue-green rollout (then it may get a share of the traffic); `retiring`: replaced, being
 * stopped.
 */
export const instanceRoles = ['active', 'candidate', 'retiring'] as const;
export type InstanceRole = (typeof instanceRoles)[number];

/** An instance record: these fields and the target's own. */
export function instanceRecordSchemaWith<T extends z.ZodRawShape>(own: T) {
  return z.object({
    id: z.string(),
    role: z.enum(instanceRoles),
    /** The host port the instance answers on (127.0.0.1). */
    port: z.number().int(),
    /** Host pid of the instance's (main) process; 0 while none runs. */
    pid: z.number().int(),
    startedAt: z.string(),
    restarts: z.number().int(),
    image: z.object({ reference: z.string(), repo: z.string(), digest: z.string() }),
    ...own,
  });
}

/** The whole state file, over the target's instance record. */
export function stateSchemaOf<I extends z.ZodTypeAny>(instance: I) {
  const workload = z.object({
    key: z.string(),
    /** Name-safe form of the key: the workload's directory, part of every container name. */
    dirName: z.string(),
    proxyPort: z.number().int(),
    /** The last spec applied (it may have failed). */
    desired: workloadSpecSchema.nullable(),
    /** The spec the active instances run; null before the first successful apply. */
    serving: workloadSpecSchema.nullable(),
    instances: z.array(instance),
    message: z.string().nullable(),
    /** The last canary or blue-green rollout; a server that finds one unfinished rolls it back. */
    rollout: rolloutStatusSchema.nullable().optional(),
  });
  return {
    workload,
    state: z.object({ version: z.literal(1), workloads: z.array(workload) }),
  };
}
