import { readFileIfExists, writeFileDurably } from './durable-fs.js';
import { RegistryError } from './errors.js';
import { validateRepositoryName } from './names.js';

export interface TeamUsage {
  team: string;
  /** Sum of the sizes of the distinct blobs linked into the team's repositories. */
  usedBytes: number;
  /** Null: no quota. */
  quotaBytes: number | null;
  /** How many distinct blobs `usedBytes` counts. */
  blobs: number;
}

/** One blob linked into one repository, as the usage count sees it. */
export interface LinkedBlob {
  repo: string;
  digest: string;
  size: number;
}

interface QuotaFile {
  teams: Record<string, number>;
}

type TeamBlobs = Map<string, { size: number; repos: Set<string> }>;

/** The team a repository belongs to: the first component of `<team>/<app>`. */
export const teamOf = (repo: string): string => repo.slice(0, repo.indexOf('/'));

/**
 * Storage quotas per team. A team's usage is the sum of the sizes of the distinct blobs linked
 * into its repositories (`<team>/...`): a layer shared by two of its apps counts once, a layer
 * shared with another team counts for both, since either may keep it alive. Manifests are not
 * counted (they are kilobytes).
 *
 * The limits live in `<root>/quotas.json` beside the repositories they govern (the registry has
 * no database). Usage is counted once, from the links on disk, on first need, kept in memory,
 * changed on every link and unlink, and counted again after each garbage collection.
 *
 * A push is checked before its blob becomes visible (`reserve`), and the bytes it adds are
 * counted from that moment, so two pushes racing for the last bytes cannot both pass; a
 * reservation whose write fails is given back.
 */
