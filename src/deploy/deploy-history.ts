/**
 * An environment's deploys, read back from Git: each commit that changed its folder
 * `envs/<env>/` as a `DeployRecord` (from the commit's trailers, or from its manifests for a
 * commit made by hand), and what the folder pins now (`currentDeploy`, what a promotion takes).
 */
import { ValveError } from '../errors.js';
import { FileValidationError } from '../formats/yaml.js';
import { logCommits, type CommitInfo, type TreeFile } from '../git/index.js';
import type { ChangeReads } from './change-reads.js';
import { digestOf, parseTrailers } from './deploy-change.js';
import { envDir, readDesiredState } from './desired-state.js';

/** One commit that changed an environment's folder. */
export interface DeployRecord {
  commit: string;
  subject: string;
  kind: 'deploy' | 'promote' | 'rollback' | 'create' | 'edit';
  /** Image reference pinned by digest; null where the folder had no workload. */
  image: string | null;
  digest: string | null;
  sourceCommit: string | null;
  author: string;
  email: string;
  date: string;
  promotedFrom: { environment: string; commit: string } | null;
  rolledBackTo: string | null;
  approvedBy: string | null;
}

/** Commits that changed the environment's folder, newest first. */
export async function historyOf(
  reads: ChangeReads,
  environment: string,
  limit: number,
): Promise<DeployRecord[]> {
  const head = await reads.head();
  if (!head) return [];
  const commits = await logCommits(reads.deployGitDir, head, {
    limit,
    path: envDir(environment),
  });
  return Promise.all(commits.map((commit) => record(reads, environment, commit)));
}

async function record(
  reads: ChangeReads,
  environment: string,
  commit: CommitInfo,
): Promise<DeployRecord> {
  const trailers = parseTrailers(commit.body);
  let image = trailers.Image ?? null;
  let sourceCommit = trailers['Source-Commit'] ?? null;
  if (!image) {
    // A commit by hand: read the image and source from its manifests.
    const found = await manifestFacts(reads, commit.sha, environment);
    image = found.image;
    sourceCommit = found.sourceCommit;
  }
  const [fromEnv, fromCommit] = (trailers['Promoted-From'] ?? '').split(' ');
  const verb = commit.subject.split(' ')[0];
  const kind: DeployRecord['kind'] =
    verb === 'deploy' || verb === 'promote' || verb === 'rollback'
      ? verb
      : verb === 'create'
        ? 'create'
        : 'edit';
  return {
    commit: commit.sha,
    subject: commit.subject,
    kind,
    image,
    digest: image ? digestOf(image) : null,
    sourceCommit: sourceCommit === 'unknown' ? null : sourceCommit,
    author: commit.author,
    email: commit.email,
    date: commit.date,
    promotedFrom: fromEnv && fromCommit ? { environment: fromEnv, commit: fromCommit } : null,
    rolledBackTo: trailers['Rolled-Back-To'] ?? null,
    approvedBy: trailers['Approved-By'] ?? null,
  };
}

async function manifestFacts(reads: ChangeReads, commit: string, environment: string) {
  const files = await reads.deploy.listFiles(commit, envDir(environment));
  const manifests = await reads.contents([...files].filter(([path]) => /\.ya?ml$/.test(path)));
  let image: string | null = null;
  let sourceCommit: string | null = null;
  for (const { content } of manifests) {
    const text = content.toString();
    image ??= /\bimage:\s*["']?([^\s"']+@sha256:[a-f0-9]{64})/.exec(text)?.[1] ?? null;
    sourceCommit ??= /valve\.dev\/source-commit:\s*["']?([0-9a-f]{7,40})/.exec(text)?.[1] ?? null;
  }
  return { image, sourceCommit };
}

/** What an environment's folder pins now: image, source commit and the commit that wrote it. */
export async function currentDeploy(
  reads: ChangeReads,
  team: string,
  app: string,
  environment: string,
) {
  const dir = envDir(environment);
  const head = await reads.head();
  const [files, [revision]] = head
    ? await Promise.all([
        reads.deploy.listFiles(head, dir),
        logCommits(reads.deployGitDir, head, { limit: 1, path: dir }),
      ])
    : [new Map<string, TreeFile>(), []];
  const manifests = await reads.contents([...files].filter(([path]) => /\.ya?ml$/.test(path)));
  let desired;
  try {
    desired = readDesiredState(
      manifests.map(({ path, content }) => ({ path, text: content.toString() })),
      `${team}/${app}/${environment}`,
    );
  } catch (error) {
    if (error instanceof FileValidationError)
      throw new ValveError('DEPLOY_MANIFEST_INVALID', `deploy repo: ${error.message}`);
    throw error;
  }
  if (!desired.workload || !revision)
    throw new ValveError('DEPLOY_NOTHING_DEPLOYED', `nothing is deployed to ${environment}`);
  return {
    image: desired.workload.image.reference,
    sourceCommit: desired.sourceCommit,
    commit: revision.sha,
  };
}
