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
 *
 * For canaries there are two sets: `stable` (setBackends) and `canary` (setCanary), with the
 * canary's share of requests as a weight 0-100. The split is deterministic, by a request
 * counter (exactly `weight` of every 100 requests, evenly spaced), so tests can count it.
 * Requests and 5xx answers (a connection that failed counts as a 5xx) are counted per set in
 * time buckets over a sliding window, for the rollout analysis.
 */

export interface Backend {
  id: string;
  port: number;
}

export const backendSets = ['stable', 'canary'] as const;
export type BackendSet = (typeof backendSets)[number];

export interface TrafficStats {
  requests: number;
  /** 5xx answers of the instances and connections to them that failed. */
  errors5xx: number;
}

export interface WorkloadProxyOptions {
  host: string;
  port: number;
  name: string;
  logger: TargetLogger;
  /** How far back `stats()` can look (default 5 minutes). */
  statsWindowMs?: number;
}

/** Granularity of the traffic counters. */
const bucketMs = 250;

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
  private readonly sets: Record<BackendSet, Backend[]> = { stable: [], canary: [] };
  private readonly next: Record<BackendSet, number> = { stable: 0, canary: 0 };
  private canaryWeight = 0;
  /** Requests split since the weight was last set: the canary takes request n when ⌊(n+1)w/100⌋ > ⌊nw/100⌋. */
  private splitCount = 0;
  /** Bucket start time -> counts per set, oldest first (Map keeps insertion order). */
  private readonly buckets = new Map<number, Record<BackendSet, TrafficStats>>();
  /** Since the proxy started, never pruned: exact differences between two moments. */
  private readonly sums: Record<BackendSet, TrafficStats> = {
    stable: { requests: 0, errors5xx: 0 },
    canary: { requests: 0, errors5xx: 0 },
  };
  private readonly statsWindowMs: number;
  private readonly inFlight = new Map<string, number>();
  private readonly released = new EventEmitter();
  private readonly agent = new Agent({ keepAlive: true });
  private readonly server: Server;

  constructor(private readonly options: WorkloadProxyOptions) {
    this.server = createServer((req, res) => this.forward(req, res, 1, new Set()));
    this.released.setMaxListeners(0);
    this.statsWindowMs = options.statsWindowMs ?? 5 * 60_000;
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

  /** Replaces the set of instances that receive new requests (the stable set). */
  setBackends(backends: Backend[]): void {
    this.sets.stable = [...backends];
  }

  /**
   * The canary set and its share of requests (0-100). Without ready canary backends every
   * request goes to the stable set, and without stable ones to the canary set.
   */
  setCanary(backends: Backend[], weight: number): void {
    this.sets.canary = [...backends];
    const clamped = Math.min(100, Math.max(0, Math.round(weight)));
    if (clamped !== this.canaryWeight) this.splitCount = 0;
    this.canaryWeight = clamped;
  }

  /** The canary's share of requests as last set. */
  get weight(): number {
    return this.canaryWeight;
  }

  /** Requests forwarded to `set` and their 5xx answers since the proxy started. */
  totals(set: BackendSet): TrafficStats {
    return { ...this.sums[set] };
  }

  /**
   * Requests forwarded to `set` and their 5xx answers since `sinceMs` (epoch ms; counted in
   * 250 ms buckets, so up to one bucket earlier), at most the stats window back.
   */
  stats(set: BackendSet, sinceMs = 0): TrafficStats {
    const from = Math.max(sinceMs, Date.now() - this.statsWindowMs);
    const total: TrafficStats = { requests: 0, errors5xx: 0 };
    for (const [start, counts] of this.buckets) {
      if (start + bucketMs <= from) continue;
      total.requests += counts[set].requests;
      total.errors5xx += counts[set].errors5xx;
    }
    return total;
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

  /** The set a new request goes to, by the weight. */
  private chooseSet(): BackendSet {
    const { stable, canary } = this.sets;
    if (canary.length === 0 || this.canaryWeight === 0)
      return stable.length > 0 ? 'stable' : 'canary';
    if (stable.length === 0 || this.canaryWeight === 100) return 'canary';
    const n = this.splitCount++;
    const weight = this.canaryWeight;
    return Math.floor(((n + 1) * weight) / 100) > Math.floor((n * weight) / 100)
      ? 'canary'
      : 'stable';
  }

  /**
   * Round-robin in `set`, skipping backends that already failed this request; when the whole
   * set failed, the other set (a retry after a failed connection must not fail the request).
   */
  private pick(
    set: BackendSet,
    tried: Set<string>,
  ): { backend: Backend; set: BackendSet } | undefined {
    for (const name of set === 'stable' ? backendSets : (['canary', 'stable'] as const)) {
      const pool = this.sets[name].filter((backend) => !tried.has(backend.id));
      if (pool.length === 0) continue;
      this.next[name] = (this.next[name] + 1) % pool.length;
      return { backend: pool[this.next[name]]!, set: name };
    }
    // Every backend failed once: go round the chosen set again rather than give up.
    const name = this.sets[set].length > 0 ? set : otherSet(set);
    const pool = this.sets[name];
    if (pool.length === 0) return undefined;
    this.next[name] = (this.next[name] + 1) % pool.length;
    return { backend: pool[this.next[name]]!, set: name };
  }

  private count(set: BackendSet, error: boolean): void {
    const now = Date.now();
    const start = now - (now % bucketMs);
    let bucket = this.buckets.get(start);
    if (!bucket) {
      bucket = { stable: { requests: 0, errors5xx: 0 }, canary: { requests: 0, errors5xx: 0 } };
      this.buckets.set(start, bucket);
      for (const old of this.buckets.keys()) {
        if (old + bucketMs > now - this.statsWindowMs) break;
        this.buckets.delete(old);
      }
    }
    bucket[set].requests++;
    this.sums[set].requests++;
    if (error) {
      bucket[set].errors5xx++;
      this.sums[set].errors5xx++;
    }
  }

  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    attempt: number,
    tried: Set<string>,
    set: BackendSet = this.chooseSet(),
  ) {
    const picked = this.pick(set, tried);
    if (!picked) {
      reply(res, 502, `no ready instance of ${this.options.name}\n`);
      return;
    }
    const { backend } = picked;
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
      this.count(picked.set, (answer.statusCode ?? 502) >= 500);
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
      // A keep-alive connection the instance closed as we reused it says nothing about the
      // instance: not an error of its version.
      const stale = upstream.reusedSocket && error.code === 'ECONNRESET';
      if (!res.headersSent && !stale) this.count(picked.set, true);
      if (res.headersSent) {
        res.destroy();
      } else if (bodiless && attempt < maxAttempts && !res.destroyed) {
        // A dead instance or a keep-alive connection the instance just closed: try again.
        tried.add(backend.id);
        this.forward(req, res, attempt + 1, tried, picked.set);
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

function otherSet(set: BackendSet): BackendSet {
  return set === 'stable' ? 'canary' : 'stable';
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
