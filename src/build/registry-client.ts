import { createHash } from 'node:crypto';
import { Readable, Transform, pipeline } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { mediaTypes, type Descriptor } from '../registry/index.js';

/**
 * A small pull client for the OCI Distribution API (Docker Hub, GHCR, Harbor, CNCF
 * Distribution, another Valve): manifests with the Accept headers for OCI and Docker manifests
 * and indexes, and blobs streamed through a check of their digest and size. Authentication
 * follows the registry's 401 challenge: Basic with the given credentials, or a Bearer token
 * fetched from the challenge's realm (with the credentials as Basic, if any) for
 * `repository:<name>:pull`.
 *
 * Plain http is used for loopback hosts and the hosts listed in `insecureRegistries`, https
 * for all others (like Docker's `insecure-registries`, without the fallback).
 */

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  /** `host[:port]`. */
  host: string;
  credentials?: RegistryCredentials;
  /** `host[:port]`s reached over plain http besides 127.0.0.1, ::1 and localhost. */
  insecureRegistries?: readonly string[];
  signal?: AbortSignal;
}

export interface FetchedManifest {
  body: Buffer;
  /** The bare media type: the response's Content-Type, else the document's `mediaType`. */
  mediaType: string;
  digest: string;
}

export class RegistryClientError extends Error {
  override name = 'RegistryClientError';
}

/** What a pull accepts, best first; schema 1 manifests are not. */
export const manifestAccept = [
  mediaTypes.ociIndex,
  mediaTypes.ociManifest,
  mediaTypes.dockerManifestList,
  mediaTypes.dockerManifest,
];

/** The spec asks registries to accept manifests of at least 4 MiB; larger are refused. */
const MANIFEST_LIMIT = 4 * 1024 * 1024;
const MAX_REDIRECTS = 5;

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

export class RegistryClient {
  readonly origin: string;
  /** Authorization headers by token scope; '' is the Basic header. */
  private readonly authorizations = new Map<string, string>();

  constructor(private readonly options: RegistryClientOptions) {
    this.origin = `${plainHttpAllowed(options.host, options.insecureRegistries) ? 'http' : 'https'}://${options.host}`;
  }

