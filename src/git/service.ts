import { join } from 'node:path';
import type { EventBus } from '../events.js';
import {
  commitFiles,
  initBareRepo,
  listRefs,
  readBranchHead,
  type CommitRequest,
} from './plumbing.js';

/**
 * The repositories Valve hosts, under one root directory. Every ref change, whether from a
 * push or a server-side commit, is published as a `git.refUpdated` event.
 */
export class GitService {
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    readonly root: string,
    private readonly events: EventBus,
  ) {}

  /** Absolute path of a hosted repository, given its path under the root ("team/app.git"). */
  pathOf(repoPath: string): string {
    return join(this.root, repoPath);
  }

  async createRepo(repoPath: string): Promise<void> {
    await initBareRepo(this.pathOf(repoPath));
  }

  /** Commits on the server's side and publishes the ref change. */
  async commit(repoPath: string, request: CommitRequest, actor: string): Promise<string> {
    return this.serialized(repoPath, async () => {
      const gitDir = this.pathOf(repoPath);
      const ref = `refs/heads/${request.branch}`;
      // The commit succeeds only if the branch was at the expected parent (compare-and-swap).
      const expected = request.expectedParent;
      const before =
        expected === null || (expected !== undefined && /^[0-9a-f]{40,64}$/.test(expected))
          ? expected
          : await readBranchHead(gitDir, request.branch);
      const after = await commitFiles(gitDir, { ...request, expectedParent: before });
      this.events.emit('git.refUpdated', {
        repoPath,
        ref,
        before,
        after,
        pusher: actor,
        source: 'server',
      });
      return after;
    });
  }

  /**
   * Runs a push (receive-pack) with the repository locked, and publishes every ref it changed.
   * Locking makes the before/after comparison exact even when pushes race.
   */
  async withPushLock(repoPath: string, pusher: string, push: () => Promise<void>): Promise<void> {
    await this.serialized(repoPath, async () => {
      const gitDir = this.pathOf(repoPath);
      const before = await listRefs(gitDir);
      await push();
      const after = await listRefs(gitDir);
      for (const ref of new Set([...before.keys(), ...after.keys()])) {
        const old = before.get(ref) ?? null;
        const now = after.get(ref) ?? null;
        if (old !== now)
          this.events.emit('git.refUpdated', {
            repoPath,
            ref,
            before: old,
            after: now,
            pusher,
            source: 'push',
          });
      }
    });
  }

  private serialized<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    const settled = next.catch(() => undefined);
    this.locks.set(key, settled);
    void settled.then(() => {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    });
    return next;
  }
}
