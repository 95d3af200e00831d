import { ValveError, invalidInput } from '../../../errors.js';
import { workloadSpecSchema, type TargetLogger, type WorkloadSpec } from '../target.js';

/**
 * The spec check and the rollout failure both drivers throw, with the same wording, and how a
 * failed apply or repair is recorded on the workload (local, podman).
 */

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

/** What recording a failure needs of a workload. */
export interface FailingWorkload {
  record: { key: string; message: string | null };
  /** An apply (or a repair) is under way. */
  progressing: boolean;
}

/**
 * An apply failed and the old version keeps serving: the workload is no longer progressing,
 * its message says why (a rolled-back rollout's own message, or what failed), saved and
 * logged; throws that (DEPLOY_ROLLOUT_FAILED unless the error was already a ValveError).
 */
export async function failApply(
  workload: FailingWorkload,
  spec: WorkloadSpec,
  error: unknown,
  persist: () => Promise<void>,
  logger: TargetLogger,
): Promise<never> {
  workload.progressing = false;
  const rolledBack = error instanceof ValveError && error.code === 'DEPLOY_ROLLOUT_FAILED';
  const message = rolledBack
    ? error.message
    : `rollout of ${spec.image.reference} failed: ${(error as Error).message}`;
  workload.record.message = message;
  await persist();
  logger.warn({ workload: spec.key, err: message }, 'rollout failed');
  throw error instanceof ValveError ? error : rolloutFailed(spec.key, message);
}

/**
 * A repair failed (what it had not replaced yet keeps serving): the workload's message says
 * why, saved; throws that (DEPLOY_ROLLOUT_FAILED unless the error was already a ValveError).
 */
export async function failRepair(
  workload: FailingWorkload,
  error: unknown,
  persist: () => Promise<void>,
): Promise<never> {
  const { key } = workload.record;
  const message = `repair of ${key} failed: ${(error as Error).message}`;
  workload.record.message = message;
  await persist();
  throw error instanceof ValveError ? error : rolloutFailed(key, message);
}

function describeIssue(issue: { path: PropertyKey[]; message: string }): string {
  return `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`;
}
