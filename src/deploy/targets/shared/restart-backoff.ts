/** How long a supervised instance waits before it is restarted, for local and podman. */

export interface RestartBackoff {
  /** Wait before the first restart; doubled for each crash in a row. */
  firstMs: number;
  maxMs: number;
  /** Ready this long, the next crash counts as the first again. */
  resetAfterReadyMs: number;
}

/** 1 s doubling to 30 s, reset after a minute of being ready. */
export const restartBackoff: RestartBackoff = {
  firstMs: 1000,
  maxMs: 30_000,
  resetAfterReadyMs: 60_000,
};

/** Counts an instance's crashes in a row and tells the wait before each restart. */
export class CrashBackoff {
  private crashes = 0;

  constructor(private readonly settings: RestartBackoff = restartBackoff) {}

  /**
   * The wait before restarting after a crash, counting that crash. `readySince`: when the
   * crashed process became ready (null when it never did).
   */
  next(readySince: number | null): number {
    const ranFor = readySince === null ? 0 : Date.now() - readySince;
    if (ranFor >= this.settings.resetAfterReadyMs) this.crashes = 0;
    const wait = Math.min(this.settings.firstMs * 2 ** this.crashes, this.settings.maxMs);
    this.crashes++;
    return wait;
  }
}
