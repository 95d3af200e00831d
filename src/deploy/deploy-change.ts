/**
 * A change to what an environment runs (deploy, promote, rollback) and the deploy-repo commit
 * message that records it: a subject that reads as what happened, `Key: value` trailers for the
 * image, the source commit and where it came from, and the author. History reads the trailers
 * back (deploy-history.ts); an approval shows the subject it will commit (deploy-approvals.ts).
 */

/** Commits Valve makes on its own behalf. */
export const VALVE_AUTHOR = { name: 'Valve', email: 'valve@localhost' } as const;
export const authorOf = (username: string | null) =>
  username && username !== 'valve' ? { name: username, email: `${username}@valve` } : VALVE_AUTHOR;

/** `hello@sha256:0123456789ab` */
const imageLabel = (app: string, digest: string) => `${app}@${digest.slice(0, 19)}`;
export const digestOf = (reference: string) => reference.slice(reference.indexOf('@') + 1);
export const shortSha = (sha: string | null | undefined) => (sha ? sha.slice(0, 7) : 'unknown');

/** A change waiting to be committed (and the JSON of an approval's `request`). */
export interface DeployChange {
  kind: 'deploy' | 'promote' | 'rollback';
  environment: string;
  /** Image reference pinned by digest. */
  image: string;
  sourceCommit: string | null;
  /** promote: the environment and deploy commit the digest was taken from. */
  from?: { environment: string; commit: string };
  /** rollback: the earlier deploy commit whose folder comes back. */
  rollbackTo?: string;
}

/** Who approved a change, and the approval (`deploy_approvals.id`) it was asked in. */
export interface ApprovedBy {
  by: string;
  id: string;
}

export function deployCommitMessage(
  app: string,
  change: DeployChange,
  approved?: ApprovedBy | null,
): string {
  const subject = subjectOf(app, change);
  const trailers = [
    `Image: ${change.image}`,
    `Source-Commit: ${change.sourceCommit ?? 'unknown'}`,
    ...(change.from ? [`Promoted-From: ${change.from.environment} ${change.from.commit}`] : []),
    ...(change.rollbackTo ? [`Rolled-Back-To: ${change.rollbackTo}`] : []),
    // The approval's id finds the commit again (a server stopped before it recorded it).
    ...(approved ? [`Approved-By: ${approved.by}`, `Approval: ${approved.id}`] : []),
  ];
  return `${subject}\n\n${trailers.join('\n')}\n`;
}

export function subjectOf(app: string, change: DeployChange): string {
  const image = imageLabel(app, digestOf(change.image));
  switch (change.kind) {
    case 'deploy':
      return `deploy ${change.environment}: ${image} (source ${shortSha(change.sourceCommit)})`;
    case 'promote':
      return `promote ${change.from!.environment} -> ${change.environment}: ${image} (source ${shortSha(change.sourceCommit)})`;
    case 'rollback':
      return `rollback ${change.environment} to ${shortSha(change.rollbackTo)} (deploy of ${image})`;
  }
}

/** `Key: value` lines of a commit body. */
export function parseTrailers(body: string): Record<string, string> {
  const trailers: Record<string, string> = {};
  for (const line of body.split('\n')) {
    const match = /^([A-Za-z][A-Za-z-]*): (.+)$/.exec(line.trim());
    if (match) trailers[match[1]!] = match[2]!;
  }
  return trailers;
}
