/**
 * What the proxy's two paths (HTTP in proxy.ts, Upgrade in proxy-upgrade.ts) share: which
 * headers are of one hop only, the headers an instance is sent, and the connect watch.
 */
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';

/** Headers that describe one connection, not the message (RFC 9110 section 7.6.1). */
export const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The options of a Connection header, lower case: more headers of this hop only, or `close`. */
export function connectionOptions(value: string | string[] | undefined): string[] {
  return String(value ?? '')
    .split(',')
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== '');
}

export function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = new Set(connectionOptions(headers.connection));
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!hopByHop.has(name) && !named.has(name) && value !== undefined) kept[name] = value;
  }
  return kept;
}

/** The request's end-to-end headers, and where it came from (X-Forwarded-For, -Proto, -Host). */
export function forwardedHeaders(req: IncomingMessage): IncomingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  const client = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${String(prior)}, ${client}` : client;
  headers['x-forwarded-proto'] ??= 'http';
  if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;
  return headers;
}

/**
 * Calls `connected` once the request's connection to the instance is up (at once for a reused
 * keep-alive socket); if it is not up within `timeoutMs`, calls `timedOut` (which should
 * destroy the request). The timer is cleared when the request closes.
 */
export function watchConnect(
  upstream: ClientRequest,
  timeoutMs: number,
  connected: () => void,
  timedOut: () => void,
): void {
  let timer: NodeJS.Timeout | undefined;
  upstream.once('close', () => clearTimeout(timer));
  upstream.once('socket', (socket) => {
    if (!socket.connecting) return connected();
    socket.once('connect', () => {
      clearTimeout(timer);
      connected();
    });
    timer = setTimeout(
      // The event loop may have been busy past the deadline while the connect completed: the
      // poll phase before setImmediate delivers that first.
      () =>
        setImmediate(() => {
          if (socket.connecting) timedOut();
        }),
      timeoutMs,
    );
  });
}
