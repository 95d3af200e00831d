import { createHash } from 'node:crypto';
import type { JobSpec } from '../executor.js';

export const labels = {
  run: 'valve.dev/run',
  job: 'valve.dev/job',
  managedBy: 'app.kubernetes.io/managed-by',
} as const;

export const annotations = {
  /** The job's host directory: what cleanupAfterCrash matches a run's workspace against. */
  workspace: 'valve.dev/workspace',
  jobKey: 'valve.dev/job-key',
} as const;

/** The name of a job's pod: `valve-<runId>-<jobKey>`, a DNS label (lowercase, at most 63 characters). */
export function podName(job: Pick<JobSpec, 'runId' | 'jobKey'>): string {
  const name = `valve-${job.runId}-${job.jobKey}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+$/, '');
  if (name.length <= 63) return name;
  return `${name.slice(0, 54).replace(/-+$/, '')}-${hash(name)}`;
}

/** A DNS label for a container name. */
export function containerName(id: string): string {
  const name =
    id
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/^-+|-+$/g, '') || 'x';
  return name.length <= 63 ? name : `${name.slice(0, 54)}-${hash(id)}`;
}

/** A label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and ending alphanumeric. */
export function labelValue(value: string): string {
  const clean = value
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  if (clean.length <= 63 && clean === value) return clean;
  return `${clean.slice(0, 54).replace(/[^A-Za-z0-9]+$/, '')}-${hash(value)}`.replace(/^-/, '');
}

function hash(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 8);
}
