/**
 * The image repository of one app: every tag with its digest, size, platforms, build time and
 * who pushed it, each opening its manifest; members who may push can delete a tag.
 */
import { useState } from 'react';
import { api, type ImageTag, type Me } from '../api.js';
import { DigestCopy } from '../components/DigestCopy.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { PushedBy } from '../components/PushedBy.js';
import {
  formatBytes,
  formatImageCreated,
  formatRelative,
  formatTimestamp,
  platformLabel,
} from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';

/** Roles that may push to the team's registry repositories, and so delete tags. */
const pushRoles = ['developer', 'admin'];

export const imagePath = (team: string, app: string, reference?: string) =>
  `/apps/${team}/${app}/images${reference ? `/${reference}` : ''}`;

/** Whether `me` may delete tags of the team's images (the API checks again). */
export const canPush = (me: Me, team: string) =>
  me.teams.some((m) => m.team === team && m.status === 'active' && pushRoles.includes(m.role));

export function AppImagesPage({ team, name, me }: { team: string; name: string; me: Me }) {
  const tags = usePoll(`${team}/${name}/image-tags`, () => api.imageTags(team, name), false);
  const now = useNow();
  const [error, setError] = useState<Error | null>(null);
  const [deleted, setDeleted] = useState<string | null>(null);
  const mayDelete = canPush(me, team);

  const remove = async (tag: ImageTag) => {
    if (
      !window.confirm(
        `Delete tag ${tag.tag} of ${team}/${name}? The image stays pullable by its digest.`,
      )
    ) {
      return;
    }
    setError(null);
    setDeleted(null);
    try {
      await api.deleteImageTag(team, name, tag.tag);
      setDeleted(tag.tag);
      tags.reload();
    } catch (failure) {
      setError(failure as Error);
    }
  };

  return (
    <main className="page">
      <nav className="breadcrumbs">
        <Link to="/images">Images</Link> / <span>{team}</span> /{' '}
        <Link to={`/apps/${team}/${name}`}>{name}</Link>
      </nav>
      <h1 data-testid="image-repo-title">
        <span className="muted">{team}/</span>
        {name} <span className="muted">images</span>
      </h1>
      <p className="muted">
        Pull with <code>{`${window.location.host}/${team}/${name}:<tag>`}</code>
      </p>
      <ErrorNote error={tags.error ?? error} testId="image-error" />
      {deleted && (
        <p className="info-note" data-testid="image-tag-deleted">
          Deleted tag <code>{deleted}</code>.
        </p>
      )}
      <section className="card">
        {tags.data === undefined && !tags.error && <p className="muted">Loading…</p>}
        {tags.data?.length === 0 && (
          <p className="muted" data-testid="image-tags-empty">
            No tags. A pipeline run&apos;s <code>valve/build-image</code> step pushes one per
            commit.
          </p>
        )}
        {tags.data && tags.data.length > 0 && (
          <table className="image-tags" data-testid="image-tags-table">
            <thead>
              <tr>
                <th>Tag</th>
                <th>Digest</th>
                <th>Size</th>
                <th>Platforms</th>
                <th>Created</th>
                <th>Pushed by</th>
                <th>Age</th>
                {mayDelete && <th />}
              </tr>
            </thead>
            <tbody>
              {tags.data.map((tag) => (
                <tr
                  key={tag.tag}
                  data-testid="image-tag-row"
                  data-tag={tag.tag}
                  data-digest={tag.digest}
                  data-kind={tag.kind}
                >
                  <td>
                    <Link
                      to={imagePath(team, name, tag.digest)}
                      data-testid="image-tag-link"
                      title="Layers, config and platforms"
                    >
                      {tag.tag}
                    </Link>
                    {tag.kind === 'index' && <span className="badge">multi-platform</span>}
                  </td>
                  <td>
                    <DigestCopy digest={tag.digest} testId="image-tag-digest" />
                  </td>
                  <td
                    title={`${tag.size} bytes`}
                    data-testid="image-tag-size"
                    data-bytes={tag.size}
                  >
                    {formatBytes(tag.size)}
                  </td>
                  <td>{tag.platforms.map(platformLabel).join(', ') || '—'}</td>
                  <td title={formatTimestamp(tag.created)}>
                    {tag.created ? (
                      formatImageCreated(tag.created)
                    ) : (
                      <span className="muted">—</span>
                    )}
                  </td>
                  <td>
                    <PushedBy
                      push={tag.pushed}
                      team={team}
                      app={name}
                      testId="image-tag-pushed-by"
                    />
                  </td>
                  <td title={formatTimestamp(tag.pushed?.at ?? null)}>
                    {tag.pushed ? formatRelative(tag.pushed.at, now) : ''}
                  </td>
                  {mayDelete && (
                    <td className="row-actions">
                      <button
                        type="button"
                        className="button-small button-danger"
                        onClick={() => void remove(tag)}
                        data-testid="image-tag-delete"
                      >
                        Delete
                      </button>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </main>
  );
}
