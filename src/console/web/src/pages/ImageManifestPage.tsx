/**
 * One manifest of an app's image repository: its tags, size and pusher; for an image its
 * layers and config (entrypoint, command, environment, ports, labels); for a multi-platform
 * index the image of each platform; and what refers to it (signatures, SBOMs) when known.
 */
import { Fragment } from 'react';
import { api, type ImageConfig, type ImageManifest } from '../api.js';
import { CopyableCode } from '../components/CopyableCode.js';
import { DigestCopy } from '../components/DigestCopy.js';
import { ErrorNote } from '../components/ErrorNote.js';
import { PushedBy } from '../components/PushedBy.js';
import {
  formatBytes,
  formatRelative,
  formatImageCreated,
  formatTimestamp,
  platformLabel,
  shortDigest,
} from '../format.js';
import { useNow, usePoll } from '../polling.js';
import { Link } from '../router.js';
import { imagePath } from './AppImagesPage.js';

export function ImageManifestPage({
  team,
  name,
  reference,
}: {
  team: string;
  name: string;
  reference: string;
}) {
  const manifest = usePoll(
    `${team}/${name}/manifest/${reference}`,
    () => api.imageManifest(team, name, reference),
    false,
  );
  const now = useNow();
  const data = manifest.data;

  return (
    <main className="page">
      <nav className="breadcrumbs">
        <Link to="/images">Images</Link> / <span>{team}</span> /{' '}
        <Link to={imagePath(team, name)} data-testid="manifest-repo-link">
          {name}
        </Link>{' '}
        / <span>{shortDigest(reference)}</span>
      </nav>
      <ErrorNote error={manifest.error} testId="manifest-error" />
      {!data && !manifest.error && <p className="muted">Loading…</p>}
      {data && (
        <div data-testid="image-manifest" data-digest={data.digest} data-kind={data.kind}>
          <h1>
            <span className="muted">{team}/</span>
            {name}
            {data.tags.length > 0 ? `:${data.tags.join(', ')}` : ''}
          </h1>
          <section className="card">
            <dl className="facts" data-testid="manifest-facts">
              <dt>Digest</dt>
              <dd>
                <DigestCopy digest={data.digest} testId="manifest-digest" />
              </dd>
              <dt>Tags</dt>
              <dd data-testid="manifest-tags">
                {data.tags.length ? (
                  data.tags.map((tag, i) => (
                    <Fragment key={tag}>
                      {i > 0 && ' '}
                      <code className="tag-chip">{tag}</code>
                    </Fragment>
                  ))
                ) : (
                  <span className="muted">none (pullable by digest)</span>
                )}
              </dd>
              <dt>Kind</dt>
              <dd>
                {data.kind === 'index' ? 'multi-platform index' : 'image'}{' '}
                <span className="muted">{data.mediaType}</span>
              </dd>
              <dt>Size</dt>
              <dd title={`${data.size} bytes`} data-testid="manifest-size" data-bytes={data.size}>
                {formatBytes(data.size)}
              </dd>
              <dt>Platforms</dt>
              <dd data-testid="manifest-platforms">
                {data.platforms.map(platformLabel).join(', ') || <span className="muted">—</span>}
              </dd>
              <dt>Created</dt>
              <dd>
                {data.created ? formatImageCreated(data.created) : <span className="muted">—</span>}
              </dd>
              <dt>Pushed</dt>
              <dd title={formatTimestamp(data.pushed?.at ?? null)}>
                <PushedBy push={data.pushed} team={team} app={name} testId="manifest-pushed-by" />
                {data.pushed && (
                  <span className="muted"> {formatRelative(data.pushed.at, now)}</span>
                )}
              </dd>
              <dt>Pull</dt>
              <dd>
                <CopyableCode text={`${window.location.host}/${team}/${name}@${data.digest}`} />
              </dd>
            </dl>
          </section>
          {data.kind === 'index' ? (
            <PlatformImages manifest={data} team={team} name={name} />
          ) : (
            <>
              <Layers manifest={data} />
              {data.config && <Config config={data.config} />}
            </>
          )}
          {data.referrers && data.referrers.length > 0 && (
            <Referrers manifest={data} team={team} name={name} />
          )}
        </div>
      )}
    </main>
  );
}

