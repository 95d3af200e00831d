/**
 * A local stand-in for the Kubernetes API server, for testing the Kubernetes executor where no
 * cluster can run. It speaks the wire format of exactly the calls the executor makes, and runs
 * what is asked of it for real:
 *
 * - `POST/GET/DELETE /api/v1/namespaces/{ns}/pods[/{name}]`, list with `labelSelector`, and
 *   watch (`?watch=true`, newline-delimited `{type, object}` events, starting with ADDED for
 *   what exists, as a watch without resourceVersion does); the same verbs for `secrets` (stored
 *   only);
 * - `GET .../pods/{name}/exec` upgraded to a WebSocket with the `v5.channel.k8s.io` (or, when
 *   configured, `v4.channel.k8s.io`) subprotocol: one byte of channel then the data; 0 stdin,
 *   1 stdout, 2 stderr, 3 the final `Status` JSON, 255 (v5) closes a stream.
 *
 * A pod's containers that have a `command` run as host processes in their own PID and mount
 * namespaces (`unshare`, so root is needed): the container's command is PID 1, each volume
 * (emptyDir) is a directory of the pod bind-mounted at its mountPath, and an exec enters those
 * namespaces (`nsenter`), so bytes, exit codes and `kill -9 -1` behave as in a container. The
 * container *image* is not used (processes see the host's filesystem apart from the volumes);
 * containers without a `command` (services) are reported running but not run; readiness
 * probes and hostAliases are recorded, not applied. Every request is recorded in `calls`.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  execInContainer,
  startContainer,
  stopContainer,
  type ContainerSpec,
  type StandinContainer,
} from './kube-standin-containers.js';

/** The part of the `ws` package this file uses (it ships without TypeScript types). */
interface WsSocket {
  readonly protocol: string;
  send(data: Buffer, callback?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
  on(event: 'close', listener: () => void): void;
}
interface WsServer {
  handleUpgrade(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    callback: (ws: WsSocket) => void,
  ): void;
  close(): void;
}
type WsServerConstructor = new (options: {
  noServer: true;
  handleProtocols: (protocols: Set<string>) => string | false;
}) => WsServer;
const { WebSocketServer } = createRequire(import.meta.url)('ws') as {
  WebSocketServer: WsServerConstructor;
};

export type ExecProtocol = 'v5.channel.k8s.io' | 'v4.channel.k8s.io';

export interface RecordedCall {
  method: string;
  /** Path without the query, e.g. `/api/v1/namespaces/valve/pods`. */
  path: string;
  query: Record<string, string[]>;
  /** For `exec`: the container and command. */
  /** For `exec`: the container, the command, the subprotocols the client offered and the one chosen. */
  exec?: { container: string; command: string[]; offered: string[]; protocol: string | null };
}

type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
};

interface PodRuntime {
  dir: string;
  /** Per container that runs: the host PID of its PID 1 (for nsenter) and the unshare process. */
  containers: Map<string, StandinContainer>;
}

type Watcher = {
  namespace: string;
  matches(pod: KubeObject): boolean;
  send(type: string, pod: KubeObject): void;
};

export class KubeApiStandin {
  readonly calls: RecordedCall[] = [];
  readonly token = `standin-${randomUUID()}`;
  private readonly pods = new Map<string, KubeObject>();
  private readonly secrets = new Map<string, KubeObject>();
  private readonly runtimes = new Map<string, PodRuntime>();
  private readonly watchers = new Set<Watcher>();
  private readonly execs = new Set<ChildProcess>();
  private readonly root = mkdtempSync(join(tmpdir(), 'valve-kube-standin-'));
  private resourceVersion = 1;
  private server!: Server;
  private wss!: WsServer;
  url = '';

  private constructor(private readonly execProtocol: ExecProtocol) {}

  static async start(options: { execProtocol?: ExecProtocol } = {}): Promise<KubeApiStandin> {
    const standin = new KubeApiStandin(options.execProtocol ?? 'v5.channel.k8s.io');
    await standin.listen();
    return standin;
  }

