import type { TargetLogger } from '../target.js';
import type { PodmanCli } from './cli.js';
import {
  labelKeys,
  listContainers,
  removeContainers,
  type ObservedContainer,
} from './containers.js';
import { Rounds } from './rounds.js';
import type { Workload } from './workload.js';

/**
 * The target's one look at podman: `podman ps --all` of the containers carrying its owner
 * label, every `intervalMs` while it has workloads (never two at once). Each instance is told
 * what became of its container; containers no instance owns are the workloads' strays, and
 * are removed once `sweep()` allows (after recovery adopted what it could).
 */
export class ContainerWatch {
  /** Why the last `podman ps` failed; null when it worked. */
  listError: string | null = null;
  private listings: Promise<void> = Promise.resolve();
  private readonly rounds = new Rounds(async () => {
    if ([...this.options.workloads()].length > 0) await this.refresh().catch(() => {});
  });

  constructor(
    private readonly options: {
      cli: PodmanCli;
      /** Value of the `valve.dev/target` label. */
      owner: string;
      intervalMs: number;
      logger: TargetLogger;
      workloads: () => Iterable<Workload>;
      /** Whether strays may be removed now. */
      sweep: () => boolean;
    },
  ) {}

  /** Starts listing every interval (once; not after `stop()`). */
  start(): void {
    this.rounds.start(this.options.intervalMs);
  }

  /** No more listings; resolves once the one under way is over. */
  async stop(): Promise<void> {
    this.rounds.stop();
    await this.listings;
  }

  /** Lists the containers and tells each instance what became of its own; a caller gets a listing that begins after its call. */
  refresh(): Promise<void> {
    const next = this.listings.then(() => this.listOnce());
    this.listings = next.catch(() => {});
    return next;
  }

  private async listOnce(): Promise<void> {
    if (this.rounds.stopped) return;
    const { cli, owner, logger } = this.options;
    const takenAt = Date.now();
    // An instance forgotten while podman lists still owned its container when the listing began.
    const owned = new Set(this.instanceIds());
    let containers: ObservedContainer[];
    try {
      containers = await listContainers(cli, labelKeys.owner, owner);
      this.listError = null;
    } catch (error) {
      this.listError = `cannot list containers: ${(error as Error).message}`;
      logger.warn({ err: this.listError }, 'podman ps failed');
      return;
    }
    if (this.rounds.stopped) return;
    const byInstance = new Map<string, ObservedContainer>();
    for (const container of containers) {
      const id = container.labels[labelKeys.instance];
      if (id) byInstance.set(id, container);
    }
    for (const workload of this.options.workloads()) {
      for (const instance of workload.instances) {
        owned.add(instance.id);
        instance.observe(byInstance.get(instance.id) ?? null, takenAt);
      }
    }
    const strays = containers.filter(
      (container) => !owned.has(container.labels[labelKeys.instance] ?? ''),
    );
    for (const workload of this.options.workloads()) {
      workload.strays = strays
        .filter((container) => container.labels[labelKeys.workload] === workload.record.key)
        .map((container) => container.name);
    }
    if (strays.length > 0 && this.options.sweep()) {
      logger.info(
        { containers: strays.map((container) => container.name) },
        'removing containers no instance owns',
      );
      await removeContainers(
        cli,
        strays.map((container) => container.id),
        0,
      ).catch((error: unknown) =>
        logger.warn({ err: (error as Error).message }, 'could not remove stray containers'),
      );
    }
  }

  private instanceIds(): string[] {
    return [...this.options.workloads()].flatMap((workload) =>
      workload.instances.map((instance) => instance.id),
    );
  }
}
