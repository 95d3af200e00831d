/**
 * A cache of the namespace's Valve Deployments, kept current by a watch: one list (for the
 * resourceVersion), then `GET .../deployments?watch=true&labelSelector=...&resourceVersion=...`.
 * A watch the server ends is resumed from the last resourceVersion seen; an `ERROR` event (the
 * version is too old) lists again. When watching is refused (RBAC without `watch`, a proxy
 * that cuts streams) it falls back to listing every `pollMs`.
 */
import { Watch } from '@kubernetes/client-node';
import type { TargetLogger } from '../target.js';
import { apiErrorMessage, type KubeClient, type LiveObject } from './client.js';

export interface DeploymentWatchOptions {
  client: KubeClient;
  labelSelector: string;
  pollMs: number;
  logger: TargetLogger;
}

type WatchEnd = { kind: 'closed' } | { kind: 'failed'; error: unknown; statusCode?: number };

/** Statuses that say the server will not let this client watch: poll instead. */
const refusals = new Set([401, 403, 404, 405, 501]);

export class DeploymentWatch {
  private readonly cache = new Map<string, LiveObject>();
  private readonly listeners = new Set<() => void>();
  private readonly watch: Watch;
  private resourceVersion: string | undefined;
  private request: AbortController | null = null;
  /** Ends the watch under way (also before the server answered it). */
  private endCurrent: (() => void) | null = null;
  private stopped = false;
  private started: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  /** `watch` while the stream works; `poll` after it was refused. */
  mode: 'watch' | 'poll' = 'watch';

  constructor(private readonly options: DeploymentWatchOptions) {
    this.watch = new Watch(options.client.config);
  }

  /** Lists once (so the cache is current when it resolves), then watches in the background. */
  start(): Promise<void> {
    this.started ??= this.relist().then(
      () => void this.loop(),
      (error: unknown) => {
        this.started = null; // the next call tries again
        throw error;
      },
    );
    return this.started;
  }

  stop(): void {
    this.stopped = true;
    this.endCurrent?.();
    this.wakeUp?.();
    this.notify();
  }

  get(name: string): LiveObject | undefined {
    return this.cache.get(name);
  }

  all(): LiveObject[] {
    return [...this.cache.values()];
  }

  /**
   * Resolves with the first value `check` returns (other than undefined), checked now and at
   * every change; rejects with what `check` throws, or after `timeoutMs` with
   * `<what> after N s: <detail()>`.
   */
  waitFor<T>(
    check: () => T | undefined,
    timeoutMs: number,
    what: string,
    detail: () => string | null = () => null,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const finish = (outcome: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(evaluate);
        outcome();
      };
      const evaluate = () => {
        if (this.stopped) return finish(() => reject(new Error('the target was closed')));
        try {
          const value = check();
          if (value !== undefined) finish(() => resolve(value));
        } catch (error) {
          finish(() => reject(error instanceof Error ? error : new Error(String(error))));
        }
      };
      const timer = setTimeout(() => {
        const why = detail();
        finish(() =>
          reject(
            new Error(`${what} after ${Math.round(timeoutMs / 1000)} s${why ? `: ${why}` : ''}`),
          ),
        );
      }, timeoutMs);
      this.listeners.add(evaluate);
      evaluate();
    });
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.options.client.list(
      'Deployment',
      this.options.labelSelector,
    );
    this.cache.clear();
    for (const item of items) this.cache.set(item.metadata.name!, item);
    this.resourceVersion = resourceVersion;
    this.notify();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      if (this.mode === 'poll') {
        await this.sleep(this.options.pollMs);
        if (this.stopped) break;
        await this.relist().catch((error: unknown) =>
          this.options.logger.warn({ err: apiErrorMessage(error) }, 'listing deployments failed'),
        );
        continue;
      }
      if (this.resourceVersion === undefined) {
        try {
          await this.relist();
        } catch (error) {
          this.options.logger.warn({ err: apiErrorMessage(error) }, 'listing deployments failed');
          await this.sleep(Math.min(this.options.pollMs, 1000 * ++failures));
          continue;
        }
      }
      const end = await this.watchOnce();
      if (this.stopped) break;
      if (end.kind === 'closed') {
        failures = 0;
        continue; // the server ended the watch (its timeout): resume from the last version
      }
      failures++;
      const refused = end.statusCode !== undefined && refusals.has(end.statusCode);
      if (refused || failures >= 5) {
        this.mode = 'poll';
        this.options.logger.warn(
          { err: apiErrorMessage(end.error), statusCode: end.statusCode },
          `watching deployments failed; listing them every ${this.options.pollMs} ms instead`,
        );
        continue;
      }
      if (end.statusCode === 410) this.resourceVersion = undefined;
      await this.sleep(Math.min(this.options.pollMs, 200 * failures));
    }
  }

  private watchOnce(): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      let settled = false;
      const finish = (end: WatchEnd) => {
        if (settled) return;
        settled = true;
        this.request?.abort();
        this.request = null;
        this.endCurrent = null;
        resolve(end);
      };
      this.endCurrent = () => finish({ kind: 'closed' });
      const failed = (error: unknown) =>
        finish({
          kind: 'failed',
          error,
          statusCode: (error as { statusCode?: number } | null)?.statusCode,
        });
      this.watch
        .watch(
          `/apis/apps/v1/namespaces/${this.options.client.namespace}/deployments`,
          {
            labelSelector: this.options.labelSelector,
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
          },
          (type: string, object: LiveObject) => {
            if (type === 'ERROR') {
              // Typically 410 Gone: the resourceVersion is too old; list again.
              this.resourceVersion = undefined;
              return finish({ kind: 'closed' });
            }
            if (object?.metadata?.resourceVersion)
              this.resourceVersion = object.metadata.resourceVersion;
            if (type === 'BOOKMARK') return;
            if (type === 'DELETED') this.cache.delete(object.metadata.name!);
            else this.cache.set(object.metadata.name!, object);
            this.notify();
          },
          (error: unknown) => (error ? failed(error) : finish({ kind: 'closed' })),
        )
        .then((request) => {
          if (settled) request.abort();
          else this.request = request;
        })
        .catch(failed);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }
}
