/** How the console writes commits, digests, times and durations. */

export const shortSha = (commit: string | null | undefined) => (commit ? commit.slice(0, 7) : '');

/**
 * "127.0.0.1:7080/dev/hello@sha256:4f2a..." or "sha256:4f2a..." -> "4f2a9c1e0b3d" (the version
 * people compare); an image without a digest shows its tag.
 */
export function shortDigest(image: string | null | undefined): string {
  if (!image) return '';
  const digest = /sha256:([0-9a-f]{12})/.exec(image);
  if (digest) return digest[1] as string;
  const colon = image.lastIndexOf(':');
  return colon > image.lastIndexOf('/') ? image.slice(colon + 1) : image;
}

export const firstLine = (text: string | null | undefined) => (text ?? '').split('\n', 1)[0] ?? '';

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const whole = Math.round(seconds);
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m ${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`;
}

/** From start to finish, or to now while still going; empty before it started. */
export function elapsed(startedAt: string | null, finishedAt: string | null, now: number): string {
  if (!startedAt) return '';
  const end = finishedAt ? Date.parse(finishedAt) : now;
  return formatDuration(end - Date.parse(startedAt));
}

export function formatRelative(iso: string | null, now: number): string {
  if (!iso) return '';
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export const formatTimestamp = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : '');

/**
 * An image's `created`: reproducible builds write the epoch (or SOURCE_DATE_EPOCH), which says
 * nothing about when the image was made, so that shows as "reproducible" rather than 1970.
 */
export const formatImageCreated = (iso: string | null) =>
  !iso ? '' : Date.parse(iso) === 0 ? 'reproducible (epoch 0)' : formatTimestamp(iso);

// Pipeline output often carries terminal colours; the log view shows plain text.
// eslint-disable-next-line no-control-regex
const ansiSequence = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007]*(?:\u0007|\u001b\\)/g;
export const stripAnsi = (text: string) => text.replace(ansiSequence, '');

/** "refs/heads/main" -> "main", "refs/tags/v1" -> "v1". */
export const branchOf = (ref: string | null | undefined) =>
  (ref ?? '').replace(/^refs\/(heads|tags)\//, '');

/** ".valve/workflows/ci.yml" -> "ci.yml". */
export const workflowLabel = (file: string | null | undefined) =>
  (file ?? '').split('/').pop() ?? '';

const eventLabels: Record<string, string> = {
  push: 'push',
  workflow_dispatch: 'manual',
  schedule: 'schedule',
  webhook: 'webhook',
  rerun: 're-run',
};
export const eventLabel = (event: string | null | undefined) =>
  event ? (eventLabels[event] ?? event) : '';

/** Matrix values as people read them: "node 20, os linux". */
export const matrixLabel = (matrix: Record<string, unknown> | null | undefined) =>
  matrix
    ? Object.entries(matrix)
        .map(
          ([name, value]) => `${name} ${typeof value === 'string' ? value : JSON.stringify(value)}`,
        )
        .join(', ')
    : '';

/** Sizes as people read them: "512 B", "4.2 KiB", "18 MiB" (binary units, as registries count). */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '';
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** "linux/arm64/v8" */
export const platformLabel = (platform: { os: string; architecture: string; variant?: string }) =>
  [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');

/** A share 0-1 as people read it: "0%", "0.4%", "12%". */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '';
  const percent = rate * 100;
  return `${percent === 0 || percent >= 10 ? Math.round(percent) : percent.toFixed(1)}%`;
}

/** A manifest field's value in a diff: text as it is, anything else as YAML-like JSON. */
export const formatFieldValue = (value: unknown): string =>
  typeof value === 'string' ? value : JSON.stringify(value, null, 2);
