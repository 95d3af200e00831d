import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { Watch } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';

export type PodProgress =
  { state: 'ready' } | { state: 'waiting'; detail: string } | { state: 'failed'; reason: string };

/** Container states that do not get better by waiting (an image that cannot be pulled keeps backing off). */
const hopeless = new Set([
  'ErrImagePull',
  'ImagePullBackOff',
  'InvalidImageName',
  'ErrImageNeverPull',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
  'CrashLoopBackOff',
]);

/** Where a job pod stands: ready once it runs and every container is ready (services' readiness probes pass). */
export function podProgress(pod: V1Pod): PodProgress {
  const status = pod.status ?? {};
  if (status.phase === 'Failed' || status.phase === 'Succeeded')
    return {
      state: 'failed',
      reason: `pod ${status.phase.toLowerCase()}${status.message ? `: ${status.message}` : ''}`,
    };
  for (const container of status.containerStatuses ?? []) {
    const waiting = container.state?.waiting;
    if (waiting?.reason && hopeless.has(waiting.reason))
      return {
        state: 'failed',
        reason: `container ${container.name}: ${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`,
      };
    const terminated = container.state?.terminated;
    if (terminated)
      return {
        state: 'failed',
        reason: `container ${container.name} exited (${terminated.reason ?? 'exit code'} ${terminated.exitCode})`,
      };
  }
  const ready = status.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
  if (status.phase === 'Running' && ready) return { state: 'ready' };
  const unschedulable = status.conditions?.find(
    (c) => c.type === 'PodScheduled' && c.status === 'False',
  );
  const waitingOn = (status.containerStatuses ?? [])
    .filter((c) => c.state?.waiting?.reason || !c.ready)
    .map((c) => `${c.name} ${c.state?.waiting?.reason ?? 'not ready'}`);
  return {
    state: 'waiting',
    detail: [status.phase ?? 'Pending', unschedulable?.message, ...waitingOn]
      .filter(Boolean)
      .join(', '),
  };
}

/**
 * Watches the pod until it is ready. A watch without a resourceVersion starts with the pod's
 * current state, so nothing that happened since its creation is missed; a watch the server
 * ends is started again.
 */
export async function waitForPodReady(
  config: KubeConfig,
  namespace: string,
  name: string,
  options: { timeoutMs: number; signal: AbortSignal; log(line: string): void },
): Promise<void> {
  const watch = new Watch(config);
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([options.signal, deadline]);
  let lastDetail = '';
  while (!signal.aborted) {
    let request: AbortController | undefined;
    let settled = false;
    const outcome = await new Promise<PodProgress | 'ended' | 'aborted'>((resolve) => {
      const onAbort = () => finish('aborted');
      const finish = (value: PodProgress | 'ended' | 'aborted') => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      // An HTTP error (401, 403, 404...) is final; a dropped connection or the client's
      // inactivity timeout (no event for 30 s while an image pulls) just needs a new watch.
      const failed = (error: unknown) =>
        typeof error === 'object' && error !== null && 'statusCode' in error
          ? finish({ state: 'failed', reason: `watching pod ${name} failed: ${String(error)}` })
          : finish('ended');
      watch
        .watch(
          `/api/v1/namespaces/${namespace}/pods`,
          { fieldSelector: `metadata.name=${name}` },
          (type: string, pod: V1Pod) => {
            if (type === 'DELETED')
              return finish({ state: 'failed', reason: 'the pod was deleted' });
            const progress = podProgress(pod);
            if (progress.state !== 'waiting') return finish(progress);
            if (progress.detail !== lastDetail) options.log(`pod ${name}: ${progress.detail}`);
            lastDetail = progress.detail;
          },
          (error: unknown) => (error ? failed(error) : finish('ended')),
        )
        .then((controller) => {
          request = controller;
          if (settled) controller.abort();
        })
        .catch(failed);
    });
    request?.abort();
    if (outcome === 'aborted') break;
    if (outcome === 'ended') {
      await sleep(500, undefined, { signal }).catch(() => undefined);
      continue;
    }
    if (outcome.state === 'ready') return;
    if (outcome.state === 'failed') throw new Error(outcome.reason);
  }
  options.signal.throwIfAborted();
  throw new Error(
    `pod ${name} was not ready after ${Math.round(options.timeoutMs / 1000)} s${lastDetail ? `: ${lastDetail}` : ''}`,
  );
}
