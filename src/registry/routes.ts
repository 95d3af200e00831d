import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ValveError } from '../errors.js';
import { RegistryError } from './errors.js';
import { bareMediaType, mediaTypes } from './manifests.js';
import { isSha256Digest, parseReference, validateRepositoryName } from './names.js';
import {
  allowedMethods,
  parseByteRange,
  parseContentRange,
  parseRegistryPath,
  type RegistryPath,
} from './paths.js';
import { ReferrersIndex } from './referrers.js';
import type { Registry } from './registry.js';
import type { UploadStatus } from './upload-sessions.js';

export type RegistryAction = 'pull' | 'push';
export type AccessDecision = 'ok' | 'unauthenticated' | 'denied';

export interface RegistryRoutesOptions {
  /** May `request`'s caller do `action` on repository `repo`? */
  authorize: (
    request: FastifyRequest,
    repo: string,
    action: RegistryAction,
  ) => Promise<AccessDecision>;
  /** Did the caller present valid credentials (for `GET /v2/`)? */
  authenticated: (request: FastifyRequest) => Promise<boolean>;
  /** Largest manifest accepted, in bytes; the spec asks registries to take at least 4 MiB. */
  manifestBodyLimit?: number;
  /**
   * The `WWW-Authenticate` value of a 401; `scope` is what the refused request needed when it
   * names a repository (e.g. a Bearer challenge, see token.ts). Default: `BASIC_CHALLENGE`.
   */
  challenge?: (request: FastifyRequest, scope?: ChallengeScope) => string;
  /** Called once a pushed manifest is stored (who pushed what, for the console and CLI). */
  onManifestPushed?: (request: FastifyRequest, pushed: PushedManifest) => Promise<void>;
}

export interface PushedManifest {
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  tags: string[];
}

/** What a 401 was refused for: one action on one repository. */
export interface ChallengeScope {
  repo: string;
  action: RegistryAction;
}

export const BASIC_CHALLENGE = 'Basic realm="Valve Registry"';
const challengeScopes = new WeakMap<RegistryError, ChallengeScope>();
const DEFAULT_MANIFEST_LIMIT = 4 * 1024 * 1024;
/** Largest page of tags or repositories served at once; a larger `n` gets this many. */
const MAX_PAGE = 1000;

/**
 * The OCI Distribution API under `/v2/`, as a fastify plugin. Register it without a prefix:
 * the `Location` headers it sends are absolute paths starting at `/v2/`.
 *
 * Access: 'unauthenticated' answers 401 with `options.challenge` (Basic by default). 'denied'
 * answers a pull with 404 NAME_UNKNOWN, exactly as for a repository that does not exist, so
 * other teams' names do not leak; a push gets 403 DENIED, which says nothing about whether the
 * repository exists.
 */
