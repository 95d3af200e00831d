import { ValveError, invalidInput } from '../../../errors.js';
import { workloadSpecSchema, type WorkloadSpec } from '../target.js';

/** The spec check and the rollout failure both drivers throw, with the same wording. */

/** `spec` validated (defaults filled in); `INPUT_INVALID` naming every issue otherwise. */
export function parseWorkloadSpec(spec: WorkloadSpec): WorkloadSpec {
  const parsed = workloadSpecSchema.safeParse(spec);
  if (!parsed.success) {
    throw invalidInput(`workload spec: ${parsed.error.issues.map(describeIssue).join('; ')}`);
  }
  return parsed.data;
}

export function rolloutFailed(key: string, message: string): ValveError {
  return new ValveError('DEPLOY_ROLLOUT_FAILED', message, { workload: key });
}

function describeIssue(issue: { path: PropertyKey[]; message: string }): string {
  return `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`;
}
