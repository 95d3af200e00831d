import {
  request,
  type ClientRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import type { Duplex } from 'node:stream';
import type { TargetLogger } from '../target.js';
import { connectionOptions, forwardedHeaders, hopByHop, watchConnect } from './http-headers.js';
import type { Backend, BackendSet } from './proxy.js';

/**
 * Requests that ask to switch protocols (`Connection: upgrade` with `Upgrade: websocket`, or
 * `h2c`), for the workload proxy (`proxy.ts`). Node's HTTP server hands each one over with its
 * socket; from there this file is the whole exchange:
 * - the set and the instance are chosen as for any request (the same canary split, the same
 *   round-robin, failed instances skipped); a connect that fails or does not complete within
 *   the connect timeout is tried on another instance, at most `maxAttempts` in all, and the
 *   instance is skipped for a while, as for HTTP. Once the request may have reached an
 *   instance it is not sent again (a WebSocket handshake may have opened a session there): a
 *   reset then is a 502, as is finding no instance at all;
 * - the request goes with its end-to-end headers, X-Forwarded-*, `Upgrade`, and `Connection:
 *   upgrade` with the headers it names (HTTP2-Settings for h2c). Node's HTTP client reads the
 *   answer: a 101 is passed on as it came, with what followed it, and the two connections are
 *   piped into each other; any other answer (a 400, a 426, or a plain 200 from an instance
 *   that ignores the offer, as RFC 9110 section 7.8 allows) is passed on whole and the
 *   connection is closed after it. Bytes the client sent after the request head go to the
 *   instance only once it switched;
 * - an offer with a body (curl sends `Upgrade: h2c` on a POST) is declined: the proxy puts the
 *   request head back without the offer and hands the connection back to its HTTP server, so
 *   it is served like any request (body, retries, keep-alive);
 * - each request counts once for its set, as an HTTP request does (101: not an error);
 * - an open tunnel holds its instance (in flight) until the instance's connection closes, so
 *   `waitForIdle` waits for it during a rolling switch; once the drain timeout has passed the
 *   old instance is stopped anyway, which closes the tunnel, as nginx's reload does after
 *   `worker_shutdown_timeout`. Clients reconnect, to a new instance;
 * - one side ending ends the other once what it was sent is flushed; an error on either
 *   destroys both; `destroyAll` (the proxy's `close`) destroys every one still open.
 *
 * No response-headers timeout here (HTTP has none by default either): a client that gives up
 * on its handshake closes its connection, and that ends the attempt.
 */

/** What the upgrade path uses of the proxy: its choice of instance, passive health, counters. */
export interface UpgradeHost {
  readonly name: string;
  readonly logger: TargetLogger;
  readonly connectTimeoutMs: number;
  readonly maxAttempts: number;
  chooseSet(): BackendSet;
  pick(set: BackendSet, tried: Set<string>): { backend: Backend; set: BackendSet } | undefined;
  /** The instance failed: skipped for a while. */
  failed(id: string): void;
  /** The instance answered: no longer skipped. */
  answered(id: string): void;
  count(set: BackendSet, error: boolean): void;
  acquire(id: string): void;
  release(id: string): void;
  /** Serves the connection as ordinary HTTP from its next byte on. */
  serveAsHttp(socket: Duplex): void;
}

/** One upgrade request, from its arrival until its connections are closed. */
interface Tunnel {
  req: IncomingMessage;
  client: Duplex;
  /** What the client sent after the request head, before it was answered. */
  head: Buffer;
  /** The set the request was for: it is counted there, once. */
  set: BackendSet;
  /** Instances that failed this request. */
  tried: Set<string>;
  attempts: number;
  counted: boolean;
  /** The attempt under way, until answered. */
  upstream: ClientRequest | null;
  /** The connection to the instance, once it switched protocols. */
  instance: Duplex | null;
}

/** Why an attempt failed. */
interface AttemptFailure {
  backend: string;
  reason: string;
}

export class UpgradeTunnels {
  private readonly open = new Set<Tunnel>();

  constructor(private readonly host: UpgradeHost) {}

  /** The server's 'upgrade' event. */
  handle(req: IncomingMessage, client: Duplex, head: Buffer): void {
    if (
      req.headers['transfer-encoding'] !== undefined ||
      Number(req.headers['content-length']) > 0
    ) {
      // Node passed the body on as `head` and the socket: the HTTP server reads it all again.
      client.unshift(Buffer.concat([withoutUpgradeOffer(req), head]));
      this.host.serveAsHttp(client);
      return;
    }
    const tunnel: Tunnel = {
      req,
      client,
      head,
      set: this.host.chooseSet(),
      tried: new Set(),
      attempts: 0,
      counted: false,
      upstream: null,
      instance: null,
    };
    this.open.add(tunnel);
    // The HTTP server no longer listens on this socket: its errors are this file's.
    client.on('error', () => destroy(tunnel));
    client.once('close', () => {
      this.open.delete(tunnel);
      tunnel.upstream?.destroy();
      if (tunnel.instance) endThenDestroy(tunnel.instance);
    });
    this.attempt(tunnel);
  }

  /** Destroys every upgrade connection, open tunnels and requests still being answered. */
  destroyAll(): void {
    for (const tunnel of this.open) destroy(tunnel);
  }

  private attempt(tunnel: Tunnel, previous?: AttemptFailure): void {
    const { host } = this;
    const picked = host.pick(tunnel.set, tunnel.tried);
    if (!picked) {
      if (previous) this.giveUp(tunnel, previous);
      else refuse(tunnel.client, `no ready instance of ${host.name}\n`);
      return;
    }
    if (previous) {
      host.logger.debug(
        {
          workload: host.name,
          backend: previous.backend,
          err: previous.reason,
          next: picked.backend.id,
        },
        'proxy retries the upgrade request',
      );
    }
    // Every instance of its set failed: the request counts as failed there, wherever it ends.
    if (picked.set !== tunnel.set) this.countOnce(tunnel, true);
    tunnel.attempts++;
    const { backend } = picked;
    host.acquire(backend.id);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      host.release(backend.id);
    };
    const upstream = request({
      host: '127.0.0.1',
      port: backend.port,
      method: tunnel.req.method,
      path: tunnel.req.url,
      headers: upgradeHeaders(tunnel.req),
      agent: false,
    });
    tunnel.upstream = upstream;
    let connected = false;
    let timedOut = false;
    /** The instance answered: from here on the connection is the client's. */
    let answered = false;
    watchConnect(
      upstream,
      host.connectTimeoutMs,
      () => (connected = true),
      () => {
        timedOut = true;
        upstream.destroy(new Error('connect timeout'));
      },
    );
    // After a 101 the request closes at once, and the tunnel holds the instance.
    upstream.once('close', () => {
      if (!tunnel.instance) release();
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (tunnel.client.destroyed) return;
      if (answered) {
        tunnel.client.destroy();
        return;
      }
      host.failed(backend.id);
      tunnel.tried.add(backend.id);
      const failure: AttemptFailure = {
        backend: backend.id,
        reason: timedOut ? 'connect timeout' : (error.code ?? error.message),
      };
      // A failed connect sent nothing: any instance may get the request.
      if (!connected && tunnel.attempts < host.maxAttempts) this.attempt(tunnel, failure);
      else this.giveUp(tunnel, failure);
    });

    upstream.on('upgrade', (answer: IncomingMessage, socket: Duplex, answerHead: Buffer) => {
      answered = true;
      host.answered(backend.id);
      this.countOnce(tunnel, false);
      tunnel.upstream = null;
      tunnel.instance = socket;
      const { client } = tunnel;
      socket.on('error', () => destroy(tunnel));
      socket.once('close', () => {
        release();
        endThenDestroy(client);
      });
      if (client.destroyed) {
        socket.destroy();
        return;
      }
      client.write(
        messageHead(`101 ${answer.statusMessage || 'Switching Protocols'}`, answer.rawHeaders),
      );
      if (answerHead.length > 0) client.write(answerHead);
      if (tunnel.head.length > 0) socket.write(tunnel.head);
      socket.pipe(client);
      client.pipe(socket);
    });

    upstream.on('response', (answer: IncomingMessage) => {
      answered = true;
      const status = answer.statusCode ?? 502;
      host.answered(backend.id);
      this.countOnce(tunnel, status >= 500);
      const { client } = tunnel;
      const named = new Set(connectionOptions(answer.headers.connection));
      const endToEnd = (name: string) => !hopByHop.has(name) && !named.has(name);
      // Node took the body out of its framing: what is passed on ends when the connection does.
      client.write(
        messageHead(`${status} ${answer.statusMessage ?? ''}`, answer.rawHeaders, endToEnd, [
          'Connection: close',
        ]),
      );
      answer.pipe(client);
      // The instance died mid-answer: cut the client off rather than end a truncated body cleanly.
      answer.on('error', () => client.destroy());
      answer.on('close', () => {
        if (!answer.complete) client.destroy();
      });
      // Read and dropped, so that the client's close is seen.
      client.resume();
    });
    upstream.end();
  }

  private giveUp(tunnel: Tunnel, last: AttemptFailure): void {
    this.countOnce(tunnel, true);
    this.host.logger.warn(
      {
        workload: this.host.name,
        backend: last.backend,
        err: last.reason,
        attempts: tunnel.attempts,
      },
      'proxy could not reach instance',
    );
    refuse(tunnel.client, `instance of ${this.host.name} did not answer\n`);
  }

  private countOnce(tunnel: Tunnel, error: boolean): void {
    if (tunnel.counted) return;
    tunnel.counted = true;
    this.host.count(tunnel.set, error);
  }
}

