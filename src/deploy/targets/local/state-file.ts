import { z } from 'zod';
import { readJsonStateFile, writeJsonStateFile } from '../shared/state-file-io.js';
import { instanceRecordSchemaWith, stateSchemaOf } from '../shared/state-schema.js';

/**
 * The local target's memory across server restarts: which workloads exist, the stable proxy
 * port of each, and every instance's pid, so a new server process can adopt them.
 */

export type { InstanceRole } from '../shared/state-schema.js';

export const instanceRecordSchema = instanceRecordSchemaWith({
  /** Kernel start time of `pid` (/proc/<pid>/stat), to tell our process from a reused pid. */
  pidStartTime: z.string().nullable(),
});
export type InstanceRecord = z.infer<typeof instanceRecordSchema>;

const schemas = stateSchemaOf(instanceRecordSchema);
export const workloadRecordSchema = schemas.workload;
export type WorkloadRecord = z.infer<typeof workloadRecordSchema>;
export const localStateSchema = schemas.state;
export type LocalState = z.infer<typeof localStateSchema>;

export async function readStateFile(file: string): Promise<LocalState | null> {
  return readJsonStateFile(file, localStateSchema, 'local target state file');
}

export async function writeStateFile(file: string, state: LocalState): Promise<void> {
  await writeJsonStateFile(file, state);
}
