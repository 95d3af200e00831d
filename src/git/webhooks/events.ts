/**
 * Turns a provider's (already verified) webhook delivery into one shape, `PushHook`, or says
 * why it is not a push Valve acts on. One schema per provider says what Valve reads from the
 * payload; everything else in it is ignored.
 */
import { z } from 'zod';
import { ValveError } from '../../errors.js';
import { readHeader, type WebhookHeaders } from './headers.js';
import type { WebhookProvider } from './verify.js';

export interface PushCommit {
  id: string;
  message: string;
  added: string[];
  modified: string[];
  removed: string[];
}

export interface PushHook {
  provider: WebhookProvider;
  event: 'push';
  /** Full ref name: `refs/heads/main`, `refs/tags/v1`. */
  ref: string;
  /** Object ids; all zeros when the ref was created (`before`) or deleted (`after`). */
  before: string;
  after: string;
  /** HTTP(S) clone URL of the repository, as the provider reports it. */
  repoUrl: string;
  /** The provider's username of whoever pushed. */
  pusher: string;
  deleted: boolean;
  /** As listed by the provider, which caps the list (GitLab at 20 commits). */
  commits: PushCommit[];
}

export type ParsedWebhook = PushHook | { ignored: string };

const objectId = z
  .string()
  .regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/, 'expected a 40- or 64-digit hex object id');
const refName = z.string().regex(/^refs\/\S+$/, 'expected a full ref name such as refs/heads/main');
const cloneUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) clone URL' });
const paths = z
  .array(z.string())
  .nullish()
  .transform((list) => list ?? []);
const commit = z.object({
  id: objectId,
  message: z.string(),
  added: paths,
  modified: paths,
  removed: paths,
});

const githubPush = z.object({
  ref: refName,
  before: objectId,
  after: objectId,
  deleted: z.boolean().optional(),
  pusher: z.object({ name: z.string().min(1) }),
  repository: z.object({ clone_url: cloneUrl }),
  commits: z.array(commit),
});

const gitlabPush = z.object({
  object_kind: z.enum(['push', 'tag_push']),
  ref: refName,
  before: objectId,
  after: objectId,
  user_username: z.string().min(1).optional(),
  user_name: z.string().min(1),
  project: z.object({ git_http_url: cloneUrl }),
  commits: z.array(commit),
});

const giteaPush = z.object({
  ref: refName,
  before: objectId,
  after: objectId,
  pusher: z.object({ login: z.string().min(1) }),
  repository: z.object({ clone_url: cloneUrl }),
  commits: z
    .array(commit)
    .nullish()
    .transform((list) => list ?? []),
});

/** Git's "no object": the `after` of a deleted ref, the `before` of a new one. */
const isZeroId = (id: string) => /^0+$/.test(id);

type Common = Pick<PushHook, 'ref' | 'before' | 'after' | 'commits'>;
const common = (payload: Common): Common => ({
  ref: payload.ref,
  before: payload.before,
  after: payload.after,
  commits: payload.commits,
});

/** What each provider calls its event header, which values mean a push, and how to read one. */
const providers: Record<
  WebhookProvider,
  {
    eventHeader: string;
    pushEvents: readonly string[];
    /** Events that only check the webhook is set up. */
    pingEvents: readonly string[];
    parse(body: unknown): Omit<PushHook, 'provider' | 'event'>;
  }
> = {
  github: {
    eventHeader: 'X-GitHub-Event',
    pushEvents: ['push'],
    pingEvents: ['ping'],
    parse(body) {
      const payload = validate(githubPush, body);
      return {
        ...common(payload),
        repoUrl: payload.repository.clone_url,
        pusher: payload.pusher.name,
        deleted: payload.deleted ?? isZeroId(payload.after),
      };
    },
  },
  gitlab: {
    eventHeader: 'X-Gitlab-Event',
    pushEvents: ['Push Hook', 'Tag Push Hook'],
    pingEvents: [],
    parse(body) {
      const payload = validate(gitlabPush, body);
      return {
        ...common(payload),
        repoUrl: payload.project.git_http_url,
        pusher: payload.user_username ?? payload.user_name,
        deleted: isZeroId(payload.after),
      };
    },
  },
  gitea: {
    eventHeader: 'X-Gitea-Event',
    pushEvents: ['push'],
    pingEvents: [],
    parse(body) {
      const payload = validate(giteaPush, body);
      return {
        ...common(payload),
        repoUrl: payload.repository.clone_url,
        pusher: payload.pusher.login,
        deleted: isZeroId(payload.after),
      };
    },
  },
};

/**
 * The push a delivery describes, or `{ ignored }` with the reason it needs no action (a ping,
 * or another kind of event). A push whose payload lacks what Valve needs is an `INPUT_INVALID`
 * error naming each field ("repository.clone_url: expected ...").
 */
export function parsePushEvent(
  provider: WebhookProvider,
  headers: WebhookHeaders,
  body: unknown,
): ParsedWebhook {
  const spec = providers[provider];
  if (!spec) throw new ValveError('INPUT_INVALID', `unknown webhook provider "${provider}"`);
  const header = readHeader(headers, spec.eventHeader);
  if ('reason' in header) throw new ValveError('INPUT_INVALID', header.reason);
  if ('missing' in header || header.value === '') {
    throw new ValveError(
      'INPUT_INVALID',
      `${spec.eventHeader}: expected a header naming the event (is this a ${provider} webhook?)`,
    );
  }
  const event = header.value;
  if (spec.pingEvents.includes(event)) {
    return { ignored: `${event}: the provider is checking the webhook; nothing to do` };
  }
  if (!spec.pushEvents.includes(event)) {
    return { ignored: `${event}: only push events trigger Valve` };
  }
  return { provider, event: 'push', ...spec.parse(body) };
}

function validate<T extends z.ZodType>(schema: T, body: unknown): z.output<T> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.join('.') : '(body)';
    return `${path}: ${issue.message.replace(/^Invalid input: /, '')}`;
  });
  throw new ValveError('INPUT_INVALID', problems.join('; '), { issues: result.error.issues });
}