export function registryRoutes(registry: Registry, options: RegistryRoutesOptions) {
  const manifestLimit = options.manifestBodyLimit ?? DEFAULT_MANIFEST_LIMIT;

  return async function registryPlugin(app: FastifyInstance): Promise<void> {
    // Blob and manifest bodies arrive as the raw request stream, whatever their content type
    // (manifests are JSON with vendor types). This scope only: the JSON API keeps its parsers.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, payload, done) => done(null, payload));

    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header('Docker-Distribution-API-Version', 'registry/2.0');
      return payload;
    });
    const challenge = options.challenge ?? (() => BASIC_CHALLENGE);
    app.setErrorHandler((error, request, reply) =>
      sendRegistryError(error, request, reply, challenge),
    );

    app.route({
      method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      url: '/v2/*',
      exposeHeadRoute: false,
      handler: (request, reply) => dispatch(request, reply),
    });
    app.route({
      method: ['GET', 'HEAD'],
      url: '/v2',
      exposeHeadRoute: false,
      handler: (request, reply) => dispatch(request, reply),
    });
  };

  async function dispatch(request: FastifyRequest, reply: FastifyReply) {
    const url = new URL(request.url, 'http://registry.invalid');
    const target = parseRegistryPath(url.pathname);
    if (!target) {
      throw new RegistryError(
        'UNSUPPORTED',
        `no registry endpoint at ${url.pathname}`,
        undefined,
        404,
      );
    }
    const allowed = allowedMethods[target.kind];
    if (!allowed.includes(request.method)) {
      reply.header('Allow', allowed.join(', '));
      throw new RegistryError('UNSUPPORTED', `${request.method} is not supported on this endpoint`);
    }
    if (target.kind === 'base') {
      if (!(await options.authenticated(request))) throw new RegistryError('UNAUTHORIZED');
      return reply.send({});
    }
    if (target.kind === 'catalog') return catalog(request, reply, url.searchParams);
    validateRepositoryName(target.name);
    await requireAccess(request, target.name, actionFor(target, request.method));

    switch (target.kind) {
      case 'blob':
        return getBlob(request, reply, target.name, target.digest);
      case 'uploads':
        return startUpload(request, reply, target.name, url.searchParams);
      case 'upload':
        return continueUpload(request, reply, target.name, target.id, url.searchParams);
      case 'manifest':
        return manifest(request, reply, target.name, target.reference, url.searchParams);
      case 'tags':
        return listTags(reply, target.name, url.searchParams);
      case 'referrers':
        return referrers(reply, target.name, target.digest, url.searchParams);
    }
  }

  async function requireAccess(request: FastifyRequest, repo: string, action: RegistryAction) {
    const decision = await options.authorize(request, repo, action);
    if (decision === 'ok') return;
    if (decision === 'unauthenticated') {
      // The spec's detail for UNAUTHORIZED; the scope also goes into the challenge.
      const error = new RegistryError('UNAUTHORIZED', undefined, [
        { Type: 'repository', Name: repo, Action: action },
      ]);
      challengeScopes.set(error, { repo, action });
      throw error;
    }
    if (action === 'pull') {
      throw new RegistryError('NAME_UNKNOWN', `repository ${repo} not found`, { name: repo });
    }
    throw new RegistryError('DENIED', `no push access to repository ${repo}`, { name: repo });
  }

  async function getBlob(
    request: FastifyRequest,
    reply: FastifyReply,
    name: string,
    digest: string,
  ) {
    const stat = await registry.statRepositoryBlob(name, digest);
    if (!stat)
      throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} not found in ${name}`, { digest });
    reply
      .header('Docker-Content-Digest', digest)
      .header('ETag', `"${digest}"`)
      .header('Accept-Ranges', 'bytes')
      .type('application/octet-stream');
    if (request.method === 'HEAD') return reply.header('Content-Length', stat.size).send();

    const range = parseByteRange(request.headers.range, stat.size);
    if (range === 'unsatisfiable') {
      reply.header('Content-Range', `bytes */${stat.size}`);
      throw new RegistryError(
        'SIZE_INVALID',
        `requested range is outside the blob (${stat.size} bytes)`,
        {
          size: stat.size,
        },
        416,
      );
    }
    const stream = await registry.openBlob(digest, range ?? undefined);
    if (!stream)
      throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} not found in ${name}`, { digest });
    if (range) {
      reply
        .code(206)
        .header('Content-Range', `bytes ${range.start}-${range.end}/${stat.size}`)
        .header('Content-Length', range.end - range.start + 1);
    } else {
      reply.header('Content-Length', stat.size);
    }
    return reply.send(stream);
  }

  async function startUpload(
    request: FastifyRequest,
    reply: FastifyReply,
    name: string,
    query: URLSearchParams,
  ) {
    const mount = query.get('mount');
    const from = query.get('from');
    if (mount && from && (await mountBlob(request, name, mount, from))) {
      return blobCreated(reply, name, mount);
    }
    const digest = query.get('digest');
    if (digest !== null) {
      const stored = await registry.putRepositoryBlob(name, request.raw, digest);
      return blobCreated(reply, name, stored.digest);
    }
    const session = await registry.uploads.start(name);
    return uploadState(reply.code(202), session).send();
  }

  /**
   * Cross-repository mount: only from a repository the caller may pull, and only a blob that
   * belongs to it. Anything else falls back to a new upload session, as the spec allows.
   */
  async function mountBlob(request: FastifyRequest, name: string, digest: string, from: string) {
    if (!isSha256Digest(digest)) return false;
    try {
      validateRepositoryName(from);
    } catch {
      return false;
    }
    if ((await options.authorize(request, from, 'pull')) !== 'ok') return false;
    if (!(await registry.statRepositoryBlob(from, digest))) return false;
    await registry.linkBlob(name, digest);
    return true;
  }

  async function continueUpload(
    request: FastifyRequest,
    reply: FastifyReply,
    name: string,
    id: string,
    query: URLSearchParams,
  ) {
    if (request.method === 'GET') {
      return uploadState(reply.code(204), await registry.uploads.status(name, id)).send();
    }
    if (request.method === 'DELETE') {
      await registry.uploads.cancel(name, id);
      return reply.code(204).send();
    }
    const range = parseContentRange(request.headers['content-range']);
    if (range === 'invalid') {
      throw new RegistryError(
        'BLOB_UPLOAD_INVALID',
        `invalid Content-Range "${request.headers['content-range']}": expected <start>-<end>`,
      );
    }
    try {
      if (request.method === 'PATCH') {
        const status = await registry.uploads.append(name, id, request.raw, range ?? undefined);
        return uploadState(reply.code(202), status).send();
      }
      const digest = query.get('digest');
      if (!digest) {
        throw new RegistryError(
          'DIGEST_INVALID',
          'the closing PUT needs ?digest=<digest of the whole blob>',
        );
      }
      const body = hasBody(request) ? request.raw : undefined;
      const stored = await registry.uploads.finish(name, id, digest, body, range ?? undefined);
      return blobCreated(reply, name, stored.digest);
    } catch (error) {
      // After a 416 the client needs to know where the upload stands (spec: end-13).
      if (error instanceof RegistryError && error.status === 416) {
        uploadState(reply, await registry.uploads.status(name, id));
      }
      throw error;
    }
  }

  async function manifest(
    request: FastifyRequest,
    reply: FastifyReply,
    name: string,
    reference: string,
    query: URLSearchParams,
  ) {
    if (request.method === 'PUT') {
      const body = await readManifestBody(request, manifestLimit);
      const tags = query.getAll('tag');
      const mediaType = request.headers['content-type'] ?? '';
      const { digest, subject } = await registry.putManifest(name, reference, body, mediaType, {
        blobsFrom: 'repository',
        tags,
      });
      const target = parseReference(reference);
      await options.onManifestPushed?.(request, {
        repo: name,
        digest,
        mediaType: bareMediaType(mediaType),
        size: body.length,
        tags: target.kind === 'tag' ? [target.tag, ...tags] : tags,
      });
      reply
        .code(201)
        .header('Location', `/v2/${name}/manifests/${digest}`)
        .header('Docker-Content-Digest', digest)
        .header('Content-Length', 0);
      if (tags.length > 0) reply.header('OCI-Tag', tags.join(', '));
      // Tells the client this registry keeps the referrers index itself (spec: "Pushing
      // Manifests with Subject"), so it need not maintain the tag-schema fallback.
      if (subject) reply.header('OCI-Subject', subject);
      return reply.send();
    }
    if (request.method === 'DELETE') {
      const target = parseReference(reference);
      const deleted =
        target.kind === 'digest'
          ? await registry.deleteManifest(name, target.digest)
          : await registry.deleteTag(name, target.tag);
      if (!deleted) throw await manifestUnknown(name, reference);
      return reply.code(202).send();
    }
    const found = await registry.getManifest(name, reference);
    if (!found) throw await manifestUnknown(name, reference);
    reply
      .type(found.mediaType)
      .header('Docker-Content-Digest', found.digest)
      .header('ETag', `"${found.digest}"`)
      .header('Content-Length', found.body.length);
    return request.method === 'HEAD' ? reply.send() : reply.send(found.body);
  }

  /**
   * The referrers API: an image index of the manifests whose `subject` is `digest`, filtered
   * by `artifactType` when asked. An unknown subject lists nothing (the spec forbids a 404).
   */
  async function referrers(
    reply: FastifyReply,
    name: string,
    digest: string,
    query: URLSearchParams,
  ) {
    if (!isSha256Digest(digest)) {
      throw new RegistryError(
        'DIGEST_INVALID',
        `"${digest}" is not a digest: expected sha256:<64 hex>`,
        { digest },
        400,
      );
    }
    const artifactType = query.get('artifactType') ?? undefined;
    const found = await registry.listReferrers(name, digest, artifactType);
    if (artifactType !== undefined) reply.header('OCI-Filters-Applied', 'artifactType');
    // A Buffer, so fastify adds no `; charset=utf-8` to the index's media type.
    const index = Buffer.from(JSON.stringify(ReferrersIndex.asIndex(found)));
    return reply.type(mediaTypes.ociIndex).send(index);
  }

  /**
   * `GET /v2/_catalog` (a Distribution extension, not in the OCI spec): the repositories the
   * caller may pull, in order, paginated like tags with `n` and `last`.
   */
  async function catalog(request: FastifyRequest, reply: FastifyReply, query: URLSearchParams) {
    if (!(await options.authenticated(request))) throw new RegistryError('UNAUTHORIZED');
    const { n, last } = pageQuery(query);
    const visible: string[] = [];
    for (const repo of await registry.listRepositories()) {
      if (last !== undefined && repo <= last) continue;
      if ((await options.authorize(request, repo, 'pull')) === 'ok') visible.push(repo);
      if (n !== undefined && visible.length > n) break;
    }
    if (n === undefined) return reply.send({ repositories: visible });
    const repositories = visible.slice(0, n);
    if (visible.length > n) {
      const next = `/v2/_catalog?n=${n}&last=${encodeURIComponent(repositories[repositories.length - 1]!)}`;
      reply.header('Link', `<${next}>; rel="next"`);
    }
    return reply.send({ repositories });
  }

  async function manifestUnknown(name: string, reference: string) {
    if (!(await registry.repositoryExists(name))) {
      return new RegistryError('NAME_UNKNOWN', `repository ${name} not found`, { name });
    }
    return new RegistryError('MANIFEST_UNKNOWN', `manifest ${reference} not found in ${name}`, {
      reference,
    });
  }

  async function listTags(reply: FastifyReply, name: string, query: URLSearchParams) {
    if (!(await registry.repositoryExists(name))) {
      throw new RegistryError('NAME_UNKNOWN', `repository ${name} not found`, { name });
    }
    const { n, last } = pageQuery(query);
    if (n === undefined) return reply.send({ name, tags: await registry.listTags(name, { last }) });
    if (n === 0) return reply.send({ name, tags: [] });
    const page = await registry.listTags(name, { n: n + 1, last });
    const tags = page.slice(0, n);
    if (page.length > n) {
      const next = `/v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(tags[tags.length - 1]!)}`;
      reply.header('Link', `<${next}>; rel="next"`);
    }
    return reply.send({ name, tags });
  }
}

