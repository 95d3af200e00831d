import { createHash } from 'node:crypto';
import type { JobSpec } from '../executor.js';

/** Labels on everything a job creates, so a later server can find it after a crash. */
export const labelKeys = {
  run: 'valve.run',
  job: 'valve.job',
  workspace: 'valve.workspace',
  scratch: 'valve.scratch',
} as const;

/** `valve-<runId>-<jobKey>`, safe for podman names, shortened with a hash when long. */
export function jobResourceName(job: Pick<JobSpec, 'runId' | 'jobKey'>): string {
  const name = `valve-${slug(job.runId)}-${slug(job.jobKey)}`;
  if (name.length <= 60) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 51)}-${hash}`;
}

function slug(value: string): string {
  return value.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'x';
}
