import { EventEmitter } from 'node:events';
import {
  Agent,
  createServer,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { TargetLogger } from '../target.js';

/**
 * The stable address of one workload: an HTTP reverse proxy on a fixed port, round-robin over
 * the instances currently set as backends. Switching backends is one assignment, so a
 * request goes either to the old set or to the new one; in-flight requests are counted per
 * backend, so the old set can be drained before it is stopped.
 */

export interface Backend {
  id: string;
  port: number;
}

/** Headers that describe one connection, not the message (RFC 9110 section 7.6.1). */
const hopByHop = new Set([
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

/** Idempotent and bodiless: safe to send again when the first connection failed. */
const retryableMethods = new Set(['GET', 'HEAD', 'OPTIONS']);
const maxAttempts = 3;

export class WorkloadProxy {
  private backends: Backend[] = [];
  private next = 0;
  private readonly inFlight = new Map<string, number>();
  private readonly released = new EventEmitter();
  private readonly agent = new Agent({ keepAlive: true });
  private readonly server: Server;

  constructor(
    private readonly options: { host: string; port: number; name: string; logger: TargetLogger },
  ) {
    this.server = createServer((req, res) => this.forward(req, res, 1, new Set()));
    this.released.setMaxListeners(0);
  }

  get url(): string {
    return `http://${this.options.host}:${this.options.port}`;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.options.host, port: this.options.port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  /** Replaces the set of instances that receive new requests. */
  setBackends(backends: Backend[]): void {
    this.backends = [...backends];
  }

  /** Resolves true once none of `ids` has a request in flight, false after `timeoutMs`. */
  waitForIdle(ids: string[], timeoutMs: number): Promise<boolean> {
    const idle = () => ids.every((id) => !this.inFlight.get(id));
    if (idle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const onRelease = () => {
        if (!idle()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (result: boolean) => {
        clearTimeout(timer);
        this.released.off('release', onRelease);
        resolve(result);
      };
      this.released.on('release', onRelease);
    });
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    this.agent.destroy();
    await closed;
  }

  private pick(tried: Set<string>): Backend | undefined {
    const candidates = this.backends.filter((backend) => !tried.has(backend.id));
    const pool = candidates.length > 0 ? candidates : this.backends;
    if (pool.length === 0) return undefined;
    this.next = (this.next + 1) % pool.length;
    return pool[this.next];
  }

  private forward(req: IncomingMessage, res: ServerResponse, attempt: number, tried: Set<string>) {
    const backend = this.pick(tried);
    if (!backend) {
      reply(res, 502, `no ready instance of ${this.options.name}\n`);
      return;
    }
    this.inFlight.set(backend.id, (this.inFlight.get(backend.id) ?? 0) + 1);
    let done = false;
    const release = () => {
      if (done) return;
      done = true;
      this.inFlight.set(backend.id, (this.inFlight.get(backend.id) ?? 1) - 1);
      if (!this.inFlight.get(backend.id)) this.inFlight.delete(backend.id);
      this.released.emit('release');
    };

    const bodiless =
      retryableMethods.has(req.method ?? '') &&
      req.headers['transfer-encoding'] === undefined &&
      (req.headers['content-length'] === undefined || req.headers['content-length'] === '0');
    const upstream = request({
      host: '127.0.0.1',
      port: backend.port,
      method: req.method,
      path: req.url,
      headers: forwardedHeaders(req),
      agent: this.agent,
    });
    upstream.on('response', (answer) => {
      res.writeHead(
        answer.statusCode ?? 502,
        answer.statusMessage,
        withoutHopByHop(answer.headers),
      );
      answer.pipe(res);
      // The instance died mid-answer: cut the client off rather than end a truncated body cleanly.
      answer.on('error', () => res.destroy());
      answer.on('close', () => {
        if (!answer.complete) res.destroy();
      });
      res.on('close', () => {
        if (!res.writableFinished) answer.destroy();
        release();
      });
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      release();
      if (res.destroyed) return; // the client went away first
      if (res.headersSent) {
        res.destroy();
      } else if (bodiless && attempt < maxAttempts && !res.destroyed) {
        // A dead instance or a keep-alive connection the instance just closed: try again.
        tried.add(backend.id);
        this.forward(req, res, attempt + 1, tried);
      } else {
        this.options.logger.warn(
          { workload: this.options.name, backend: backend.id, err: error.code ?? error.message },
          'proxy could not reach instance',
        );
        reply(res, 502, `instance of ${this.options.name} did not answer\n`);
      }
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (bodiless) upstream.end();
    else req.pipe(upstream);
  }
}

function reply(res: ServerResponse, status: number, text: string) {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase()),
  );
  const kept: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!hopByHop.has(name) && !named.has(name) && value !== undefined) kept[name] = value;
  }
  return kept;
}

function forwardedHeaders(req: IncomingMessage): IncomingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  const client = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  headers['x-forwarded-for'] = prior ? `${String(prior)}, ${client}` : client;
  headers['x-forwarded-proto'] ??= 'http';
  if (req.headers.host) headers['x-forwarded-host'] ??= req.headers.host;
  return headers;
}
