import { invalidInput } from '../errors.js';

/** An image reference split as Docker reads it: `[host[:port]/]name[:tag][@sha256:...]`. */
export interface ImageReference {
  /** `host[:port]`, or '' when the reference names none (then it is in Valve's registry). */
  host: string;
  repository: string;
  tag?: string;
  digest?: string;
}

const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const NAME = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/;
const HOST =
  /^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+)(:\d{1,5})?$/;

/**
 * Parses `reference`. The first component is a host when it has a dot or a port or is
 * `localhost`, as Docker decides; unlike Docker there is no implicit `docker.io/library/`: a
 * reference without a host names an image in Valve's own registry. Errors name `parameter`.
 */
export function parseImageReference(reference: string, parameter = 'base'): ImageReference {
  const fail = (why: string) =>
    invalidInput(`${parameter}: "${reference}" ${why}`, { parameter, reference });
  let rest = reference.trim();
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw fail('needs a sha256:<64 hex> digest after @');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw fail(`has an invalid tag "${tag}"`);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  const hasHost = first.includes('.') || first.includes(':') || first === 'localhost';
  const host = hasHost ? first : '';
  const repository = hasHost ? rest.slice(slash + 1) : rest;
  if (host && !HOST.test(host)) throw fail(`has an invalid registry host "${host}"`);
  if (!NAME.test(repository)) {
    throw fail(`has an invalid repository name "${repository}" (lowercase, e.g. team/app:tag)`);
  }
  return { host, repository, tag, digest };
}

/** The tag or digest to fetch: the digest when both are given, else the tag, else `latest`. */
export function manifestReference(reference: ImageReference): string {
  return reference.digest ?? reference.tag ?? 'latest';
}

export function formatImageReference(reference: ImageReference): string {
  return `${reference.host ? `${reference.host}/` : ''}${reference.repository}${
    reference.tag ? `:${reference.tag}` : ''
  }${reference.digest ? `@${reference.digest}` : ''}`;
}
