import { EventEmitter } from 'node:events';
import {
  Agent,
  createServer,
  request,
  type ClientRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { TargetLogger } from '../target.js';
import { forwardedHeaders, watchConnect, withoutHopByHop } from './http-headers.js';
import { UpgradeTunnels } from './proxy-upgrade.js';

/**
 * The stable address of one workload: an HTTP reverse proxy on a fixed port, round-robin over
 * the instances currently set as backends. Switching backends is one assignment, so a
 * request goes either to the old set or to the new one; in-flight requests are counted per
 * backend, so the old set can be drained before it is stopped.
 *
 * For canaries there are two sets: `stable` (setBackends) and `canary` (setCanary), with the
 * canary's share of requests as a weight 0-100. The split is deterministic, by a request
 * counter (exactly `weight` of every 100 requests, evenly spaced), so tests can count it.
 * Requests and 5xx answers are counted per set in time buckets over a sliding window, for the
 * rollout analysis.
 *
 * An instance that dies must not hang or fail requests while others serve (what nginx's
 * `proxy_next_upstream` and `max_fails`/`fail_timeout`, or Envoy's connect-failure retries and
 * outlier detection, give):
 * - a connect that does not complete within `connectTimeoutMs` fails. A killed podman
 *   container's published port keeps its DNAT rule for a moment after the container's network
 *   is gone: a SYN sent then is dropped, and conntrack keeps its retransmissions going to the
 *   dead address, so without a timeout the connect waits seconds to minutes;
 * - an attempt that failed before a response byte reached the client is tried on another
 *   instance, of the same set first, then of the other set, at most `maxAttempts` in all,
 *   each instance once. A failed connect sent nothing, so any request is tried again (a
 *   streamed body is piped only once connected). Once the request may have reached the
 *   instance (a reset, a response-header timeout, an answer cut between its headers and its
 *   first body byte, which is held back until then), only a replayable one is: an idempotent
 *   method (RFC 9110 section 9.2.2) with no body, or with a Content-Length body of at most
 *   `maxReplayBodyBytes`, which is buffered before the first attempt. Any other request (a
 *   POST, a streamed body) is never sent twice: it gets a 502 (504 after a response-header
 *   timeout), and a connection of its own, so a keep-alive connection the instance closed as
 *   it was reused cannot fail it;
 * - an instance that failed is skipped for `failTimeoutMs` (passive health), so later requests
 *   do not pay the timeout again, unless every instance of its set is skipped (one alone
 *   never is); it is forgiven when it answers, or when it is set again after being removed;
 * - a client that goes away aborts the attempt under way;
 * - `responseHeadersTimeoutMs` is off by default (long polling waits as long as the client).
 *
 * Upgrade requests (WebSocket, h2c) are passed too (`proxy-upgrade.ts`): the same choice of set
 * and instance, the same connect timeout and retry of a failed connect, then the instance's 101
 * and a tunnel both ways, or its other answer and a close; 502 when none can be reached. An
 * open tunnel is in flight on its instance, so `waitForIdle` waits for it; a rolling switch
 * stops the old instance after its drain timeout even so, which closes the tunnel (as nginx's
 * old workers do after `worker_shutdown_timeout`), and the client reconnects. `close` ends open
 * tunnels.
 *
 * Counting: a request counts once, for the set it was for. Served by that set (also after a
 * retry), by the answer's status; when every instance of its set failed, as a 5xx of its set,
 * even if the other set then served the client (a canary that cannot be reached is failing).
 *
 * Written on node:http rather than a library: http-proxy is unmaintained, and undici's
 * RetryAgent would cover only the retry loop; choosing the set, skipping failed instances,
 * draining and counting are this proxy's own and are most of the code.
 */

export interface Backend {
  id: string;
  port: number;
}

export const backendSets = ['stable', 'canary'] as const;
export type BackendSet = (typeof backendSets)[number];

export interface TrafficStats {
  requests: number;
  /** 5xx answers of the instances, and requests none of the set's instances answered. */
  errors5xx: number;
}

export interface WorkloadProxyOptions {
  host: string;
  port: number;
  name: string;
  logger: TargetLogger;
  /** How far back `stats()` can look (default 5 minutes). */
  statsWindowMs?: number;
  /**
   * A connect to an instance that has not completed by then fails and the request goes to
   * another (default 500 ms: instances are on loopback, where a connect takes well under a
   * millisecond, and a dropped SYN is sent again only after 1 s).
   */
  connectTimeoutMs?: number;
  /**
   * No response headers this long after the request was sent: the attempt fails (retried when
   * replayable, else 504). Default 0: no limit, for long polling.
   */
  responseHeadersTimeoutMs?: number;
  /** Attempts per request, each on another instance (default 3). */
  maxAttempts?: number;
  /** How long an instance that failed is skipped, unless all of its set are (default 5 s). */
  failTimeoutMs?: number;
  /**
   * The body of an idempotent request with a Content-Length up to this is buffered, so the
   * request can be sent again (default 64 KiB); other bodies are streamed, and sent once.
   */
  maxReplayBodyBytes?: number;
}

/** Granularity of the traffic counters. */
const bucketMs = 250;

/** Sending these twice has the effect of sending them once (RFC 9110 section 9.2.2). */
const idempotentMethods = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

type RequestBody =
  | { kind: 'none' }
  | { kind: 'buffered'; data: Buffer }
  /** Piped once an instance accepted the connection; it cannot be sent a second time. */
  | { kind: 'streamed' };

/** One client request, across its attempts. */
interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** The set the request was for: it is counted there, once. */
  set: BackendSet;
  body: RequestBody;
  /** May be sent again after it may have reached an instance. */
  replayable: boolean;
  /** Instances that failed this request. */
  tried: Set<string>;
  attempts: number;
  counted: boolean;
  /** The client went away before the answer was sent. */
  gone: boolean;
  /** The attempt under way. */
  upstream: ClientRequest | null;
}