export class TeamQuotas {
  private limits: Map<string, number> | null = null;
  private usage: Map<string, TeamBlobs> | null = null;
  /** A recount in progress: new reservations wait for it, and it waits for running ones. */
  private recounting: Promise<void> | null = null;
  private reservations = 0;
  private readonly idle: (() => void)[] = [];
  private limitWrites: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly file: string,
    /** Every blob linked into every repository, with its size (only stored blobs). */
    private readonly scan: () => Promise<LinkedBlob[]>,
  ) {}

  async usageOf(team: string): Promise<TeamUsage> {
    validateTeam(team);
    const limits = await this.loadLimits();
    const usage = await this.loadUsage();
    return summarize(team, usage.get(team), limits.get(team) ?? null);
  }

  /** Sets (or with null removes) the team's quota in bytes. */
  async setQuota(team: string, bytes: number | null): Promise<TeamUsage> {
    validateTeam(team);
    if (bytes !== null && (!Number.isSafeInteger(bytes) || bytes < 0)) {
      throw new RegistryError('SIZE_INVALID', `a quota is a whole number of bytes, not ${bytes}`);
    }
    const write = this.limitWrites.then(async () => {
      const limits = new Map(await this.loadLimits());
      if (bytes === null) limits.delete(team);
      else limits.set(team, bytes);
      const content: QuotaFile = { teams: Object.fromEntries([...limits].sort()) };
      await writeFileDurably(this.file, `${JSON.stringify(content, null, 2)}\n`);
      this.limits = limits;
    });
    this.limitWrites = write.catch(() => undefined);
    await write;
    return this.usageOf(team);
  }

  /** Throws DENIED if linking `blobs` into `repo` would take its team over quota. */
  async check(repo: string, blobs: readonly { digest: string; size: number }[]): Promise<void> {
    await this.ready();
    this.admit(repo, blobs);
  }

  /**
   * Counts `blobs` as linked into `repo` (DENIED when that takes the team over its quota, and
   * nothing is counted), runs `work` (which stores and links them), and gives the count back
   * if `work` fails.
   */
  async reserve<T>(
    repo: string,
    blobs: readonly { digest: string; size: number }[],
    work: () => Promise<T>,
  ): Promise<T> {
    await this.ready();
    // From here to `work()` nothing awaits: check and count are one step.
    const team = teamOf(repo);
    const added = this.admit(repo, blobs);
    const entries = this.usage!.get(team) ?? new Map();
    this.usage!.set(team, entries);
    for (const blob of added) {
      const entry = entries.get(blob.digest) ?? { size: blob.size, repos: new Set<string>() };
      entry.repos.add(repo);
      entries.set(blob.digest, entry);
    }
    this.reservations += 1;
    try {
      return await work();
    } catch (error) {
      for (const blob of added) this.unlinked(repo, blob.digest);
      throw error;
    } finally {
      this.reservations -= 1;
      if (this.reservations === 0) for (const wake of this.idle.splice(0)) wake();
    }
  }

  /** A link of `digest` in `repo` is gone (garbage collection). */
  unlinked(repo: string, digest: string): void {
    const entries = this.usage?.get(teamOf(repo));
    const entry = entries?.get(digest);
    if (!entries || !entry) return;
    entry.repos.delete(repo);
    if (entry.repos.size === 0) entries.delete(digest);
  }

  /** Counts usage again from disk, once the reservations running now are done. */
  recount(): Promise<void> {
    this.recounting ??= (async () => {
      try {
        while (this.reservations > 0) await new Promise<void>((wake) => this.idle.push(wake));
        const usage = new Map<string, TeamBlobs>();
        for (const link of await this.scan()) {
          const team = teamOf(link.repo);
          const entries = usage.get(team) ?? new Map();
          usage.set(team, entries);
          const entry = entries.get(link.digest) ?? { size: link.size, repos: new Set<string>() };
          entry.repos.add(link.repo);
          entries.set(link.digest, entry);
        }
        this.usage = usage;
      } finally {
        this.recounting = null;
      }
    })();
    return this.recounting;
  }

  /** The blobs of `blobs` not yet counted for `repo`; throws DENIED when they do not fit. */
  private admit(
    repo: string,
    blobs: readonly { digest: string; size: number }[],
  ): { digest: string; size: number }[] {
    const team = teamOf(repo);
    const entries = this.usage!.get(team);
    const added = new Map<string, { digest: string; size: number }>();
    let extra = 0;
    for (const blob of blobs) {
      const entry = entries?.get(blob.digest);
      if (entry?.repos.has(repo) || added.has(blob.digest)) continue;
      added.set(blob.digest, { digest: blob.digest, size: blob.size });
      if (!entry) extra += blob.size;
    }
    const limit = this.limits!.get(team);
    const used = summarize(team, entries, null).usedBytes;
    if (limit !== undefined && extra > 0 && used + extra > limit) {
      throw new RegistryError(
        'DENIED',
        `team ${team} is over its registry quota: this push adds ${formatBytes(extra)} to the ${formatBytes(used)} it uses, and its quota is ${formatBytes(limit)}. Delete images and run garbage collection, or ask an admin for more.`,
        { team, usedBytes: used, quotaBytes: limit, addedBytes: extra },
      );
    }
    return [...added.values()];
  }

  private async ready(): Promise<void> {
    await this.loadLimits();
    while (this.recounting || !this.usage) await (this.recounting ?? this.recount());
  }

  private async loadUsage(): Promise<Map<string, TeamBlobs>> {
    while (this.recounting || !this.usage) await (this.recounting ?? this.recount());
    return this.usage;
  }

  private async loadLimits(): Promise<Map<string, number>> {
    if (!this.limits) {
      const content = await readFileIfExists(this.file);
      const parsed = content ? (JSON.parse(content.toString('utf8')) as QuotaFile) : { teams: {} };
      this.limits ??= new Map(Object.entries(parsed.teams ?? {}));
    }
    return this.limits;
  }
}

function summarize(team: string, entries: TeamBlobs | undefined, quota: number | null): TeamUsage {
  let usedBytes = 0;
  for (const entry of entries?.values() ?? []) usedBytes += entry.size;
  return { team, usedBytes, quotaBytes: quota, blobs: entries?.size ?? 0 };
}

/** A team is a repository name's first component. */
function validateTeam(team: string): void {
  if (team.includes('/')) {
    throw new RegistryError('NAME_INVALID', `invalid team "${team}": a team name has no "/"`);
  }
  validateRepositoryName(`${team}/quota`);
}

/** `1.5 GiB`: binary units, as `du -h` and docker show sizes. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}