  /** The manifest for a tag or digest, checked against the digest when one was asked for. */
  async getManifest(repository: string, reference: string): Promise<FetchedManifest | null> {
    const where = `${this.options.host}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
    const response = await this.request(repository, `/v2/${repository}/manifests/${reference}`, {
      accept: manifestAccept.join(', '),
    });
    if (response.status === 404) {
      await response.body?.cancel();
      return null;
    }
    if (response.status !== 200) throw await failure(response, `fetching the manifest ${where}`);
    const body = await readLimited(response, MANIFEST_LIMIT, `the manifest ${where}`);
    const digest = sha256(body);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new RegistryClientError(`the manifest ${where} has digest ${digest}`);
    }
    const announced = response.headers.get('docker-content-digest');
    if (announced?.startsWith('sha256:') && announced !== digest) {
      throw new RegistryClientError(
        `the manifest ${where} has digest ${digest}, not the ${announced} the registry announced`,
      );
    }
    const contentType = bareMediaType(response.headers.get('content-type'));
    const mediaType = manifestAccept.includes(contentType as never)
      ? contentType
      : mediaTypeField(body) || contentType;
    if (!manifestAccept.includes(mediaType as never)) {
      throw new RegistryClientError(
        `the manifest ${where} is of type "${mediaType || '(none)'}"; expected an OCI or Docker schema 2 manifest or index`,
      );
    }
    return { body, mediaType, digest };
  }

  /**
   * The blob's bytes as a stream that fails, rather than ends, when they do not match the
   * descriptor's digest or size; nothing downstream should keep them before the stream ends.
   */
  async openBlob(repository: string, descriptor: Descriptor): Promise<Readable> {
    if (!/^sha256:[a-f0-9]{64}$/.test(descriptor.digest)) {
      throw new RegistryClientError(`unsupported digest ${descriptor.digest} (only sha256)`);
    }
    const response = await this.request(repository, `/v2/${repository}/blobs/${descriptor.digest}`);
    if (response.status !== 200 || !response.body) {
      throw await failure(response, `fetching blob ${descriptor.digest} of ${repository}`);
    }
    return verifying(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      descriptor,
      `blob ${descriptor.digest} from ${this.options.host}`,
    );
  }

  /**
   * A GET with the authorization known for the repository; on a 401 challenge, the
   * authorization it asks for is obtained and the request repeated once.
   */
  private async request(
    repository: string,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const scope = `repository:${repository}:pull`;
    for (let attempt = 0; ; attempt++) {
      const authorization = this.authorizations.get(scope) ?? this.authorizations.get('');
      const response = await this.fetchFollowing(
        new URL(path, this.origin),
        headers,
        authorization,
      );
      if (response.status !== 401) return response;
      if (attempt > 0) {
        throw await failure(
          response,
          `${this.options.host} refused the ${this.options.credentials ? 'credentials' : 'anonymous pull'} for ${repository}`,
        );
      }
      const challenge = parseChallenge(response.headers.get('www-authenticate'));
      await response.body?.cancel();
      if (!challenge) {
        throw new RegistryClientError(`${this.options.host} answered 401 without a challenge`);
      }
      await this.authorize(challenge, scope);
    }
  }

  /** Follows redirects itself, so credentials never go to another origin (a storage backend). */
  private async fetchFollowing(
    url: URL,
    headers: Record<string, string>,
    authorization: string | undefined,
  ): Promise<Response> {
    for (let hop = 0; ; hop++) {
      const sent = { ...headers };
      if (authorization && url.origin === this.origin) sent.authorization = authorization;
      let response: Response;
      try {
        response = await fetch(url, {
          headers: sent,
          redirect: 'manual',
          signal: this.options.signal,
        });
      } catch (error) {
        this.options.signal?.throwIfAborted();
        const cause = (error as Error & { cause?: Error }).cause;
        throw new RegistryClientError(
          `cannot reach ${url.origin}: ${cause?.message ?? (error as Error).message}`,
          { cause: error },
        );
      }
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) return response;
      await response.body?.cancel();
      if (hop >= MAX_REDIRECTS) {
        throw new RegistryClientError(`${url.origin}: more than ${MAX_REDIRECTS} redirects`);
      }
      url = new URL(location, url);
    }
  }

  private async authorize(challenge: Challenge, scope: string): Promise<void> {
    const { credentials, host } = this.options;
    const basic = credentials
      ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
      : undefined;
    if (challenge.scheme === 'basic') {
      if (!basic) {
        throw new RegistryClientError(`${host} needs a username and password to pull`);
      }
      this.authorizations.set('', basic);
      return;
    }
    if (challenge.scheme !== 'bearer' || !challenge.params.realm) {
      throw new RegistryClientError(
        `${host} asks for unsupported authentication (${challenge.scheme})`,
      );
    }
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch {
      throw new RegistryClientError(`${host} named an invalid token realm`);
    }
    const plainOk =
      realm.origin === this.origin || plainHttpAllowed(realm.host, this.options.insecureRegistries);
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && plainOk)) {
      throw new RegistryClientError(
        `the token realm ${realm.origin} of ${host} is not https (list its host as an insecure registry to allow http)`,
      );
    }
    if (challenge.params.service) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', scope);
    let response: Response;
    try {
      response = await fetch(realm, {
        headers: basic ? { authorization: basic } : {},
        signal: this.options.signal,
      });
    } catch (error) {
      this.options.signal?.throwIfAborted();
      throw new RegistryClientError(`cannot reach the token service ${realm.origin}`, {
        cause: error,
      });
    }
    if (!response.ok) {
      throw await failure(response, `getting a pull token from ${realm.origin} for ${host}`);
    }
    const answer = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    const token = answer.token ?? answer.access_token;
    if (typeof token !== 'string' || !token) {
      throw new RegistryClientError(`the token service ${realm.origin} returned no token`);
    }
    this.authorizations.set(scope, `Bearer ${token}`);
  }
}

/** Loopback and listed hosts are reached over plain http. */
export function plainHttpAllowed(host: string, insecure: readonly string[] = []): boolean {
  const name = host.replace(/:\d+$/, '');
  return (
    ['127.0.0.1', 'localhost', '[::1]'].includes(name) ||
    insecure.includes(host) ||
    insecure.includes(name)
  );
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

/**
 * Passes `source` through while hashing and counting it; fails at the end when the digest or
 * size differ from the descriptor's, and as soon as there are more bytes than it says.
 */
export function verifying(source: Readable, descriptor: Descriptor, what: string): Readable {
  const hash = createHash('sha256');
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > descriptor.size) {
        callback(new RegistryClientError(`${what} is larger than the ${descriptor.size} bytes`));
        return;
      }
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const digest = `sha256:${hash.digest('hex')}`;
      if (size !== descriptor.size) {
        callback(new RegistryClientError(`${what} has ${size} bytes, not ${descriptor.size}`));
      } else if (digest !== descriptor.digest) {
        callback(new RegistryClientError(`${what} has digest ${digest}: the content is not it`));
      } else {
        callback();
      }
    },
  });
  return pipeline(source, check, () => undefined);
}

async function readLimited(response: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length'));
  if (declared > limit) {
    await response.body?.cancel();
    throw new RegistryClientError(`${what} is larger than ${limit} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body ?? []) {
    size += chunk.length;
    if (size > limit) throw new RegistryClientError(`${what} is larger than ${limit} bytes`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

async function failure(response: Response, doing: string): Promise<RegistryClientError> {
  const text = (await response.text().catch(() => '')).trim();
  let detail = text.slice(0, 300);
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

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

function bareMediaType(contentType: string | null): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

function mediaTypeField(body: Buffer): string {
  try {
    const value = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof value === 'string' ? value : '';
  } catch {
    return '';
  }
}
