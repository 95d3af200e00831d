import { z } from 'zod';
import { readJsonStateFile, writeJsonStateFile } from '../shared/state-file-io.js';
import { instanceRecordSchemaWith, stateSchemaOf } from '../shared/state-schema.js';

/**
 * The podman target's memory across server restarts: which workloads exist, the stable proxy
 * port of each, and every instance's container, so a new server process can adopt them. The
 * containers carry the same facts in their labels; the file adds what labels cannot hold (the
 * spec, the proxy port, the role of an instance during an apply).
 */

export type { InstanceRole } from '../shared/state-schema.js';

export const instanceRecordSchema = instanceRecordSchemaWith({
  /** Container name, chosen before the container is created. */
  name: z.string(),
  /** Container id; null before `podman run` returned. Changes when a removed container is re-created. */
  container: z.string().nullable(),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

const schemas = stateSchemaOf(instanceRecordSchema);
export const workloadRecordSchema = schemas.workload;
export type WorkloadRecord = z.infer<typeof workloadRecordSchema>;
export const podmanStateSchema = schemas.state;
export type PodmanState = z.infer<typeof podmanStateSchema>;

export async function readStateFile(file: string): Promise<PodmanState | null> {
  return readJsonStateFile(file, podmanStateSchema, 'podman target state file');
}

export async function writeStateFile(file: string, state: PodmanState): Promise<void> {
  await writeJsonStateFile(file, state, { mode: 0o600 });
}