/** The `n` and `last` of a paginated list; `n` is capped at the largest page served. */
function pageQuery(query: URLSearchParams): { n?: number; last?: string } {
  const nParam = query.get('n');
  const last = query.get('last') ?? undefined;
  if (nParam !== null && !/^\d+$/.test(nParam)) {
    throw new RegistryError(
      'UNSUPPORTED',
      `n must be a non-negative integer, got "${nParam}"`,
      undefined,
      400,
    );
  }
  return {
    ...(nParam === null ? {} : { n: Math.min(Number(nParam), MAX_PAGE) }),
    ...(last === undefined ? {} : { last }),
  };
}

function actionFor(target: RegistryPath, method: string): RegistryAction {
  if (target.kind === 'uploads' || target.kind === 'upload') return 'push';
  return method === 'GET' || method === 'HEAD' ? 'pull' : 'push';
}

function blobCreated(reply: FastifyReply, name: string, digest: string) {
  return reply
    .code(201)
    .header('Location', `/v2/${name}/blobs/${digest}`)
    .header('Docker-Content-Digest', digest)
    .header('Content-Length', 0)
    .send();
}

/** The headers that tell a client where an upload session stands. */
function uploadState(reply: FastifyReply, status: UploadStatus): FastifyReply {
  return reply
    .header('Location', `/v2/${status.repo}/blobs/uploads/${status.id}`)
    .header('Docker-Upload-UUID', status.id)
    .header('Range', `0-${Math.max(status.size - 1, 0)}`)
    .header('Content-Length', 0);
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (
    request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  );
}

