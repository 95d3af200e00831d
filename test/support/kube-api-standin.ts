/**
 * A local stand-in for the Kubernetes API server, for testing the Kubernetes executor and the
 * Kubernetes deploy target where no cluster can run. It speaks the wire format of exactly the
 * calls they make. For the executor it runs what is asked of it for real:
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
 * probes and hostAliases are recorded, not applied. Every request is recorded in `calls` (with
 * its `Content-Type`, and for a PATCH of a workload object the parsed patch).
 *
 * For the deploy target it stores, and never runs, the workload kinds (`workloadResources`:
 * apps/v1 Deployments, v1 Services and ConfigMaps, networking.k8s.io/v1 Ingresses,
 * autoscaling/v2 HorizontalPodAutoscalers, policy/v1 PodDisruptionBudgets), with discovery
 * (`GET /api/v1`, `/apis/{group}/{version}`) for the client's generic object API:
 *
 * - server-side apply (`PATCH`, `application/apply-patch+yaml`): `fieldManager` required; each
 *   manager's leaf fields are tracked (lists as a whole), a field another manager set to a
 *   different value is a 409 conflict unless `force=true`, fields the manager applied before
 *   and left out now are removed; `managedFields` and `generation` (bumped when `spec` changes)
 *   are kept; JSON merge patch (`application/merge-patch+json`) as an `Update`;
 * - get, list with `labelSelector` (items without apiVersion/kind, as the API server sends
 *   them), delete (a Deployment's pods go with it), and watch: newline-delimited ADDED /
 *   MODIFIED / DELETED events, from `resourceVersion` when given (replayed from a history),
 *   else ADDED for what exists; `openWatches()`, `endWatches()` and `refuseWatches` (403);
 * - `GET .../pods/{name}/log` with `tailLines` (text set by `setPodLog`).
 *
 * Tests play the Deployment controller: `completeRollout` (pods of the current template,
 * Running and Ready, and a status with every replica updated and available), `failRollout`
 * (`ProgressDeadlineExceeded`), `setDeploymentStatus`, or `autoCompleteRollouts`; and another
 * field manager with `editObject` (a `kubectl edit`).
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
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
  /** The request's `Content-Type`, when it sent one (e.g. `application/apply-patch+yaml`). */
  contentType?: string;
  /** For a PATCH of a workload object: the parsed patch. */
  body?: unknown;
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
    generation?: number;
    managedFields?: ManagedFieldsEntry[];
    ownerReferences?: object[];
  };
  [key: string]: unknown;
};

interface PodRuntime {
  dir: string;
  /** Per container that runs: the host PID of its PID 1 (for nsenter) and the unshare process. */
  containers: Map<string, StandinContainer>;
}

/**
 * The kinds the deploy target manages, by their resource (plural) name: stored and served for
 * apply, list, watch and delete. No controller acts on them; tests play the controller.
 */
