import type { TargetLogger } from '../target.js';
import type { ImageCache } from './image-cache.js';
import { isAlive } from './process-group.js';
import type { Workload } from './workload.js';

/**
 * Drift on the local target: what differs from the serving spec. Instances are checked live
 * (cheap); image roots are checked by `ImageRootWatch`, periodically and on demand, since a
 * check stats every file of the root (rootfs-files.ts).
 */

/** Changed files by image root, as last checked; checks the roots in use every interval. */
export class ImageRootWatch {
  private readonly changed = new Map<string, string[]>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;

  constructor(
    private readonly images: ImageCache,
    private readonly logger: TargetLogger,
  ) {}

  /** Checks `roots()` every `intervalMs` (not at all for 0), one check at a time. */
  start(intervalMs: number, roots: () => string[]): void {
    if (intervalMs <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.checkAll(roots()), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Checks the roots now; a root that cannot be read is drift too. */
  async check(roots: string[]): Promise<void> {
    await Promise.all(
      roots.map(async (root) => {
        try {
          this.changed.set(root, await this.images.verify(root));
        } catch (error) {
          this.changed.set(root, [`image root cannot be checked: ${(error as Error).message}`]);
        }
      }),
    );
  }

  /** The files of `root` found changed by the last check. */
  changedFiles(root: string): string[] {
    return this.changed.get(root) ?? [];
  }

  /** A repair moved every instance off `stale` to the freshly unpacked `fresh`. */
  replaced(stale: string, fresh: string): void {
    this.changed.delete(stale);
    this.changed.set(fresh, []);
  }

  private checkAll(roots: string[]): Promise<void> {
    this.running ??= (async () => {
      try {
        const inUse = new Set(roots);
        for (const root of this.changed.keys()) if (!inUse.has(root)) this.changed.delete(root);
        await this.check([...inUse]);
      } catch (error) {
        this.logger.error({ err: error }, 'drift check failed');
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }
}

/** The image roots the serving instances run from. */
export function rootsOf(workload: Workload): string[] {
  const roots = workload.instances
    .filter((instance) => instance.record.role === 'active' && instance.rootfs !== null)
    .map((instance) => instance.rootfs!);
  return [...new Set(roots)];
}

/**
 * What differs from the serving spec: serving instances without a process (supervision
 * restarts them; reported while down), a count other than the spec's, files of their image
 * root changed since it was unpacked (as last checked).
 */
export function driftOf(workload: Workload, roots: ImageRootWatch): string[] {
  const serving = workload.record.serving;
  if (!serving) return [];
  const active = workload.instances.filter((instance) => instance.record.role === 'active');
  const drift: string[] = [];
  for (const instance of active) {
    const { pid } = instance.record;
    if (instance.state === 'restarting' || instance.state === 'stopped' || !isAlive(pid)) {
      drift.push(`instance ${instance.id} not running`);
    }
  }
  if (!workload.progressing && active.length !== serving.replicas) {
    drift.push(`${active.length} instance(s) run where the spec asks for ${serving.replicas}`);
  }
  for (const root of rootsOf(workload)) drift.push(...roots.changedFiles(root));
  return drift;
}