async function readManifestBody(request: FastifyRequest, limit: number): Promise<Buffer> {
  const tooLarge = () =>
    new RegistryError(
      'SIZE_INVALID',
      `manifest is larger than the ${limit} bytes accepted`,
      { limit },
      413,
    );
  if (Number(request.headers['content-length'] ?? 0) > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request.raw) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Every error leaves this scope in the spec's `{"errors": [...]}` form. */
function sendRegistryError(
  error: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  challenge: NonNullable<RegistryRoutesOptions['challenge']>,
) {
  const registryError = toRegistryError(error);
  if (!registryError) {
    request.log.error({ err: error }, 'registry request failed');
    return reply
      .code(500)
      .type('application/json')
      .send({ errors: [{ code: 'UNKNOWN', message: 'internal error' }] });
  }
  if (registryError.status === 401) {
    reply.header('WWW-Authenticate', challenge(request, challengeScopes.get(registryError)));
  }
  return reply
    .code(registryError.status)
    .type('application/json')
    .send({
      errors: [
        {
          code: registryError.code,
          message: registryError.message,
          ...(registryError.detail === undefined ? {} : { detail: registryError.detail }),
        },
      ],
    });
}

/** Errors from elsewhere (auth's ValveErrors, fastify's own) in the spec's vocabulary. */
function toRegistryError(error: unknown): RegistryError | null {
  if (error instanceof RegistryError) return error;
  if (error instanceof ValveError) {
    if (error.status === 401) return new RegistryError('UNAUTHORIZED', error.message);
    if (error.status === 403) return new RegistryError('DENIED', error.message);
    if (error.status < 500)
      return new RegistryError('UNSUPPORTED', error.message, undefined, error.status);
    return null;
  }
  const status = (error as FastifyError | null)?.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = status === 413 ? 'SIZE_INVALID' : 'UNSUPPORTED';
    return new RegistryError(code, (error as Error).message, undefined, status);
  }
  return null;
}
