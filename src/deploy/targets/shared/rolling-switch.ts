import {
  routeThroughProxies,
  type RolloutInstance,
  type RolloutWorkload,
} from './proxy-rollout.js';

/**
 * The rolling switch of the targets whose instances sit behind their own proxy (local,
 * podman): new instances start beside the serving ones and must pass readiness; the stable
 * address then moves to them in one step, and the old ones finish their in-flight requests
 * and stop. A new version that never gets ready is removed; the old one never stopped serving.
 */

/** What the switch needs of an instance. */
export interface SwitchInstance extends RolloutInstance {
  /** Restarted when it exits (candidates are not: their exit fails the apply). */
  supervised: boolean;
  start(): Promise<void>;
  /** Out of rotation, finishing its in-flight requests. */
  markDraining(): void;
}

/** What the switch needs of its target. */
export interface RollingSwitchHost<W extends RolloutWorkload<I>, I extends SwitchInstance> {
  /** What the progress messages call an instance: `instance` (a process) or `container`. */
  noun: string;
  /** How long replaced instances may take to finish their in-flight requests. */
  drainTimeoutMs: number;
  /** Saves the state file. */
  persist(): Promise<void>;
  /** Stops instances and forgets them (and saves). */
  removeInstances(workload: W, instances: I[]): Promise<void>;
  /** The last lines an instance wrote, for the message when it cannot get ready. */
  lastOutput(workload: W, instance: I): Promise<string[]> | string[];
}

/** One target's rolling switch, over its workloads `W` of instances `I`. */
export class RollingSwitch<W extends RolloutWorkload<I>, I extends SwitchInstance> {
  constructor(private readonly host: RollingSwitchHost<W, I>) {}

  /**
   * Adds `count` candidates (`add`, saved before any starts, so a new server finds them),
   * starts them and resolves once each is ready. When one cannot get ready (an exit fails at
   * once), all of them are removed and this throws, naming it, with its last output.
   */
  async launch(workload: W, count: number, add: () => Promise<I>): Promise<I[]> {
    const { host } = this;
    const candidates: I[] = [];
    try {
      for (let i = 0; i < count; i++) candidates.push(await add());
      await host.persist();
      const started = await Promise.allSettled(candidates.map((candidate) => candidate.start()));
      const failed = started.findIndex((result) => result.status === 'rejected');
      if (failed >= 0) {
        const instance = candidates[failed]!;
        const reason = (started[failed] as PromiseRejectedResult).reason as Error;
        const output = await host.lastOutput(workload, instance);
        throw new Error(
          `instance ${instance.id} ${reason.message}` +
            (output.length > 0 ? `; its last output:\n${output.join('\n')}` : ''),
        );
      }
      return candidates;
    } catch (error) {
      await host.removeInstances(workload, candidates);
      throw error;
    }
  }

  /**
   * One synchronous step, so each request goes wholly to the old or the new set: `incoming`
   * serve, `outgoing` stop receiving requests; once that is saved, `onSwitched`. Then
   * `outgoing` finish their in-flight requests (bounded by drainTimeoutMs) and are removed.
   */
  async swap(
    workload: W,
    incoming: I[],
    outgoing: I[],
    progress: (message: string) => void,
    onSwitched: () => void = () => {},
  ): Promise<void> {
    const { noun, drainTimeoutMs } = this.host;
    for (const instance of incoming) {
      instance.record.role = 'active';
      instance.supervised = true;
    }
    for (const instance of outgoing) {
      instance.record.role = 'retiring';
      instance.markDraining();
    }
    workload.canaryWeight = 0;
    routeThroughProxies(workload);
    await this.host.persist();
    onSwitched();
    if (outgoing.length === 0) return;
    progress(`draining ${outgoing.length} old ${noun}(s)`);
    const drained = await workload.proxy?.waitForIdle(
      outgoing.map((instance) => instance.id),
      drainTimeoutMs,
    );
    if (drained === false) {
      progress(`old ${noun}s still busy after ${drainTimeoutMs / 1000} s; stopping them anyway`);
    }
    await this.host.removeInstances(workload, outgoing);
  }
}
