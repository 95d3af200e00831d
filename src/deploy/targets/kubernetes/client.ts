/**
 * The Kubernetes API as the target uses it, through the official client: server-side apply,
 * merge patches (scaling), list by label, delete, pods and their logs. One namespace.
 */
import { STATUS_CODES } from 'node:http';
import {
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  type KubernetesObject,
  type V1Pod,
} from '@kubernetes/client-node';
import { managedKinds, type ManagedKind, type Manifest } from './inventory.js';

export interface KubeConnectionOptions {
  /** API server URL, e.g. `https://10.0.0.1:6443`. */
  server: string;
  /** Bearer token (a service account's). */
  token?: string;
  /** The cluster CA as in a kubeconfig: base64 of the PEM. */
  caData?: string;
  /** The cluster CA as PEM (how the target registry stores it). */
  caCert?: string;
  /** Needed for a plain `http://` server (the client refuses it otherwise). */
  insecureSkipTLSVerify?: boolean;
  /** The target registry's spelling of the same. */
  insecureSkipTlsVerify?: boolean;
  namespace: string;
}

/** A KubeConfig built in code: one cluster, one token user, one context in `namespace`. */
export function kubeConfigFor(options: KubeConnectionOptions): KubeConfig {
  const config = new KubeConfig();
  const caData =
    options.caData ?? (options.caCert ? Buffer.from(options.caCert).toString('base64') : undefined);
  config.loadFromOptions({
    clusters: [
      {
        name: 'valve',
        server: options.server,
        caData,
        skipTLSVerify: options.insecureSkipTLSVerify ?? options.insecureSkipTlsVerify ?? false,
      },
    ],
    users: [{ name: 'valve', token: options.token }],
    contexts: [{ name: 'valve', cluster: 'valve', user: 'valve', namespace: options.namespace }],
    currentContext: 'valve',
  });
  return config;
}

/** A live object as the API returns it (typed loosely: the target reads a few fields). */
export type LiveObject = KubernetesObject & {
  metadata: NonNullable<KubernetesObject['metadata']>;
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [field: string]: unknown;
};

export class KubeClient {
  private readonly objects: KubernetesObjectApi;
  private readonly core: CoreV1Api;

  constructor(
    readonly config: KubeConfig,
    readonly namespace: string,
    readonly fieldManager: string,
  ) {
    this.objects = KubernetesObjectApi.makeApiClient(config);
    this.core = config.makeApiClient(CoreV1Api);
  }

  /**
   * Server-side apply: `PATCH` as `application/apply-patch+yaml` (the body is JSON, which is
   * YAML) with `fieldManager` and `force=true`: Valve's manifests win over fields another
   * manager took (a `kubectl edit`), which drift detection reports first.
   */
  async apply(manifest: Manifest): Promise<LiveObject> {
    const applied = await this.objects.patch(
      structuredClone(manifest) as KubernetesObject,
      undefined,
      undefined,
      this.fieldManager,
      true,
      PatchStrategy.ServerSideApply,
    );
    return applied as LiveObject;
  }

  /** A JSON merge patch of a few fields (scaling a Deployment outside its manifest). */
  async mergePatch(
    kind: ManagedKind,
    name: string,
    patch: Record<string, unknown>,
  ): Promise<LiveObject> {
    const body = {
      apiVersion: apiVersionOf(kind),
      kind,
      metadata: { name, namespace: this.namespace },
      ...patch,
    };
    const patched = await this.objects.patch(
      body as KubernetesObject,
      undefined,
      undefined,
      this.fieldManager,
      undefined,
      PatchStrategy.MergePatch,
    );
    return patched as LiveObject;
  }

  /** Objects of one kind in the namespace, by label selector; `kind` is set on each item. */
  async list(
    kind: ManagedKind,
    labelSelector: string,
  ): Promise<{ items: LiveObject[]; resourceVersion: string | undefined }> {
    const apiVersion = apiVersionOf(kind);
    const list = await this.objects.list(
      apiVersion,
      kind,
      this.namespace,
      undefined,
      undefined,
      undefined,
      undefined,
      labelSelector,
    );
    // List items come without apiVersion and kind.
    const items = list.items.map((item) => ({ ...item, apiVersion, kind }) as LiveObject);
    return { items, resourceVersion: list.metadata?.resourceVersion };
  }

  /** Deletes one object (dependents in the background); an object already gone is fine. */
  async delete(kind: ManagedKind, name: string): Promise<void> {
    try {
      await this.objects.delete(
        { apiVersion: apiVersionOf(kind), kind, metadata: { name, namespace: this.namespace } },
        undefined,
        undefined,
        undefined,
        undefined,
        'Background',
      );
    } catch (error) {
      if ((error as { code?: number }).code !== 404) throw error;
    }
  }

  async pods(labelSelector: string): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({ namespace: this.namespace, labelSelector });
    return list.items;
  }

  async podLog(name: string, container: string | undefined, tailLines: number): Promise<string> {
    return this.core.readNamespacedPodLog({
      name,
      namespace: this.namespace,
      container,
      tailLines,
    });
  }
}

export function apiVersionOf(kind: ManagedKind): string {
  return managedKinds.find((k) => k.kind === kind)!.apiVersion;
}

/** `Kubernetes API: 409 Conflict: <the API's message>` for an API error; the message of anything else. */
export function apiErrorMessage(error: unknown): string {
  const { code, body } = (error ?? {}) as { code?: number; body?: unknown };
  if (typeof code !== 'number' || !(error instanceof Error))
    return error instanceof Error ? error.message : String(error);
  let detail: string | undefined;
  try {
    const status = (typeof body === 'string' ? JSON.parse(body) : body) as
      { message?: string } | undefined;
    detail = status?.message;
  } catch {
    detail = typeof body === 'string' ? body.slice(0, 200) : undefined;
  }
  return `Kubernetes API: ${code} ${STATUS_CODES[code] ?? ''}${detail ? `: ${detail}` : ''}`.trim();
}