function Layers({ manifest }: { manifest: ImageManifest }) {
  const total = manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
  return (
    <>
      <h2>Layers</h2>
      <section className="card">
        {manifest.layers.length === 0 ? (
          <p className="muted">No layers.</p>
        ) : (
          <table data-testid="layers-table">
            <thead>
              <tr>
                <th>#</th>
                <th>Digest</th>
                <th>Media type</th>
                <th className="number">Size</th>
              </tr>
            </thead>
            <tbody>
              {manifest.layers.map((layer, index) => (
                <tr
                  key={`${index}-${layer.digest}`}
                  data-testid="layer-row"
                  data-digest={layer.digest}
                >
                  <td>{index + 1}</td>
                  <td>
                    <DigestCopy digest={layer.digest} />
                  </td>
                  <td className="muted">{layer.mediaType}</td>
                  <td
                    className="number"
                    title={`${layer.size} bytes`}
                    data-testid="layer-size"
                    data-bytes={layer.size}
                  >
                    {formatBytes(layer.size)}
                  </td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <td colSpan={3} className="muted">
                  {manifest.layers.length} layer{manifest.layers.length === 1 ? '' : 's'}
                </td>
                <td className="number" title={`${total} bytes`}>
                  {formatBytes(total)}
                </td>
              </tr>
            </tfoot>
          </table>
        )}
      </section>
    </>
  );
}

function Config({ config }: { config: ImageConfig }) {
  const command = (value: string[] | null) =>
    value && value.length ? <code>{JSON.stringify(value)}</code> : <span className="muted">—</span>;
  const labels = Object.entries(config.labels);
  return (
    <>
      <h2>Config</h2>
      <section className="card">
        <dl className="facts" data-testid="config-facts">
          <dt>Entrypoint</dt>
          <dd data-testid="config-entrypoint">{command(config.entrypoint)}</dd>
          <dt>Command</dt>
          <dd data-testid="config-cmd">{command(config.cmd)}</dd>
          <dt>Working dir</dt>
          <dd>
            {config.workdir ? <code>{config.workdir}</code> : <span className="muted">—</span>}
          </dd>
          <dt>User</dt>
          <dd>{config.user ? <code>{config.user}</code> : <span className="muted">—</span>}</dd>
          <dt>Ports</dt>
          <dd>
            {config.ports.length ? config.ports.join(', ') : <span className="muted">—</span>}
          </dd>
          <dt>OS / arch</dt>
          <dd>
            {config.os && config.architecture
              ? platformLabel({
                  os: config.os,
                  architecture: config.architecture,
                  variant: config.variant ?? undefined,
                })
              : '—'}
          </dd>
          <dt>Environment</dt>
          <dd data-testid="config-env">
            {config.env.length ? (
              <ul className="plain-list">
                {config.env.map((entry) => (
                  <li key={entry}>
                    <code>{entry}</code>
                  </li>
                ))}
              </ul>
            ) : (
              <span className="muted">—</span>
            )}
          </dd>
          <dt>Labels</dt>
          <dd data-testid="config-labels">
            {labels.length ? (
              <ul className="plain-list">
                {labels.map(([key, value]) => (
                  <li key={key}>
                    <code>{key}</code> = <code>{value}</code>
                  </li>
                ))}
              </ul>
            ) : (
              <span className="muted">—</span>
            )}
          </dd>
          <dt>Config blob</dt>
          <dd>
            <DigestCopy digest={config.digest} />{' '}
            <span className="muted">{formatBytes(config.size)}</span>
          </dd>
        </dl>
      </section>
    </>
  );
}

function PlatformImages({
  manifest,
  team,
  name,
}: {
  manifest: ImageManifest;
  team: string;
  name: string;
}) {
  return (
    <>
      <h2>Platforms</h2>
      <section className="card">
        <table data-testid="child-manifests-table">
          <thead>
            <tr>
              <th>Platform</th>
              <th>Digest</th>
              <th className="number">Size</th>
            </tr>
          </thead>
          <tbody>
            {manifest.manifests.map((child) => (
              <tr key={child.digest} data-testid="child-manifest-row" data-digest={child.digest}>
                <td>
                  <Link to={imagePath(team, name, child.digest)} data-testid="child-manifest-link">
                    {child.platform ? platformLabel(child.platform) : 'unknown platform'}
                  </Link>
                </td>
                <td>
                  <DigestCopy digest={child.digest} />
                </td>
                <td className="number" title={`${child.size} bytes`}>
                  {formatBytes(child.size)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}

function Referrers({
  manifest,
  team,
  name,
}: {
  manifest: ImageManifest;
  team: string;
  name: string;
}) {
  return (
    <>
      <h2>Referrers</h2>
      <section className="card">
        <table data-testid="referrers-table">
          <thead>
            <tr>
              <th>Artifact type</th>
              <th>Digest</th>
              <th className="number">Size</th>
            </tr>
          </thead>
          <tbody>
            {(manifest.referrers ?? []).map((referrer) => (
              <tr key={referrer.digest} data-testid="referrer-row">
                <td>
                  <Link to={imagePath(team, name, referrer.digest)}>
                    {referrer.artifactType ?? referrer.mediaType}
                  </Link>
                </td>
                <td>
                  <DigestCopy digest={referrer.digest} />
                </td>
                <td className="number">{formatBytes(referrer.size)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
