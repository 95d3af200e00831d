import { z } from 'zod';
import type { TargetLogger, WorkloadImage } from '../target.js';
import { PodmanError, type PodmanCli } from './cli.js';
import {
  indexImage,
  readContainerFile,
  type ImageFile,
  type ImageFileIndex,
} from './image-files.js';
import type { PodmanInstance } from './instance.js';
import { Rounds } from './rounds.js';

/**
 * File drift on the podman target: files of the image changed or removed inside a serving
 * container since it was created, as on the local target's image roots (`../local/drift.ts`),
 * but per container: each has a writable layer of its own.
 *
 * `podman diff --format json <container>` lists the paths of that layer: changed, added,
 * deleted. Only the image's own regular files and symlinks count, looked up in an index of
 * the image (image-files.ts; built once per image and target process): a directory is listed
 * as changed when anything under it changes, and files the app adds are not drift (as on
 * local). A changed regular file is read back (`podman cp`) and compared with the image's
 * mode and sha256, so a file merely touched (podman lists it as changed once its metadata
 * moved) is not drift.
 *
 * Where podman differs from local: a touched file is read and hashed again at every check
 * (local remembers its new mtime); a changed symlink is drift without a look at its target
 * (`podman cp` follows links; local compares the target); at most `comparedPerCheck` changed
 * files of a container are read back per check, more are reported as changed unread (each
 * read is a podman process); a deleted directory stands for every image file under it.
 *
 * Checks run every `intervalMs` (not at all for 0) over the serving containers, at most
 * `concurrency` podman processes at a time and one round at a time; `check()` checks some now
 * (`status(key, { verify: true })`, `repair`). A container that cannot be checked keeps the
 * drift last found, and why is a note in the workload's message: local reports a root it
 * cannot read as drift, but here a podman hiccup would have self-heal replace containers.
 */

/** Changed files read back per container and check; beyond, reported as changed unread. */
export const comparedPerCheck = 16;
/** podman processes of a check running at once: the machine's podman is shared. */
const concurrency = 2;

const diffSchema = z.object({
  changed: z.array(z.string()).nullish(),
  added: z.array(z.string()).nullish(),
  deleted: z.array(z.string()).nullish(),
});

interface ContainerFiles {
  /** One sentence per file: `file /app/server.js changed`. */
  drift: string[];
  /** Why the last check failed; null when it worked. */
  error: string | null;
}

export class FileDriftWatch {
  /** By container id. */
  private readonly containers = new Map<string, ContainerFiles>();
  /** By image digest. */
  private readonly indexes = new Map<string, Promise<ImageFileIndex>>();
  private round: Promise<void> | null = null;
  private readonly rounds = new Rounds(() => this.checkAll());

  constructor(
    private readonly options: {
      cli: PodmanCli;
      /** Labels the containers made to index an image: `{ key, value }`. */
      scratchLabel: { key: string; value: string };
      /** podman's name of an image of a serving container. */
      imageName: (image: WorkloadImage) => Promise<string>;
      intervalMs: number;
      logger: TargetLogger;
      /** Every instance of every workload. */
      instances: () => PodmanInstance[];
    },
  ) {}

  /** Checks every `intervalMs` (once; not for 0, nor after `stop()`). */
  start(): void {
    if (this.options.intervalMs > 0) this.rounds.start(this.options.intervalMs);
  }

  /** No more rounds; resolves once the one under way is over. */
  async stop(): Promise<void> {
    this.rounds.stop();
    await this.round;
  }

  /** Checks the serving containers among `instances` now. */
  async check(instances: PodmanInstance[]): Promise<void> {
    this.forgetUnused();
    const serving = instances.filter(isServing);
    await inTurn(serving, concurrency, (instance) => this.checkInstance(instance));
  }

  /** How the instance's container differs from its image, as last checked. */
  driftOf(instance: PodmanInstance): string[] {
    const container = instance.record.container;
    return (container && this.containers.get(container)?.drift) || [];
  }

  /** Why the instance's files could not be checked last time; null when they were. */
  errorOf(instance: PodmanInstance): string | null {
    const container = instance.record.container;
    return (container && this.containers.get(container)?.error) || null;
  }

