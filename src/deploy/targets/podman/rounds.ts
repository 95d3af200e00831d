/**
 * Rounds of work every `intervalMs`, each interval counted from the end of the round before
 * (so never two at once), from `start()` until `stop()`; the timer does not keep the process
 * alive. The container listing (container-watch.ts) and the file drift check (file-drift.ts)
 * run this way.
 */
export class Rounds {
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(private readonly round: () => Promise<void>) {}

  /** After `stop()`: no round begins any more. */
  get stopped(): boolean {
    return this.ended;
  }

  /** The first round in `intervalMs` (once; not after `stop()`). */
  start(intervalMs: number): void {
    if (this.timer || this.ended) return;
    const tick = async () => {
      await this.round();
      if (this.ended) return;
      this.timer = setTimeout(() => void tick(), intervalMs);
      this.timer.unref();
    };
    this.timer = setTimeout(() => void tick(), intervalMs);
    this.timer.unref();
  }

  /** No more rounds; one under way runs to its end. */
  stop(): void {
    this.ended = true;
    clearTimeout(this.timer);
  }
}