  /** Whether this machine can run the stand-in's pods (root, for unshare and nsenter). */
  static canRunPods(): string | null {
    return process.getuid?.() === 0
      ? null
      : 'the Kubernetes API stand-in runs pods with unshare/nsenter, which needs root';
  }

  /** A kubeconfig (YAML) pointing at the stand-in, with its bearer token. */
  kubeconfig(namespace = 'valve-test'): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: standin',
      // The client refuses plain http unless TLS verification is explicitly off.
      `  cluster: { server: "${this.url}", insecure-skip-tls-verify: true }`,
      'users:',
      '- name: tester',
      `  user: { token: "${this.token}" }`,
      'contexts:',
      '- name: standin',
      `  context: { cluster: standin, user: tester, namespace: ${namespace} }`,
      'current-context: standin',
      '',
    ].join('\n');
  }

  /** Pods that exist now. */
  listPods(): KubeObject[] {
    return [...this.pods.values()];
  }

  listSecrets(): KubeObject[] {
    return [...this.secrets.values()];
  }

  /** `METHOD path` of each call, with `exec: <command>` for execs and `watch` for watches. */
  callSummary(): string[] {
    return this.calls.map((call) => {
      if (call.exec) return `EXEC ${call.exec.container}: ${call.exec.command.join(' ')}`;
      const watch = call.query.watch?.[0] === 'true' ? ' (watch)' : '';
      return `${call.method} ${call.path}${watch}`;
    });
  }

  async close(): Promise<void> {
    for (const key of [...this.runtimes.keys()]) this.stopPod(key);
    for (const child of this.execs) child.kill('SIGKILL');
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.root, { recursive: true, force: true });
  }

  private async listen(): Promise<void> {
    this.wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (protocols) =>
        protocols.has(this.execProtocol) ? this.execProtocol : false,
    });
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: Error) => {
        if (!res.headersSent) this.status(res, 500, 'InternalError', error.message);
        else res.end();
      });
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
      this.upgrade(req, socket, head),
    );
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private record(req: IncomingMessage): { path: string; query: Record<string, string[]> } {
    const url = new URL(req.url ?? '/', 'http://standin');
    const query: Record<string, string[]> = {};
    for (const [key, value] of url.searchParams) (query[key] ??= []).push(value);
    return { path: url.pathname, query };
  }

  private authorized(req: IncomingMessage): boolean {
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { path, query } = this.record(req);
    this.calls.push({ method: req.method ?? 'GET', path, query });
    if (!this.authorized(req)) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/(pods|secrets)(?:\/([^/]+))?$/.exec(path);
    if (!match)
      return this.status(res, 404, 'NotFound', `the stand-in does not serve ${req.method} ${path}`);
    const [, namespace, resource, name] = match as unknown as [
      string,
      string,
      'pods' | 'secrets',
      string | undefined,
    ];
    const store = resource === 'pods' ? this.pods : this.secrets;
    const kind = resource === 'pods' ? 'Pod' : 'Secret';
    const key = (n: string) => `${namespace}/${n}`;

    if (req.method === 'POST' && !name) {
      const body = JSON.parse(await readBody(req)) as KubeObject;
      const objectName = body.metadata?.name;
      if (!objectName || !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(objectName))
        return this.status(
          res,
          422,
          'Invalid',
          `${kind} "${objectName}" is invalid: metadata.name`,
        );
      if (store.has(key(objectName)))
        return this.status(res, 409, 'AlreadyExists', `${resource} "${objectName}" already exists`);
      const object: KubeObject = {
        ...body,
        apiVersion: 'v1',
        kind,
        metadata: {
          ...body.metadata,
          namespace,
          uid: randomUUID(),
          resourceVersion: String(++this.resourceVersion),
          creationTimestamp: new Date().toISOString(),
        },
      };
      if (kind === 'Pod') object.status = { phase: 'Pending', conditions: [] };
      store.set(key(objectName), object);
      if (kind === 'Pod') {
        this.notify('ADDED', object);
        setImmediate(() => this.startPod(key(objectName)));
      }
      return this.json(res, 201, object);
    }
    if (req.method === 'GET' && name) {
      const object = store.get(key(name));
      if (!object) return this.status(res, 404, 'NotFound', `${resource} "${name}" not found`);
      return this.json(res, 200, object);
    }
    if (req.method === 'GET' && !name) {
      const selectors = [
        labelSelector(query.labelSelector?.[0] ?? ''),
        fieldSelector(query.fieldSelector?.[0] ?? ''),
      ];
      const matches = (object: KubeObject) =>
        object.metadata.namespace === namespace && selectors.every((s) => s(object));
      if (query.watch?.[0] === 'true' && kind === 'Pod')
        return this.watch(req, res, namespace, matches);
      const items = [...store.values()].filter(matches);
      return this.json(res, 200, {
        apiVersion: 'v1',
        kind: `${kind}List`,
        metadata: { resourceVersion: String(this.resourceVersion) },
        items,
      });
    }
    if (req.method === 'DELETE' && name) {
      const object = store.get(key(name));
      if (!object) return this.status(res, 404, 'NotFound', `${resource} "${name}" not found`);
      store.delete(key(name));
      object.metadata.deletionTimestamp = new Date().toISOString();
      object.metadata.resourceVersion = String(++this.resourceVersion);
      if (kind === 'Pod') {
        this.stopPod(key(name));
        this.notify('DELETED', object);
      }
      return this.json(res, 200, object);
    }
    return this.status(res, 405, 'MethodNotAllowed', `${req.method} ${path}`);
  }

  private watch(
    req: IncomingMessage,
    res: ServerResponse,
    namespace: string,
    matches: (pod: KubeObject) => boolean,
  ): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const watcher: Watcher = {
      namespace,
      matches,
      send: (type, pod) => res.write(`${JSON.stringify({ type, object: pod })}\n`),
    };
    for (const pod of this.pods.values()) if (matches(pod)) watcher.send('ADDED', pod);
    this.watchers.add(watcher);
    req.on('close', () => this.watchers.delete(watcher));
  }

  private notify(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: KubeObject): void {
    for (const watcher of this.watchers) if (watcher.matches(pod)) watcher.send(type, pod);
  }

  private setPodStatus(key: string, status: Record<string, unknown>): void {
    const pod = this.pods.get(key);
    if (!pod) return;
    pod.status = status;
    pod.metadata.resourceVersion = String(++this.resourceVersion);
    this.notify('MODIFIED', pod);
  }

  private async startPod(key: string): Promise<void> {
    const pod = this.pods.get(key);
    if (!pod) return;
    const spec = pod.spec as { containers: ContainerSpec[]; volumes?: { name: string }[] };
    const runtime: PodRuntime = { dir: join(this.root, pod.metadata.uid!), containers: new Map() };
    this.runtimes.set(key, runtime);
    for (const volume of spec.volumes ?? [])
      mkdirSync(join(runtime.dir, 'volumes', volume.name), { recursive: true });
    const problem = KubeApiStandin.canRunPods();
    const now = new Date().toISOString();
    try {
      if (problem) throw new Error(problem);
      for (const container of spec.containers) {
        if (!container.command) continue;
        runtime.containers.set(
          container.name,
          await startContainer(runtime.dir, container, pod.metadata.name),
        );
      }
    } catch (error) {
      this.setPodStatus(key, {
        phase: 'Failed',
        reason: 'StandinError',
        message: (error as Error).message,
      });
      return;
    }
    this.setPodStatus(key, {
      phase: 'Running',
      podIP: '127.0.0.1',
      startTime: now,
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Initialized', status: 'True' },
        { type: 'ContainersReady', status: 'True' },
        { type: 'Ready', status: 'True' },
      ],
      containerStatuses: spec.containers.map((c) => ({
        name: c.name,
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt: now } },
      })),
    });
    for (const [name, container] of runtime.containers) {
      container.process.on('exit', (code) => {
        if (!this.runtimes.has(key)) return;
        this.setPodStatus(key, {
          phase: 'Failed',
          containerStatuses: [
            {
              name,
              ready: false,
              restartCount: 0,
              state: { terminated: { exitCode: code ?? 137, reason: 'Error' } },
            },
          ],
        });
      });
    }
  }

  private stopPod(key: string): void {
    const runtime = this.runtimes.get(key);
    if (!runtime) return;
    this.runtimes.delete(key);
    for (const container of runtime.containers.values()) {
      stopContainer(container);
    }
    rmSync(runtime.dir, { recursive: true, force: true });
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const { path, query } = this.record(req);
    const match = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/exec$/.exec(path);
    const container = query.container?.[0] ?? '';
    const command = query.command ?? [];
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const protocol = offered.includes(this.execProtocol) ? this.execProtocol : null;
    this.calls.push({
      method: 'GET',
      path,
      query,
      exec: { container, command, offered, protocol },
    });
    const refuse = (code: number, text: string) => {
      socket.end(`HTTP/1.1 ${code} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    };
    if (!this.authorized(req)) return refuse(401, 'Unauthorized');
    if (!match) return refuse(404, 'Not Found');
    if (!protocol) return refuse(400, 'Bad Request');
    const key = `${match[1]}/${match[2]}`;
    this.wss.handleUpgrade(req, socket, head, (ws) =>
      this.exec(ws, key, container, command, query),
    );
  }

  private exec(
    ws: WsSocket,
    key: string,
    containerName: string,
    command: string[],
    query: Record<string, string[]>,
  ): void {
    const send = (channel: number, data: Buffer) =>
      ws.send(Buffer.concat([Buffer.from([channel]), data]));
    const finish = (status: object) => {
      send(3, Buffer.from(JSON.stringify(status)));
      ws.close(1000);
    };
    const container = this.runtimes.get(key)?.containers.get(containerName);
    if (!container) {
      return finish({
        metadata: {},
        status: 'Failure',
        message: `container ${containerName} is not running in the stand-in`,
        reason: 'BadRequest',
        code: 400,
      });
    }
    const child = execInContainer(container, command);
    this.execs.add(child);
    child.stdin!.on('error', () => undefined);
    if (query.stdin?.[0] !== 'true') child.stdin!.end();
    child.stdout!.on('data', (chunk: Buffer) => send(1, chunk));
    child.stderr!.on('data', (chunk: Buffer) => send(2, chunk));
    ws.on('message', (data: Buffer) => {
      const channel = data[0];
      if (channel === 0) child.stdin!.write(data.subarray(1));
      else if (channel === 255 && data[1] === 0) child.stdin!.end();
    });
    ws.on('close', () => child.stdin!.end());
    child.on('close', (code, signal) => {
      this.execs.delete(child);
      const exitCode = code ?? 128 + (signal === 'SIGKILL' ? 9 : 15);
      if (exitCode === 0) return finish({ metadata: {}, status: 'Success' });
      finish({
        metadata: {},
        status: 'Failure',
        message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${exitCode}`,
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
      });
    });
  }

  private json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    this.json(res, code, {
      apiVersion: 'v1',
      kind: 'Status',
      metadata: {},
      status: 'Failure',
      message,
      reason,
      code,
    });
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

/** `a=b,c!=d,e,!f` (the equality-based subset of label selectors). */
function labelSelector(selector: string): (object: KubeObject) => boolean {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return (object) => {
    const labels = object.metadata.labels ?? {};
    return terms.every((term) => {
      const notEqual = /^([^!=]+)!=(.*)$/.exec(term);
      if (notEqual) return labels[notEqual[1]!] !== notEqual[2];
      const equal = /^([^!=]+)==?(.*)$/.exec(term);
      if (equal) return labels[equal[1]!] === equal[2];
      if (term.startsWith('!')) return !(term.slice(1) in labels);
      return term in labels;
    });
  };
}

/** `metadata.name=x` and `metadata.namespace=y`. */
function fieldSelector(selector: string): (object: KubeObject) => boolean {
  const terms = selector
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  return (object) =>
    terms.every((term) => {
      const [field, value] = term.split('=');
      if (field === 'metadata.name') return object.metadata.name === value;
      if (field === 'metadata.namespace') return object.metadata.namespace === value;
      return false;
    });
}