  private checkAll(): Promise<void> {
    this.round ??= (async () => {
      try {
        await this.check(this.options.instances());
      } catch (error) {
        this.options.logger.error({ err: error }, 'file drift check failed');
      } finally {
        this.round = null;
      }
    })();
    return this.round;
  }

  /** Forgets what no instance runs any more: removed containers, images no longer served. */
  private forgetUnused(): void {
    const instances = this.options.instances();
    const containers = new Set(instances.map((instance) => instance.record.container));
    for (const id of this.containers.keys()) if (!containers.has(id)) this.containers.delete(id);
    const digests = new Set(instances.map((instance) => instance.record.image.digest));
    for (const digest of this.indexes.keys()) if (!digests.has(digest)) this.indexes.delete(digest);
  }

  private async checkInstance(instance: PodmanInstance): Promise<void> {
    const container = instance.record.container;
    if (!container) return;
    let files = this.containers.get(container);
    if (!files) {
      files = { drift: [], error: null };
      this.containers.set(container, files);
    }
    try {
      const index = await this.indexOf(instance.record.image);
      const drift = await this.compare(container, index);
      if (drift === null) {
        // Removed since it was listed: the container watch reports that.
        this.containers.delete(container);
        return;
      }
      files.drift = drift;
      files.error = null;
    } catch (error) {
      files.error = `files not checked: ${(error as Error).message}`;
      this.options.logger.warn({ instance: instance.id, err: files.error }, 'file drift check');
    }
  }

  private indexOf(image: WorkloadImage): Promise<ImageFileIndex> {
    let index = this.indexes.get(image.digest);
    if (!index) {
      const { cli, scratchLabel, imageName } = this.options;
      index = imageName(image).then((name) => indexImage(cli, name, scratchLabel));
      this.indexes.set(image.digest, index);
      // A failed index is built again at the next check.
      index.catch(() => this.indexes.delete(image.digest));
    }
    return index;
  }

  /**
   * One sentence per image file the container changed or removed, by path; null when the
   * container is gone.
   */
  private async compare(container: string, index: ImageFileIndex): Promise<string[] | null> {
    const diff = await this.options.cli.run(['diff', '--format', 'json', container], {
      timeoutMs: 60_000,
    });
    if (diff.code !== 0) {
      const error = new PodmanError(['diff'], diff);
      if (error.notFound) return null;
      throw error;
    }
    const listed = diffSchema.parse(JSON.parse(diff.stdout.trim() || '{}'));
    const drift = new Map<string, string>();
    for (const path of listed.deleted ?? []) {
      if (index.has(path)) drift.set(path, `file ${path} removed`);
      // A deleted directory is listed alone: every image file under it went with it.
      const under = `${path}/`;
      for (const inside of index.keys()) {
        if (inside.startsWith(under)) drift.set(inside, `file ${inside} removed`);
      }
    }
    const changed = (listed.changed ?? []).filter((path) => index.has(path));
    let compared = 0;
    for (const path of changed) {
      const expected = index.get(path)!;
      if (expected.type === 'symlink' || compared >= comparedPerCheck) {
        drift.set(path, `file ${path} changed`);
        continue;
      }
      compared++;
      const verdict = await this.compareFile(container, path, expected);
      if (verdict) drift.set(path, verdict);
    }
    return [...drift.keys()].sort().map((path) => drift.get(path)!);
  }

  /** Why the container's `path` is not the image's file, or null when it is. */
  private async compareFile(
    container: string,
    path: string,
    expected: Extract<ImageFile, { type: 'file' }>,
  ): Promise<string | null> {
    const actual = await readContainerFile(this.options.cli, container, path);
    if (actual.type === 'missing') return `file ${path} removed`;
    if (actual.type !== 'file') return `file ${path} changed`;
    if (actual.mode !== expected.mode) return `file ${path} changed mode`;
    if (actual.size !== expected.size || actual.sha256 !== expected.sha256)
      return `file ${path} changed`;
    return null;
  }
}

/** The containers file drift is checked on: those serving, or meant to. */
function isServing(instance: PodmanInstance): boolean {
  return (
    instance.record.role === 'active' &&
    instance.record.container !== null &&
    (instance.state === 'ready' || instance.state === 'unready')
  );
}

/** Runs `work` on each item, at most `limit` at a time. */
async function inTurn<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