/** How far an attempt got, which decides whether it may be repeated. */
type AttemptStage = 'connecting' | 'sent' | 'answered';

/** Why an attempt failed, and the answer if it was the last. */
interface AttemptFailure {
  backend: string;
  reason: string;
  status: 502 | 504;
}

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
  private readonly connectTimeoutMs: number;
  private readonly responseHeadersTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly failTimeoutMs: number;
  private readonly maxReplayBodyBytes: number;
  /** Instance id -> until when it is skipped (epoch ms), after it failed. */
  private readonly failedUntil = new Map<string, number>();
  private readonly inFlight = new Map<string, number>();
  private readonly released = new EventEmitter();
  /** Replayable requests reuse connections: one the instance closed as it was reused is retried. */
  private readonly agent = new Agent({ keepAlive: true });
  /** The others get a connection of their own, so that race cannot fail them. */
  private readonly oneShotAgent = new Agent({ keepAlive: false });
  private readonly server: Server;
  private readonly upgrades: UpgradeTunnels;
  private closed = false;

  constructor(private readonly options: WorkloadProxyOptions) {
    this.server = createServer((req, res) => this.handle(req, res));
    this.released.setMaxListeners(0);
    this.statsWindowMs = options.statsWindowMs ?? 5 * 60_000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 500;
    this.responseHeadersTimeoutMs = options.responseHeadersTimeoutMs ?? 0;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.failTimeoutMs = options.failTimeoutMs ?? 5000;
    this.maxReplayBodyBytes = options.maxReplayBodyBytes ?? 64 * 1024;
    this.upgrades = new UpgradeTunnels({
      name: options.name,
      logger: options.logger,
      connectTimeoutMs: this.connectTimeoutMs,
      maxAttempts: this.maxAttempts,
      chooseSet: () => this.chooseSet(),
      pick: (set, tried) => this.pick(set, tried),
      failed: (id) => this.failedUntil.set(id, Date.now() + this.failTimeoutMs),
      answered: (id) => this.failedUntil.delete(id),
      count: (set, error) => this.count(set, error),
      acquire: (id) => this.acquire(id),
      release: (id) => this.release(id),
      serveAsHttp: (socket) => this.server.emit('connection', socket),
    });
    this.server.on('upgrade', (req, socket, head) => this.upgrades.handle(req, socket, head));
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
    this.replaceSet('stable', backends);
  }

  /**
   * The canary set and its share of requests (0-100). Without ready canary backends every
   * request goes to the stable set, and without stable ones to the canary set.
   */
  setCanary(backends: Backend[], weight: number): void {
    this.replaceSet('canary', backends);
    const clamped = Math.min(100, Math.max(0, Math.round(weight)));
    if (clamped !== this.canaryWeight) this.splitCount = 0;
    this.canaryWeight = clamped;
  }

  /** The canary's share of requests as last set. */
  get weight(): number {
    return this.canaryWeight;
  }

  /** Requests for `set` and their 5xx answers since the proxy started. */
  totals(set: BackendSet): TrafficStats {
    return { ...this.sums[set] };
  }

  /**
   * Requests for `set` and their 5xx answers since `sinceMs` (epoch ms; counted in 250 ms
   * buckets, so up to one bucket earlier), at most the stats window back.
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
    this.closed = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    // Upgraded connections are no longer the HTTP server's: it would wait for them.
    this.upgrades.destroyAll();
    this.agent.destroy();
    this.oneShotAgent.destroy();
    await closed;
  }

  /**
   * An instance set again after it was out of every set passed readiness since: it is no
   * longer skipped. One that is in no set any more is forgotten.
   */
  private replaceSet(set: BackendSet, backends: Backend[]): void {
    const before = new Set(backendSets.flatMap((name) => this.sets[name].map(({ id }) => id)));
    this.sets[set] = [...backends];
    const now = new Set(backendSets.flatMap((name) => this.sets[name].map(({ id }) => id)));
    for (const id of this.failedUntil.keys()) {
      if (!before.has(id) || !now.has(id)) this.failedUntil.delete(id);
    }
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
   * Round-robin over the instances of `set` that did not fail this request, those not
   * skipped after a recent failure first; when the whole set failed, the other set.
   */
  private pick(
    set: BackendSet,
    tried: Set<string>,
  ): { backend: Backend; set: BackendSet } | undefined {
    const now = Date.now();
    for (const name of [set, otherSet(set)]) {
      const untried = this.sets[name].filter((backend) => !tried.has(backend.id));
      if (untried.length === 0) continue;
      const up = untried.filter((backend) => (this.failedUntil.get(backend.id) ?? 0) <= now);
      const pool = up.length > 0 ? up : untried;
      this.next[name] = (this.next[name] + 1) % pool.length;
      return { backend: pool[this.next[name]]!, set: name };
    }
    return undefined;
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

  /** Counts the request for its set, unless it already was. */
  private countOnce(exchange: Exchange, error: boolean): void {
    if (exchange.counted) return;
    exchange.counted = true;
    this.count(exchange.set, error);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? 'GET';
    const length = req.headers['content-length'];
    const chunked = req.headers['transfer-encoding'] !== undefined;
    const idempotent = idempotentMethods.has(method);
    const kind: RequestBody['kind'] =
      !chunked && (length === undefined || Number(length) === 0)
        ? 'none'
        : idempotent && !chunked && Number(length) <= this.maxReplayBodyBytes
          ? 'buffered'
          : 'streamed';
    const exchange: Exchange = {
      req,
      res,
      set: this.chooseSet(),
      body: { kind: 'none' },
      replayable: idempotent && kind !== 'streamed',
      tried: new Set(),
      attempts: 0,
      counted: false,
      gone: false,
      upstream: null,
    };
    res.on('close', () => {
      if (res.writableFinished) return;
      exchange.gone = true;
      exchange.upstream?.destroy();
    });
    if (kind !== 'buffered') {
      exchange.body = { kind };
      this.attempt(exchange);
      return;
    }
    // At most maxReplayBodyBytes (the Content-Length the parser enforces): read it whole.
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (exchange.gone) return;
      exchange.body = { kind: 'buffered', data: Buffer.concat(chunks) };
      this.attempt(exchange);
    });
  }

  /** Sends the request to the next instance (after `previous` failed, if it did). */
  private attempt(exchange: Exchange, previous?: AttemptFailure): void {
    const { req, res } = exchange;
    const picked = this.pick(exchange.set, exchange.tried);
    if (!picked) {
      if (previous) this.giveUp(exchange, previous);
      else reply(res, 502, `no ready instance of ${this.options.name}\n`);
      return;
    }
    if (previous) {
      this.options.logger.debug(
        {
          workload: this.options.name,
          backend: previous.backend,
          err: previous.reason,
          next: picked.backend.id,
        },
        'proxy retries the request',
      );
    }
    // Every instance of its set failed: the request counts as failed there, wherever it ends.
    if (picked.set !== exchange.set) this.countOnce(exchange, true);
    exchange.attempts++;
    const { backend } = picked;
    this.acquire(backend.id);
    const headers = forwardedHeaders(req);
    // Passed on as it came: without it, node would send the body of a GET or DELETE unframed.
    if (req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
    const upstream = request({
      host: '127.0.0.1',
      port: backend.port,
      method: req.method,
      path: req.url,
      headers,
      agent: exchange.replayable ? this.agent : this.oneShotAgent,
    });
    exchange.upstream = upstream;
    let stage: AttemptStage = 'connecting';
    let timedOut: 'connect' | 'response headers' | null = null;
    let headersTimer: NodeJS.Timeout | undefined;
    const fail = (what: 'connect' | 'response headers') => {
      timedOut = what;
      upstream.destroy(new Error(`${what} timeout`));
    };
    watchConnect(
      upstream,
      this.connectTimeoutMs,
      () => {
        stage = 'sent';
        if (exchange.body.kind === 'streamed') req.pipe(upstream);
      },
      () => fail('connect'),
    );
    if (this.responseHeadersTimeoutMs > 0) {
      // Once the whole request is written: a slow upload is not a slow instance.
      upstream.once('finish', () => {
        if (stage !== 'answered')
          headersTimer = setTimeout(() => fail('response headers'), this.responseHeadersTimeoutMs);
      });
    }
    upstream.once('close', () => {
      clearTimeout(headersTimer);
      this.release(backend.id);
    });
    if (exchange.body.kind === 'none') upstream.end();
    else if (exchange.body.kind === 'buffered') upstream.end(exchange.body.data);

    /** An answer held back until its first body byte (see below). */
    let held: IncomingMessage | null = null;
    /** The attempt failed before anything reached the client: next instance, or the answer. */
    let failedOnce = false;
    const failed = (error: NodeJS.ErrnoException) => {
      if (failedOnce || exchange.gone || this.closed) return;
      failedOnce = true;
      // A keep-alive connection the instance closed as we reused it says nothing about the
      // instance: not held against it, and it may be tried again.
      const stale = stage === 'sent' && upstream.reusedSocket && error.code === 'ECONNRESET';
      if (!stale) this.failedUntil.set(backend.id, Date.now() + this.failTimeoutMs);
      // The only instance of its set gets another connection after a stale one.
      if (!stale || this.sets[picked.set].length > 1) exchange.tried.add(backend.id);
      const failure: AttemptFailure = {
        backend: backend.id,
        reason: timedOut ? `${timedOut} timeout` : (error.code ?? error.message),
        status: timedOut === 'response headers' ? 504 : 502,
      };
      const repeatable = stage === 'connecting' || exchange.replayable;
      if (repeatable && exchange.attempts < this.maxAttempts) this.attempt(exchange, failure);
      else this.giveUp(exchange, failure);
    };

    upstream.on('response', (answer) => {
      clearTimeout(headersTimer);
      const status = answer.statusCode ?? 502;
      /** Passes the answer on: from here on it is the client's, whatever happens. */
      const deliver = (first?: Buffer) => {
        stage = 'answered';
        this.failedUntil.delete(backend.id);
        this.countOnce(exchange, status >= 500);
        res.writeHead(status, answer.statusMessage, withoutHopByHop(answer.headers));
        if (first) res.write(first);
        if (answer.readableEnded) {
          res.end();
          return;
        }
        answer.pipe(res);
        // The instance died mid-answer: cut the client off rather than end a truncated body cleanly.
        answer.on('error', () => res.destroy());
        answer.on('close', () => {
          if (!answer.complete) res.destroy();
        });
      };
      // A replayable request's answer with a body is held until its first byte: an instance
      // killed between writing the headers and the body (a process writes them separately)
      // then fails only the attempt, and another instance answers. The body of such an answer
      // follows its headers at once, so holding costs nothing; an answer that streams (no
      // Content-Length: server-sent events, long polling) is passed on at once.
      const length = Number(answer.headers['content-length'] ?? 0);
      if (!exchange.replayable || !(length > 0)) {
        deliver();
        return;
      }
      const onData = (first: Buffer) => {
        settle();
        answer.pause();
        deliver(first);
      };
      const onEnd = () => {
        settle();
        deliver();
      };
      const onBroken = (error?: Error) => {
        settle();
        answer.destroy();
        failed(cutAnswer(error));
      };
      const onClose = () => {
        if (!answer.complete) onBroken();
      };
      const settle = () => {
        answer.off('data', onData);
        answer.off('end', onEnd);
        answer.off('error', onBroken);
        answer.off('close', onClose);
      };
      held = answer;
      answer.on('data', onData);
      answer.once('end', onEnd);
      answer.once('error', onBroken);
      answer.once('close', onClose);
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (exchange.gone || this.closed) return;
      if (stage === 'answered' || res.headersSent) {
        res.destroy();
        return;
      }
      // The socket's error reaches the request before the held answer's.
      failed(held ? cutAnswer(error) : error);
    });
  }

  private giveUp(exchange: Exchange, last: AttemptFailure): void {
    this.countOnce(exchange, true);
    this.options.logger.warn(
      {
        workload: this.options.name,
        backend: last.backend,
        err: last.reason,
        attempts: exchange.attempts,
      },
      'proxy could not reach instance',
    );
    reply(exchange.res, last.status, `instance of ${this.options.name} did not answer\n`);
  }

  private acquire(id: string): void {
    this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1);
  }

  private release(id: string): void {
    const left = (this.inFlight.get(id) ?? 1) - 1;
    if (left > 0) this.inFlight.set(id, left);
    else this.inFlight.delete(id);
    this.released.emit('release');
  }
}

function cutAnswer(error?: Error): Error {
  return new Error(`answer cut before its body${error ? ` (${error.message})` : ''}`);
}

function otherSet(set: BackendSet): BackendSet {
  return set === 'stable' ? 'canary' : 'stable';
}

function reply(res: ServerResponse, status: number, text: string) {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(text);
}
