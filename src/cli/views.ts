/** The API's shapes as the CLI reads them (docs/api.md). */
export interface EnvironmentView {
  name: string;
  url: string | null;
  health: string;
  image: string | null;
  sourceCommit: string | null;
  deployedAt: string | null;
  message: string | null;
  instances: { id: string; pid: number; port: number; healthy: boolean }[];
}
export interface RunView {
  number: number;
  status: string;
  commit: string;
  commitMessage: string;
  actor: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}
export interface AppView {
  team: string;
  name: string;
  template: string;
  gitUrl: string;
  deployGitUrl: string;
  image: string;
  environments: EnvironmentView[];
  lastRun: RunView | null;
}

export const shortDigest = (image: string | null) =>
  image ? (image.split('@')[1] ?? image).slice(0, 19) : '';

export function ago(iso: string | null): string {
  if (!iso) return '';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}
