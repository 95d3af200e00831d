import type { Command } from 'commander';
import { ApiClient, CliError } from '../client.js';
import { formatBytes } from '../views.js';

/** What `POST /api/registry/gc` answers (docs/api.md). */
interface GarbageReportView {
  dryRun: boolean;
  durationMs: number;
  repositories: number;
  manifests: number;
  keptBlobs: number;
  deletedBlobs: { digest: string; size: number }[];
  removedLinks: { repo: string; digest: string }[];
  removedUploads: { id: string; repo: string | null; size: number; lastActivity: string }[];
  removedStagingFiles: { name: string; size: number }[];
  bytesFreed: number;
  problems: string[];
}

interface TeamUsageView {
  team: string;
  usedBytes: number;
  quotaBytes: number | null;
  blobs: number;
}

const units: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** `1073741824`, `500MiB`, `10 GiB`, `2GB` (decimal), `1.5TiB` -> bytes. */
export function parseSize(value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?$/i.exec(value.trim());
  const bytes = match ? Number(match[1]) * units[(match[2] ?? 'b').toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(Math.round(bytes))) {
    throw new CliError(`expected a size such as 500MiB, 10GiB or 2GB, got "${value}"`);
  }
  return Math.round(bytes);
}

const plural = (count: number, word: string, words = `${word}s`) =>
  `${count} ${count === 1 ? word : words}`;
const total = (items: { size: number }[]) => items.reduce((sum, item) => sum + item.size, 0);

function printReport(report: GarbageReportView, verbose: boolean): void {
  const verb = report.dryRun ? 'Dry run: would delete' : 'Deleted';
  console.log(
    `${verb} ${plural(report.deletedBlobs.length, 'blob')} (${formatBytes(total(report.deletedBlobs))}), ` +
      `${plural(report.removedLinks.length, 'repository link')}, ` +
      `${plural(report.removedUploads.length, 'abandoned upload')} (${formatBytes(total(report.removedUploads))}), ` +
      `${plural(report.removedStagingFiles.length, 'staging file')}: ${formatBytes(report.bytesFreed)} in all.`,
  );
  console.log(
    `Kept ${plural(report.keptBlobs, 'blob')}; ${plural(report.manifests, 'manifest')} in ${plural(report.repositories, 'repository', 'repositories')}; took ${(report.durationMs / 1000).toFixed(1)}s.`,
  );
  if (verbose) {
    for (const blob of report.deletedBlobs)
      console.log(`blob  ${blob.digest}  ${formatBytes(blob.size)}`);
    for (const link of report.removedLinks) console.log(`link  ${link.repo}@${link.digest}`);
    for (const upload of report.removedUploads) {
      console.log(
        `upload  ${upload.id}  ${upload.repo ?? '?'}  ${formatBytes(upload.size)}  idle since ${upload.lastActivity}`,
      );
    }
  }
  for (const problem of report.problems) console.error(`warning: ${problem}`);
}

function printUsage(usage: TeamUsageView): void {
  const quota = usage.quotaBytes === null ? 'no quota' : `quota ${formatBytes(usage.quotaBytes)}`;
  const share =
    usage.quotaBytes && usage.quotaBytes > 0
      ? ` (${Math.round((usage.usedBytes / usage.quotaBytes) * 100)}%)`
      : '';
  console.log(
    `${usage.team}: ${formatBytes(usage.usedBytes)} in ${plural(usage.blobs, 'blob')}${share}, ${quota}`,
  );
}

export function registerRegistry(program: Command) {
  const registry = program
    .command('registry')
    .description("the image registry's storage: garbage collection and team quotas");

  registry
    .command('gc')
    .description(
      'delete blobs no image references, stale repository links and abandoned uploads (server admins)',
    )
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .option('-v, --verbose', 'list every blob, link and upload')
    .action(async (options: { dryRun?: boolean; verbose?: boolean }) => {
      const report = await ApiClient.fromConfig().request<GarbageReportView>(
        'POST',
        '/api/registry/gc',
        { dryRun: options.dryRun ?? false },
      );
      printReport(report, options.verbose ?? false);
    });

  registry
    .command('quota')
    .description("a team's registry usage and quota; --set or --unset change it (server admins)")
    .argument('<team>')
    .option('--set <size>', 'the new quota: bytes, or 500MiB, 10GiB, 2GB ...')
    .option('--unset', 'remove the quota')
    .action(async (team: string, options: { set?: string; unset?: boolean }) => {
      if (!/^[a-z0-9-]+$/.test(team)) throw new CliError(`expected a team name, got "${team}"`);
      if (options.set !== undefined && options.unset) {
        throw new CliError('give either --set or --unset');
      }
      const path = `/api/teams/${team}/registry-quota`;
      const client = ApiClient.fromConfig();
      const usage =
        options.set !== undefined || options.unset
          ? await client.request<TeamUsageView>('PUT', path, {
              bytes: options.unset ? null : parseSize(options.set!),
            })
          : await client.request<TeamUsageView>('GET', path);
      printUsage(usage);
    });
}
