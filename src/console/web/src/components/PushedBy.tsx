/** Who pushed an image: a user over the registry, or a pipeline run (linked) and its user. */
import type { ImagePush } from '../api.js';
import { Link } from '../router.js';

export function PushedBy({
  push,
  team,
  app,
  testId,
}: {
  push: ImagePush | null;
  team: string;
  app: string;
  testId?: string;
}) {
  if (!push) {
    return (
      <span className="muted" data-testid={testId} data-via="">
        unknown
      </span>
    );
  }
  if (push.via === 'pipeline') {
    return (
      <span data-testid={testId} data-via="pipeline" data-run={push.run ?? ''}>
        {push.run !== null ? (
          <Link to={`/apps/${team}/${app}/runs/${push.run}`}>run #{push.run}</Link>
        ) : (
          'a pipeline run'
        )}
        {push.by && <span className="muted"> by {push.by}</span>}
      </span>
    );
  }
  return (
    <span data-testid={testId} data-via="registry">
      {push.by ?? <span className="muted">anonymous</span>}
    </span>
  );
}
