/**
 * The Distribution API's URL shapes. Repository names contain slashes, so a router's
 * parameters cannot split them; the fixed suffixes (`/blobs/...`, `/manifests/...`,
 * `/tags/list`) are matched from the end instead, and the rest is the name.
 */
export type RegistryPath =
  | { kind: 'base' }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'uploads'; name: string }
  | { kind: 'upload'; name: string; id: string }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }
  | { kind: 'catalog' };

const shapes: Array<[RegExp, (match: RegExpExecArray) => RegistryPath]> = [
  [/^$/, () => ({ kind: 'base' })],
  [/^_catalog\/?$/, () => ({ kind: 'catalog' })],
  [/^(.+)\/blobs\/uploads\/?$/, (m) => ({ kind: 'uploads', name: m[1]! })],
  [/^(.+)\/blobs\/uploads\/([^/]+)$/, (m) => ({ kind: 'upload', name: m[1]!, id: m[2]! })],
  [/^(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^(.+)\/tags\/list\/?$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]!, digest: m[2]! })],
];

/** Parses a request path such as `/v2/team/app/manifests/v1`; null when it is no API path. */
export function parseRegistryPath(pathname: string): RegistryPath | null {
  if (pathname === '/v2') return { kind: 'base' };
  if (!pathname.startsWith('/v2/')) return null;
  let rest: string;
  try {
    rest = decodeURIComponent(pathname.slice('/v2/'.length));
  } catch {
    return null;
  }
  for (const [shape, build] of shapes) {
    const match = shape.exec(rest);
    if (match) return build(match);
  }
  return null;
}

/** The methods each path answers, for 405 and the `Allow` header. */
export const allowedMethods: Record<RegistryPath['kind'], readonly string[]> = {
  base: ['GET', 'HEAD'],
  blob: ['GET', 'HEAD'],
  uploads: ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  tags: ['GET', 'HEAD'],
  referrers: ['GET', 'HEAD'],
  catalog: ['GET', 'HEAD'],
};

/**
 * `Content-Range` of an upload chunk. The spec's form is `<start>-<end>` (inclusive); the
 * HTTP form `bytes <start>-<end>/<total>` some clients send is accepted too.
 */
export function parseContentRange(
  header: string | undefined,
): { start: number; end: number } | null | 'invalid' {
  if (header === undefined || header === '') return null;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match) return 'invalid';
  const start = Number(match[1]);
  const end = Number(match[2]);
  return end >= start ? { start, end } : 'invalid';
}

/**
 * A single `Range: bytes=...` request of a blob of `size` bytes (RFC 9110 section 14.1.2).
 * Returns null to serve the whole blob (no header, or a form not supported such as several
 * ranges, which a server may ignore), or 'unsatisfiable'.
 */
export function parseByteRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return null;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) return 'unsatisfiable';
  if (end < start) return null;
  return { start, end };
}