export const workloadResources = {
  deployments: { groupVersion: 'apps/v1', kind: 'Deployment' },
  services: { groupVersion: 'v1', kind: 'Service' },
  configmaps: { groupVersion: 'v1', kind: 'ConfigMap' },
  ingresses: { groupVersion: 'networking.k8s.io/v1', kind: 'Ingress' },
  horizontalpodautoscalers: { groupVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler' },
  poddisruptionbudgets: { groupVersion: 'policy/v1', kind: 'PodDisruptionBudget' },
} as const;
export type WorkloadResource = keyof typeof workloadResources;

/** `metadata.managedFields[]`, with `fieldsV1` built from the leaf fields each manager owns. */
export interface ManagedFieldsEntry {
  manager: string;
  operation: 'Apply' | 'Update';
  apiVersion: string;
  time: string;
  fieldsType: 'FieldsV1';
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

interface FieldOwner {
  manager: string;
  operation: 'Apply' | 'Update';
  subresource?: string;
  time: string;
  /** Leaf fields (JSON of the path) -> the value the manager set. Lists are atomic leaves. */
  fields: Map<string, unknown>;
}

interface StoredWorkloadObject {
  resource: WorkloadResource;
  object: KubeObject;
  /** By `<manager>/<operation>`. */
  owners: Map<string, FieldOwner>;
}

interface WorkloadWatcher {
  resource: WorkloadResource;
  path: string;
  query: Record<string, string[]>;
  matches(object: KubeObject): boolean;
  send(type: string, object: KubeObject): void;
  end(): void;
}

interface WorkloadEvent {
  resource: WorkloadResource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  resourceVersion: number;
}

interface PodTemplateSpec {
  containers: { name: string; image?: string }[];
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

  // The deploy target's side (workload objects: Deployments, Services, ...). Stored, never run:
  // tests play the Deployment controller with `completeRollout` / `failRollout`.
  /** Workload objects by `<resource>/<namespace>/<name>`. */
  private readonly workloads = new Map<string, StoredWorkloadObject>();
  private readonly workloadWatchers = new Set<WorkloadWatcher>();
  /** Every change to a workload object, for watches that resume from a resourceVersion. */
  private readonly workloadHistory: WorkloadEvent[] = [];
  private readonly podLogs = new Map<string, string>();
  /** Pods made by `completeRollout`: pod key -> the key (`namespace/name`) of their Deployment. */
  private readonly podOwners = new Map<string, string>();
  /** Answer watches of workload kinds with 403, as a server whose RBAC allows list but not watch. */
  refuseWatches = false;
  /** Play the Deployment controller: complete a Deployment's rollout right after its spec changes. */
  autoCompleteRollouts = false;

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
    const contentType = req.headers['content-type'];
    const call: RecordedCall = {
      method: req.method ?? 'GET',
      path,
      query,
      ...(contentType ? { contentType } : {}),
    };
    this.calls.push(call);
    if (!this.authorized(req)) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    if (await this.handleWorkloadApi(req, res, call)) return;
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

  // ---- Workload objects (the deploy target's calls) ----

  /** Workload objects that exist now (copies), optionally in one namespace. */
  workloadObjects(resource: WorkloadResource, namespace?: string): KubeObject[] {
    return [...this.workloads.values()]
      .filter(
        (stored) =>
          stored.resource === resource &&
          (namespace === undefined || stored.object.metadata.namespace === namespace),
      )
      .map((stored) => structuredClone(stored.object));
  }

  workloadObject(resource: WorkloadResource, namespace: string, name: string): KubeObject | null {
    const stored = this.workloads.get(`${resource}/${namespace}/${name}`);
    return stored ? structuredClone(stored.object) : null;
  }

  /** The watches of workload kinds open now. */
  openWatches(): { path: string; query: Record<string, string[]> }[] {
    return [...this.workloadWatchers].map(({ path, query }) => ({ path, query }));
  }

  /** Ends every open watch of workload kinds, as the API server does when a watch times out. */
  endWatches(): void {
    for (const watcher of [...this.workloadWatchers]) watcher.end();
  }

  /** Sets a Deployment's status (as its controller would): a MODIFIED event, no new generation. */
  setDeploymentStatus(namespace: string, name: string, status: Record<string, unknown>): void {
    const stored = this.workloads.get(`deployments/${namespace}/${name}`);
    if (!stored) throw new Error(`no deployment ${namespace}/${name} in the stand-in`);
    stored.object.status = status;
    stored.owners.set('kube-controller-manager/Update/status', {
      manager: 'kube-controller-manager',
      operation: 'Update',
      subresource: 'status',
      time: new Date().toISOString(),
      fields: leafFields({ status }),
    });
    this.touch(stored);
    this.notifyWorkload('MODIFIED', stored);
  }

  /**
   * Plays the Deployment controller finishing a rollout at once: the pods of the current template
   * (`<name>-<template hash>-<i>`, Running and Ready, with `restartCount`) replace the older ones,
   * and the status says every replica is updated and available.
   */
  completeRollout(namespace: string, name: string, options: { restartCount?: number } = {}): void {
    const stored = this.workloads.get(`deployments/${namespace}/${name}`);
    if (!stored) throw new Error(`no deployment ${namespace}/${name} in the stand-in`);
    const spec = (stored.object.spec ?? {}) as {
      replicas?: number;
      template?: { metadata?: { labels?: Record<string, string> }; spec?: PodTemplateSpec };
    };
    const replicas = spec.replicas ?? 1;
    const hash = createHash('sha256')
      .update(JSON.stringify(spec.template ?? {}))
      .digest('hex')
      .slice(0, 10);
    const owner = `${namespace}/${name}`;
    const wanted = new Set(
      Array.from({ length: replicas }, (_, i) => `${namespace}/${name}-${hash}-${i}`),
    );
    for (const [podKey, podOwner] of [...this.podOwners]) {
      if (podOwner !== owner || wanted.has(podKey)) continue;
      this.deleteOwnedPod(podKey);
    }
    const now = new Date().toISOString();
    const restartCount = options.restartCount ?? 0;
    const containers = spec.template?.spec?.containers ?? [];
    const containerStatuses = containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.image,
      ready: true,
      restartCount,
      started: true,
      state: { running: { startedAt: now } },
    }));
    for (const podKey of wanted) {
      const existing = this.pods.get(podKey);
      if (existing) {
        if (options.restartCount === undefined) continue;
        existing.status = { ...(existing.status as object), containerStatuses };
        existing.metadata.resourceVersion = String(++this.resourceVersion);
        this.notify('MODIFIED', existing);
        continue;
      }
      const pod: KubeObject = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: podKey.slice(namespace.length + 1),
          namespace,
          uid: randomUUID(),
          resourceVersion: String(++this.resourceVersion),
          creationTimestamp: now,
          labels: { ...spec.template?.metadata?.labels, 'pod-template-hash': hash },
          ownerReferences: [
            {
              apiVersion: 'apps/v1',
              kind: 'ReplicaSet',
              name: `${name}-${hash}`,
              controller: true,
            },
          ],
        },
        spec: spec.template?.spec ?? { containers: [] },
        status: {
          phase: 'Running',
          podIP: '127.0.0.1',
          startTime: now,
          conditions: [
            { type: 'PodScheduled', status: 'True' },
            { type: 'ContainersReady', status: 'True' },
            { type: 'Ready', status: 'True' },
          ],
          containerStatuses,
        },
      };
      this.pods.set(podKey, pod);
      this.podOwners.set(podKey, owner);
      this.notify('ADDED', pod);
    }
    this.setDeploymentStatus(namespace, name, {
      observedGeneration: stored.object.metadata.generation,
      replicas,
      updatedReplicas: replicas,
      readyReplicas: replicas,
      availableReplicas: replicas,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable' },
        {
          type: 'Progressing',
          status: 'True',
          reason: 'NewReplicaSetAvailable',
          message: `ReplicaSet "${name}-${hash}" has successfully progressed.`,
        },
      ],
    });
  }

  /** Plays the Deployment controller giving up: `Progressing` False, `ProgressDeadlineExceeded`. */
  failRollout(namespace: string, name: string, message?: string): void {
    const stored = this.workloads.get(`deployments/${namespace}/${name}`);
    if (!stored) throw new Error(`no deployment ${namespace}/${name} in the stand-in`);
    const replicas = (stored.object.spec as { replicas?: number } | undefined)?.replicas ?? 1;
    this.setDeploymentStatus(namespace, name, {
      observedGeneration: stored.object.metadata.generation,
      replicas,
      updatedReplicas: 1,
      readyReplicas: 0,
      availableReplicas: 0,
      unavailableReplicas: replicas,
      conditions: [
        { type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable' },
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: message ?? `ReplicaSet "${name}" has timed out progressing.`,
        },
      ],
    });
  }

  /** A change by someone else (`kubectl edit`, by default): a JSON merge patch under `manager`. */
  editObject(
    resource: WorkloadResource,
    namespace: string,
    name: string,
    patch: Record<string, unknown>,
    manager = 'kubectl-edit',
  ): void {
    const stored = this.workloads.get(`${resource}/${namespace}/${name}`);
    if (!stored) throw new Error(`no ${resource} ${namespace}/${name} in the stand-in`);
    this.mergePatchWorkload(stored, patch, manager);
  }

  /** What `GET .../pods/{name}/log` answers for a pod. */
  setPodLog(namespace: string, pod: string, text: string): void {
    this.podLogs.set(`${namespace}/${pod}`, text);
  }

  /**
   * Discovery (`GET /api/v1`, `GET /apis/{group}/{version}`), pod logs, and the workload kinds:
   * server-side apply (`PATCH` as `application/apply-patch+yaml`, `fieldManager` required,
   * conflicts with other managers refused unless `force=true`, fields the manager applied before
   * and no longer applies removed), JSON merge patch, get, list with `labelSelector`, watch
   * (with `resourceVersion`: the changes after it; without: ADDED for what exists), delete.
   * False when the path is none of these (pods and secrets are served by `handle`).
   */
  private async handleWorkloadApi(
    req: IncomingMessage,
    res: ServerResponse,
    call: RecordedCall,
  ): Promise<boolean> {
    const { path, query } = call;
    const method = req.method ?? 'GET';
    const discovery = /^\/(?:api\/(v1)|apis\/([^/]+\/[^/]+))$/.exec(path);
    if (discovery && method === 'GET') {
      const groupVersion = (discovery[1] ?? discovery[2])!;
      const resources: { name: string; kind: string }[] = Object.entries(workloadResources)
        .filter(([, r]) => r.groupVersion === groupVersion)
        .map(([name, r]) => ({ name, kind: r.kind }));
      if (groupVersion === 'v1')
        resources.push({ name: 'pods', kind: 'Pod' }, { name: 'secrets', kind: 'Secret' });
      if (resources.length === 0) {
        this.status(res, 404, 'NotFound', `the server could not find ${groupVersion}`);
        return true;
      }
      this.json(res, 200, {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion,
        resources: resources.map(({ name, kind }) => ({
          name,
          singularName: kind.toLowerCase(),
          namespaced: true,
          kind,
          verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
        })),
      });
      return true;
    }
    const log = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/log$/.exec(path);
    if (log && method === 'GET') {
      const key = `${log[1]}/${log[2]}`;
      if (!this.pods.has(key)) {
        this.status(res, 404, 'NotFound', `pods "${log[2]}" not found`);
        return true;
      }
      let lines = (this.podLogs.get(key) ?? '').split('\n');
      if (lines.at(-1) === '') lines.pop();
      const tail = Number(query.tailLines?.[0]);
      if (Number.isInteger(tail) && tail >= 0)
        lines = lines.slice(Math.max(0, lines.length - tail));
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(lines.map((line) => `${line}\n`).join(''));
      return true;
    }
    const match =
      /^\/(?:api\/(v1)|apis\/([^/]+\/[^/]+))\/namespaces\/([^/]+)\/([a-z]+)(?:\/([^/]+))?$/.exec(
        path,
      );
    const resource = match?.[4] as WorkloadResource | undefined;
    if (!match || !resource || !Object.hasOwn(workloadResources, resource)) return false;
    const { groupVersion, kind } = workloadResources[resource];
    if ((match[1] ?? match[2]) !== groupVersion) return false;
    const namespace = match[3]!;
    const name = match[5];
    const key = `${resource}/${namespace}/${name}`;

    if (method === 'GET' && !name) {
      const selector = labelSelector(query.labelSelector?.[0] ?? '');
      const matches = (object: KubeObject) =>
        object.metadata.namespace === namespace && selector(object);
      if (query.watch?.[0] === 'true') {
        this.watchWorkloads(res, resource, matches, call);
        return true;
      }
      const items = [...this.workloads.values()]
        .filter((stored) => stored.resource === resource && matches(stored.object))
        // As the API server does, list items carry neither apiVersion nor kind.
        .map(({ object: { apiVersion: _v, kind: _k, ...item } }) => structuredClone(item));
      this.json(res, 200, {
        apiVersion: groupVersion,
        kind: `${kind}List`,
        metadata: { resourceVersion: String(this.resourceVersion) },
        items,
      });
      return true;
    }
    if (method === 'GET' && name) {
      const stored = this.workloads.get(key);
      if (!stored) this.status(res, 404, 'NotFound', `${resource} "${name}" not found`);
      else this.json(res, 200, stored.object);
      return true;
    }
    if (method === 'PATCH' && name) {
      const text = await readBody(req);
      const type = (call.contentType ?? '').split(';')[0]!.trim();
      let body: unknown;
      try {
        body = type === 'application/apply-patch+yaml' ? parseYaml(text) : JSON.parse(text);
      } catch (error) {
        this.status(res, 400, 'BadRequest', `cannot parse the patch: ${(error as Error).message}`);
        return true;
      }
      call.body = body;
      if (!isPlainObject(body)) {
        this.status(res, 400, 'BadRequest', 'the patch is not an object');
        return true;
      }
      if (type === 'application/apply-patch+yaml') {
        this.applyWorkload(res, { resource, namespace, name, body: body as KubeObject, query });
        return true;
      }
      if (
        type === 'application/merge-patch+json' ||
        type === 'application/strategic-merge-patch+json'
      ) {
        const stored = this.workloads.get(key);
        if (!stored) this.status(res, 404, 'NotFound', `${resource} "${name}" not found`);
        else {
          this.mergePatchWorkload(stored, body, query.fieldManager?.[0] ?? 'unknown');
          this.json(res, 200, stored.object);
        }
        return true;
      }
      this.status(res, 415, 'UnsupportedMediaType', `the stand-in does not apply ${type} patches`);
      return true;
    }
    if (method === 'DELETE' && name) {
      const stored = this.workloads.get(key);
      if (!stored) {
        this.status(res, 404, 'NotFound', `${resource} "${name}" not found`);
        return true;
      }
      this.workloads.delete(key);
      stored.object.metadata.deletionTimestamp = new Date().toISOString();
      this.touch(stored);
      this.notifyWorkload('DELETED', stored);
      // The garbage collector, at once: a Deployment's pods go with it.
      if (resource === 'deployments') {
        for (const [podKey, owner] of [...this.podOwners])
          if (owner === `${namespace}/${name}`) this.deleteOwnedPod(podKey);
      }
      this.json(res, 200, {
        apiVersion: 'v1',
        kind: 'Status',
        metadata: {},
        status: 'Success',
        details: { name, group: groupVersion.split('/').slice(0, -1).join('/'), kind: resource },
      });
      return true;
    }
    this.status(res, 405, 'MethodNotAllowed', `${method} ${path}`);
    return true;
  }

  private applyWorkload(
    res: ServerResponse,
    request: {
      resource: WorkloadResource;
      namespace: string;
      name: string;
      body: KubeObject;
      query: Record<string, string[]>;
    },
  ): void {
    const { resource, namespace, name, body, query } = request;
    const { groupVersion, kind } = workloadResources[resource];
    const manager = query.fieldManager?.[0];
    if (!manager)
      return this.status(res, 400, 'BadRequest', 'fieldManager is required for apply requests');
    if (body.apiVersion !== groupVersion || body.kind !== kind)
      return this.status(
        res,
        400,
        'BadRequest',
        `the body is ${body.apiVersion}/${body.kind}, the URL ${groupVersion}/${kind}`,
      );
    if (body.metadata?.name !== name)
      return this.status(
        res,
        400,
        'BadRequest',
        `the name of the object (${body.metadata?.name}) does not match the name on the URL (${name})`,
      );
    if (body.metadata.namespace && body.metadata.namespace !== namespace)
      return this.status(
        res,
        400,
        'BadRequest',
        `the namespace of the object (${body.metadata.namespace}) does not match the namespace on the URL (${namespace})`,
      );
    const key = `${resource}/${namespace}/${name}`;
    const existing = this.workloads.get(key);
    const stored: StoredWorkloadObject = existing ?? {
      resource,
      object: {
        apiVersion: groupVersion,
        kind,
        metadata: {
          name,
          namespace,
          uid: randomUUID(),
          creationTimestamp: new Date().toISOString(),
          generation: 0,
        },
      },
      owners: new Map(),
    };
    const ownerKey = `${manager}/Apply`;
    const fields = leafFields(appliedConfiguration(body));
    const conflicts: { owner: string; path: string }[] = [];
    for (const [otherKey, other] of stored.owners) {
      if (otherKey === ownerKey) continue;
      for (const [path, value] of fields) {
        if (other.fields.has(path) && !isDeepStrictEqual(getAt(stored.object, path), value))
          conflicts.push({ owner: otherKey, path });
      }
    }
    if (conflicts.length > 0 && query.force?.[0] !== 'true') {
      const lines = conflicts.map(
        ({ owner, path }) =>
          `conflict with "${stored.owners.get(owner)!.manager}": .${(JSON.parse(path) as string[]).join('.')}`,
      );
      return this.status(
        res,
        409,
        'Conflict',
        `Apply failed with ${conflicts.length} conflict(s): ${lines.join('; ')}`,
      );
    }
    // force: the applier takes the conflicting fields over.
    for (const { owner, path } of conflicts) stored.owners.get(owner)!.fields.delete(path);
    const before = JSON.stringify(stored.object);
    const specBefore = JSON.stringify(stored.object.spec ?? null);
    const previous = stored.owners.get(ownerKey)?.fields ?? new Map<string, unknown>();
    for (const path of previous.keys()) {
      const ownedByOthers = [...stored.owners].some(
        ([otherKey, other]) => otherKey !== ownerKey && other.fields.has(path),
      );
      if (!fields.has(path) && !ownedByOthers) deleteAt(stored.object, path);
    }
    for (const [path, value] of fields) setAt(stored.object, path, structuredClone(value));
    stored.owners.set(ownerKey, {
      manager,
      operation: 'Apply',
      time: new Date().toISOString(),
      fields,
    });
    if (!existing) {
      if (resource === 'services') {
        const spec = (stored.object.spec ??= {}) as Record<string, unknown>;
        spec.type ??= 'ClusterIP';
        spec.clusterIP ??= `10.96.0.${(this.resourceVersion % 250) + 2}`;
      }
      this.workloads.set(key, stored);
    }
    const specChanged = JSON.stringify(stored.object.spec ?? null) !== specBefore;
    if (existing && JSON.stringify(stored.object) === before) {
      // A no-op apply: nothing changes, no event (the managers' times aside).
      stored.object.metadata.managedFields = managedFieldsOf(stored, groupVersion);
      return this.json(res, 200, stored.object);
    }
    if (!existing || specChanged)
      stored.object.metadata.generation = (stored.object.metadata.generation ?? 0) + 1;
    this.touch(stored);
    this.notifyWorkload(existing ? 'MODIFIED' : 'ADDED', stored);
    if (this.autoCompleteRollouts && resource === 'deployments' && specChanged)
      setImmediate(() => {
        if (this.workloads.get(key) === stored) this.completeRollout(namespace, name);
      });
    this.json(res, existing ? 200 : 201, stored.object);
  }

  /** RFC 7386 merge patch; the manager (operation Update) takes over the fields it changes. */
  private mergePatchWorkload(stored: StoredWorkloadObject, patch: object, manager: string): void {
    const specBefore = JSON.stringify(stored.object.spec ?? null);
    const { metadata, ...rest } = patch as { metadata?: Record<string, unknown> };
    const { name: _n, namespace: _ns, ...metadataPatch } = metadata ?? {};
    const changes = {
      ...rest,
      ...(Object.keys(metadataPatch).length ? { metadata: metadataPatch } : {}),
    };
    delete (changes as Record<string, unknown>).apiVersion;
    delete (changes as Record<string, unknown>).kind;
    mergePatchInto(stored.object, changes);
    const ownerKey = `${manager}/Update`;
    const owner = stored.owners.get(ownerKey) ?? {
      manager,
      operation: 'Update' as const,
      time: '',
      fields: new Map<string, unknown>(),
    };
    owner.time = new Date().toISOString();
    for (const [path, value] of leafFields(changes)) {
      for (const other of stored.owners.values()) other.fields.delete(path);
      if (value !== null) owner.fields.set(path, value);
    }
    stored.owners.set(ownerKey, owner);
    const specChanged = JSON.stringify(stored.object.spec ?? null) !== specBefore;
    if (specChanged)
      stored.object.metadata.generation = (stored.object.metadata.generation ?? 0) + 1;
    this.touch(stored);
    this.notifyWorkload('MODIFIED', stored);
    const { namespace, name } = stored.object.metadata;
    if (this.autoCompleteRollouts && stored.resource === 'deployments' && specChanged)
      setImmediate(() => {
        if (this.workloads.get(`deployments/${namespace}/${name}`) === stored)
          this.completeRollout(namespace!, name);
      });
  }

  private touch(stored: StoredWorkloadObject): void {
    stored.object.metadata.resourceVersion = String(++this.resourceVersion);
    stored.object.metadata.managedFields = managedFieldsOf(
      stored,
      workloadResources[stored.resource].groupVersion,
    );
  }

  private watchWorkloads(
    res: ServerResponse,
    resource: WorkloadResource,
    matches: (object: KubeObject) => boolean,
    call: RecordedCall,
  ): void {
    if (this.refuseWatches)
      return this.status(
        res,
        403,
        'Forbidden',
        `${resource} is forbidden: User "tester" cannot watch resource "${resource}"`,
      );
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // As the API server does: the client knows the watch is open before any event.
    res.flushHeaders();
    const watcher: WorkloadWatcher = {
      resource,
      matches,
      path: call.path,
      query: call.query,
      send: (type, object) => res.write(`${JSON.stringify({ type, object })}\n`),
      end: () => res.end(),
    };
    const since = Number(call.query.resourceVersion?.[0] ?? '0');
    if (since > 0) {
      for (const event of this.workloadHistory)
        if (event.resource === resource && event.resourceVersion > since && matches(event.object))
          watcher.send(event.type, event.object);
    } else {
      for (const stored of this.workloads.values())
        if (stored.resource === resource && matches(stored.object))
          watcher.send('ADDED', stored.object);
    }
    this.workloadWatchers.add(watcher);
    res.on('close', () => this.workloadWatchers.delete(watcher));
  }

  private notifyWorkload(type: 'ADDED' | 'MODIFIED' | 'DELETED', stored: StoredWorkloadObject) {
    const object = structuredClone(stored.object);
    const resourceVersion = Number(object.metadata.resourceVersion);
    this.workloadHistory.push({ resource: stored.resource, type, object, resourceVersion });
    for (const watcher of this.workloadWatchers)
      if (watcher.resource === stored.resource && watcher.matches(object))
        watcher.send(type, object);
  }

  private deleteOwnedPod(podKey: string): void {
    const pod = this.pods.get(podKey);
    this.podOwners.delete(podKey);
    this.podLogs.delete(podKey);
    if (!pod) return;
    this.pods.delete(podKey);
    pod.metadata.deletionTimestamp = new Date().toISOString();
    pod.metadata.resourceVersion = String(++this.resourceVersion);
    this.notify('DELETED', pod);
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

/** What a server-side apply sets: the body without identity, server-owned metadata and status. */
function appliedConfiguration(body: KubeObject): Record<string, unknown> {
  const { apiVersion: _v, kind: _k, status: _s, metadata, ...rest } = body;
  const {
    name: _n,
    namespace: _ns,
    uid: _u,
    resourceVersion: _rv,
    generation: _g,
    creationTimestamp: _c,
    deletionTimestamp: _d,
    managedFields: _m,
    ...ownMetadata
  } = metadata ?? {};
  return { ...(Object.keys(ownMetadata).length ? { metadata: ownMetadata } : {}), ...rest };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Path (JSON of the keys) -> value for each leaf; lists and empty maps are leaves, as a whole. */
function leafFields(value: unknown): Map<string, unknown> {
  const fields = new Map<string, unknown>();
  const walk = (node: unknown, path: string[]) => {
    if (isPlainObject(node) && Object.keys(node).length > 0) {
      for (const [key, child] of Object.entries(node)) walk(child, [...path, key]);
    } else if (path.length > 0) fields.set(JSON.stringify(path), node);
  };
  walk(value, []);
  return fields;
}

function getAt(object: object, path: string): unknown {
  let node: unknown = object;
  for (const key of JSON.parse(path) as string[]) {
    if (!isPlainObject(node)) return undefined;
    node = node[key];
  }
  return node;
}

function setAt(object: object, path: string, value: unknown): void {
  const keys = JSON.parse(path) as string[];
  let node = object as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) {
    if (!isPlainObject(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[keys.at(-1)!] = value;
}

function deleteAt(object: object, path: string): void {
  const keys = JSON.parse(path) as string[];
  let node: unknown = object;
  for (const key of keys.slice(0, -1)) {
    if (!isPlainObject(node)) return;
    node = node[key];
  }
  if (isPlainObject(node)) delete node[keys.at(-1)!];
}

/** RFC 7386: objects merge, null deletes, anything else replaces. */
function mergePatchInto(target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete target[key];
    else if (isPlainObject(value)) {
      if (!isPlainObject(target[key])) target[key] = {};
      mergePatchInto(target[key] as Record<string, unknown>, value);
    } else target[key] = structuredClone(value);
  }
}

function managedFieldsOf(stored: StoredWorkloadObject, apiVersion: string): ManagedFieldsEntry[] {
  return [...stored.owners.values()]
    .filter((owner) => owner.fields.size > 0)
    .map((owner) => {
      const fieldsV1: Record<string, unknown> = {};
      for (const path of owner.fields.keys()) {
        let node = fieldsV1;
        for (const key of JSON.parse(path) as string[])
          node = (node[`f:${key}`] ??= {}) as Record<string, unknown>;
      }
      return {
        manager: owner.manager,
        operation: owner.operation,
        apiVersion,
        time: owner.time,
        fieldsType: 'FieldsV1' as const,
        fieldsV1,
        ...(owner.subresource ? { subresource: owner.subresource } : {}),
      };
    });
}
