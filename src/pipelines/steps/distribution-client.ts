import { Readable } from 'node:stream';

/**
 * A small client for pushing to an OCI Distribution registry (Docker Hub, GHCR, ECR, Harbor,
 * `registry:2`, another Valve): blob existence checks, monolithic blob uploads (POST for a
 * session, then one PUT with the whole blob), and manifest pushes. Authentication follows the
 * registry's 401 challenge: Basic with the given credentials, or a Bearer token fetched from
 * the challenge's realm (with the credentials, if any) for the challenged scope.
 */

export interface ClientOptions {
  /** `host[:port]`. */
  host: string;
  /** Plain http instead of https (a registry on loopback or a trusted network). */
  insecure: boolean;
  username?: string;
  password?: string;
  signal: AbortSignal;
}

/** Produces a request body; called again when a request is repeated after a challenge. */
type BodySource = () => Promise<{ body: BodyInit; length: number }>;

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export class RegistryClientError extends Error {
  override name = 'RegistryClientError';
}

export class DistributionClient {
  private readonly origin: string;
  /** Authorization headers by token scope; '' is the Basic header. */
  private readonly authorizations = new Map<string, string>();

  constructor(private readonly options: ClientOptions) {
    this.origin = `${options.insecure ? 'http' : 'https'}://${options.host}`;
  }

  /** Whether the repository already has the blob (then it need not be uploaded). */
  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const response = await this.request(repository, 'HEAD', `/v2/${repository}/blobs/${digest}`);
    if (response.status === 200) return true;
    if (response.status === 404) return false;
    throw await failure(response, `checking blob ${digest}`);
  }

  /** Uploads a blob in one PUT; the registry checks it against `digest`. */
  async uploadBlob(repository: string, digest: string, source: BodySource): Promise<void> {
    const started = await this.request(repository, 'POST', `/v2/${repository}/blobs/uploads/`);
    if (started.status !== 202) throw await failure(started, `starting the upload of ${digest}`);
    const location = started.headers.get('location');
    if (!location) throw new RegistryClientError('the registry gave no upload location');
    const url = new URL(location, this.origin);
    url.searchParams.set('digest', digest);
    const done = await this.request(repository, 'PUT', url.toString(), {
      body: source,
      headers: { 'content-type': 'application/octet-stream' },
    });
    if (done.status !== 201) throw await failure(done, `uploading blob ${digest}`);
  }

  /** Pushes a manifest; returns the digest the registry computed. */
  async putManifest(
    repository: string,
    reference: string,
    mediaType: string,
    body: Buffer,
  ): Promise<string | null> {
    const response = await this.request(
      repository,
      'PUT',
      `/v2/${repository}/manifests/${reference}`,
      {
        body: async () => ({ body: new Uint8Array(body), length: body.length }),
        headers: { 'content-type': mediaType },
      },
    );
    if (response.status !== 201) throw await failure(response, `pushing manifest ${reference}`);
    await response.body?.cancel();
    return response.headers.get('docker-content-digest');
  }

  /**
   * One request with the authorization known for the repository; on a 401 challenge, the
   * authorization it asks for is obtained and the request repeated once.
   */
  private async request(
    repository: string,
    method: string,
    pathOrUrl: string,
    init: { body?: BodySource; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const url = new URL(pathOrUrl, this.origin);
    const scope = `repository:${repository}:pull,push`;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...init.headers };
      // Credentials go to the registry only, never to a storage backend it redirects to.
      const authorization = this.authorizations.get(scope) ?? this.authorizations.get('');
      if (authorization && url.origin === this.origin) headers.authorization = authorization;
      let body: BodyInit | undefined;
      if (init.body) {
        const source = await init.body();
        body = source.body;
        headers['content-length'] = String(source.length);
      }
      let response: Response;
      try {
        response = await fetch(url, {
          method,
          headers,
          body,
          redirect: 'follow',
          signal: this.options.signal,
          ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
        } as RequestInit);
      } catch (error) {
        this.options.signal.throwIfAborted();
        const cause = (error as Error & { cause?: Error }).cause;
        throw new RegistryClientError(
          `cannot reach ${url.origin}: ${cause?.message ?? (error as Error).message}`,
          { cause: error },
        );
      }
      if (response.status !== 401 || attempt > 0) return response;
      const challenge = parseChallenge(response.headers.get('www-authenticate'));
      await response.body?.cancel();
      if (!challenge)
        throw new RegistryClientError(`${url.origin} answered 401 without a challenge`);
      await this.authorize(challenge, scope);
    }
  }

  private async authorize(challenge: Challenge, scope: string): Promise<void> {
    const { username, password } = this.options;
    const basic =
      username !== undefined
        ? `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`
        : undefined;
    if (challenge.scheme === 'basic') {
      if (!basic)
        throw new RegistryClientError(`${this.options.host} needs a username and password`);
      this.authorizations.set('', basic);
      return;
    }
    if (challenge.scheme !== 'bearer' || !challenge.params.realm) {
      throw new RegistryClientError(
        `${this.options.host} asks for unsupported authentication (${challenge.scheme})`,
      );
    }
    const realm = new URL(challenge.params.realm);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && this.options.insecure)) {
      throw new RegistryClientError(
        `token realm ${realm.origin} is not https (set insecure: true to allow http)`,
      );
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', challenge.params.scope ?? scope);
    const response = await fetch(realm, {
      headers: basic ? { authorization: basic } : {},
      signal: this.options.signal,
    });
    if (!response.ok) throw await failure(response, `getting a token from ${realm.origin}`);
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    const token = answer.token ?? answer.access_token;
    if (typeof token !== 'string' || !token) {
      throw new RegistryClientError(`the token service ${realm.origin} returned no token`);
    }
    this.authorizations.set(scope, `Bearer ${token}`);
  }
}

/** `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseChallenge(header: string | null): Challenge | null {
  if (!header) return null;
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!match) return null;
  const params: Record<string, string> = {};
  for (const param of match[2]!.matchAll(/(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g)) {
    params[param[1]!.toLowerCase()] = (param[2] ?? param[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: match[1]!.toLowerCase(), params };
}

/** A Node stream as a fetch body. */
export function streamBody(stream: NodeJS.ReadableStream): BodyInit {
  return Readable.toWeb(stream as Readable) as unknown as BodyInit;
}

async function failure(response: Response, doing: string): Promise<RegistryClientError> {
  const text = await response.text().catch(() => '');
  // A HEAD answer has no body: the status alone must say it.
  const byStatus: Record<number, string> = {
    401: 'the registry refused the credentials',
    403: 'access denied',
    404: 'not found',
  };
  let detail = text.slice(0, 300) || byStatus[response.status] || '';
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = parsed.errors?.[0];
    if (first) detail = `${first.code ?? ''} ${first.message ?? ''}`.trim();
  } catch {
    // Not the spec's error body: the text itself says most.
  }
  return new RegistryClientError(
    `${doing}: HTTP ${response.status}${detail ? ` (${detail})` : ''}`,
  );
}
