/**
 * `concurrency` groups, as GitHub Actions has them: in a group at most one holder runs and one
 * waits. A newcomer replaces (cancels) the one waiting; with cancel-in-progress it also cancels
 * the one running. Held in memory: after a restart no run is running any more.
 */
export class ConcurrencyGroups {
  private readonly groups = new Map<string, { holder: Entry | null; waiting: Entry | null }>();

  /**
   * Resolves with a release function once the caller holds the group. `onCancel` is called
   * when a newer member of the group pushes this one out (then the promise never resolves).
   */
  acquire(group: string, cancelInProgress: boolean, onCancel: () => void): Promise<() => void> {
    const state = this.groups.get(group) ?? { holder: null, waiting: null };
    this.groups.set(group, state);
    return new Promise((resolve) => {
      const entry: Entry = { onCancel, start: () => resolve(() => this.release(group, entry)) };
      if (state.waiting) {
        state.waiting.onCancel();
        state.waiting = null;
      }
      if (!state.holder) {
        state.holder = entry;
        entry.start();
        return;
      }
      if (cancelInProgress) state.holder.onCancel();
      state.waiting = entry;
    });
  }

  private release(group: string, entry: Entry): void {
    const state = this.groups.get(group);
    if (!state) return;
    if (state.waiting === entry) state.waiting = null;
    if (state.holder !== entry) return;
    state.holder = state.waiting;
    state.waiting = null;
    if (state.holder) state.holder.start();
    else this.groups.delete(group);
  }
}

interface Entry {
  onCancel(): void;
  start(): void;
}

/** A counting semaphore: at most `size` holders at once, served in arrival order. */
export class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.active >= this.size) {
      await new Promise<void>((resolve, reject) => {
        const grant = () => {
          signal?.removeEventListener('abort', abort);
          resolve();
        };
        const abort = () => {
          const index = this.queue.indexOf(grant);
          if (index >= 0) this.queue.splice(index, 1);
          reject(signal!.reason);
        };
        signal?.addEventListener('abort', abort, { once: true });
        this.queue.push(grant);
      });
    } else {
      this.active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    };
  }
}