function destroy(tunnel: Tunnel): void {
  tunnel.client.destroy();
  tunnel.upstream?.destroy();
  tunnel.instance?.destroy();
}

/** Ends the stream once what it was sent is flushed, then closes it (the peer went away). */
function endThenDestroy(stream: Duplex): void {
  if (stream.destroyed) return;
  stream.end(() => stream.destroy());
}

/** Answers 502 on the raw socket and closes it. */
function refuse(client: Duplex, text: string): void {
  if (client.destroyed) return;
  const body = Buffer.from(text);
  // Read and dropped, so that the client's close is seen.
  client.resume();
  client.end(
    Buffer.concat([
      messageHead('502 Bad Gateway', [], () => true, [
        'Content-Type: text/plain; charset=utf-8',
        `Content-Length: ${body.length}`,
        'Connection: close',
      ]),
      body,
    ]),
  );
}

/** A response head: status line, the raw headers `keep` keeps, then `extra` lines. */
function messageHead(
  status: string,
  rawHeaders: string[],
  keep: (lowerCaseName: string) => boolean = () => true,
  extra: string[] = [],
): Buffer {
  const lines = [`HTTP/1.1 ${status}`];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (keep(name.toLowerCase())) lines.push(`${name}: ${rawHeaders[i + 1]!}`);
  }
  lines.push(...extra);
  // Node reads header bytes as latin1: written back the same, they come out as they went in.
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}

/** The headers sent to the instance: end to end, forwarded, and the offer to switch. */
function upgradeHeaders(req: IncomingMessage): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = forwardedHeaders(req);
  // Headers of this hop that the switch needs are named in Connection (HTTP2-Settings for h2c).
  const named = connectionOptions(req.headers.connection).filter(
    (name) => !hopByHop.has(name) && name !== 'close' && req.headers[name] !== undefined,
  );
  for (const name of named) headers[name] = req.headers[name];
  headers.connection = ['upgrade', ...named].join(', ');
  headers.upgrade = req.headers.upgrade;
  return headers;
}

/** The request head as it came, less the offer to switch protocols. */
function withoutUpgradeOffer(req: IncomingMessage): Buffer {
  const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'upgrade') continue;
    if (lower === 'connection') {
      const others = connectionOptions(raw[i + 1]).filter((option) => option !== 'upgrade');
      if (others.length > 0) lines.push(`${name}: ${others.join(', ')}`);
      continue;
    }
    lines.push(`${name}: ${raw[i + 1]!}`);
  }
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
}
