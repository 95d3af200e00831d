import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { KubeApiStandin, type RecordedCall } from '../../../../test/support/kube-api-standin.js';
import type { ValveError } from '../../../errors.js';
import type { RolloutSpec, WorkloadSpec } from '../target.js';
import { KubernetesTarget, type KubernetesTargetOptions } from './index.js';

/**
 * The Kubernetes target against the API stand-in (test/support/kube-api-standin.ts): the calls
 * it sends are asserted exactly, and the tests play the Deployment controller
 * (`completeRollout`, `failRollout`). Not a live cluster: see README.md.
 */

const NS = 'valve-test';
const KEY = 'team-a/hello/dev';
const NAME = 'team-a-hello-dev';
const INVENTORY = 'team-a.hello.dev';
const SELECTOR = `valve.dev/inventory=${INVENTORY}`;
const DEPLOYMENTS = `/apis/apps/v1/namespaces/${NS}/deployments`;
const SERVICES = `/api/v1/namespaces/${NS}/services`;

const digest = (version: string) => `sha256:${version.repeat(64).slice(0, 64)}`;
const spec = (version: string, extra: Partial<WorkloadSpec> = {}): WorkloadSpec => ({
  key: KEY,
  image: {
    reference: `registry.example/team-a/hello@${digest(version)}`,
    repo: 'team-a/hello',
    digest: digest(version),
  },
  env: { GREETING: `hello ${version}` },
  port: 8080,
  replicas: 2,
  ...extra,
});
const analysis = { maxErrorRate: 0.05, minRequests: 20, maxFailedChecks: 2, intervalSeconds: 1 };
const blueGreen: RolloutSpec = {
  strategy: 'blue-green',
  steps: [{ weight: 100, pauseSeconds: 0 }],
  analysis,
  autoPromote: true,
};

async function setup(t: TestContext, options: Partial<KubernetesTargetOptions> = {}) {
  const standin = await KubeApiStandin.start();
  const target = new KubernetesTarget({
    server: standin.url,
    token: standin.token,
    insecureSkipTLSVerify: true,
    namespace: NS,
    pollMs: 50,
    rolloutTimeoutMs: 5000,
    ...options,
  });
  t.after(async () => {
    await target.close();
    await standin.close();
  });
  return { standin, target };
}

async function until<T>(check: () => T | Promise<T>, what = 'condition', timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const patches = (calls: RecordedCall[]) => calls.filter((c) => c.method === 'PATCH');
const deletes = (calls: RecordedCall[]) => calls.filter((c) => c.method === 'DELETE');
const selectorOf = (object: unknown) =>
  (object as { spec: { selector: Record<string, string> } }).spec.selector;
const replicasOf = (object: unknown) => (object as { spec: { replicas: number } }).spec.replicas;
const imageOf = (object: unknown) =>
  (object as { spec: { template: { spec: { containers: { image: string }[] } } } }).spec.template
    .spec.containers[0]!.image;

/** Rendered manifests as the deploy repo holds them (render.ts's shape, trimmed). */
function rendered(
  version: string,
  extra: { ingress?: boolean; hpa?: boolean; pdb?: boolean } = {},
) {
  const labels = { 'app.kubernetes.io/name': 'hello', 'app.kubernetes.io/instance': 'hello-dev' };
  const objects: Record<string, unknown>[] = [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'hello', labels },
      spec: {
        replicas: 2,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: {
            containers: [
              {
                name: 'web',
                image: `registry.example/team-a/hello@${digest(version)}`,
                ports: [{ containerPort: 8080 }],
              },
            ],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'hello', labels },
      spec: { selector: labels, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'hello-files', labels },
      data: { 'config.json': '{}' },
    },
  ];
  if (extra.ingress)
    objects.push({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'Ingress',
      metadata: { name: 'hello', labels },
      spec: {
        tls: [{ hosts: ['hello.example.com'] }],
        rules: [{ host: 'hello.example.com' }],
      },
    });
  if (extra.hpa)
    objects.push({
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: 'hello', labels },
      spec: {
        scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'hello' },
        minReplicas: 2,
        maxReplicas: 5,
      },
    });
  if (extra.pdb)
    objects.push({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata: { name: 'hello', labels },
      spec: { maxUnavailable: 1, selector: { matchLabels: labels } },
    });
  return objects;
}

describe('kubernetes target (API stand-in)', () => {
  it('applies with server-side apply while watching, and resolves once the Deployment is available', async (t) => {
    const { standin, target } = await setup(t);
    const applying = target.apply(spec('1'));
    await until(() => standin.workloadObject('deployments', NS, NAME), 'the Deployment');

    // A watch of the workload's Deployments is open while the rollout runs, from the listed version.
    const watch = standin.openWatches().find((w) => w.path === DEPLOYMENTS);
    assert.ok(watch, 'a deployments watch is open during apply');
    assert.deepEqual(watch.query.watch, ['true']);
    assert.deepEqual(watch.query.labelSelector, ['valve.dev/inventory']);
    assert.match(watch.query.resourceVersion?.[0] ?? '', /^\d+$/);
    assert.equal((await target.status(KEY)).health, 'progressing');

    standin.completeRollout(NS, NAME);
    const status = await applying;
    assert.equal(status.health, 'healthy');
    assert.equal(status.image, digest('1'));
    assert.equal(status.imageReference, `registry.example/team-a/hello@${digest('1')}`);
    assert.equal(status.url, `http://${NAME}.${NS}.svc.cluster.local`);
    assert.equal(status.desiredReplicas, 2);
    assert.equal(status.readyReplicas, 2);
    assert.deepEqual(
      status.instances.map((i) => [i.state, i.healthy, i.port, i.image, i.restarts]),
      [
        ['ready', true, 8080, digest('1'), 0],
        ['ready', true, 8080, digest('1'), 0],
      ],
    );
    assert.deepEqual(status.drift, []);

    // Exactly one server-side apply per object, Deployment first, with the field manager, forced.
    const applied = patches(standin.calls);
    assert.deepEqual(
      applied.map((c) => c.path),
      [`${DEPLOYMENTS}/${NAME}`, `${SERVICES}/${NAME}`],
    );
    for (const call of applied) {
      assert.equal(call.contentType, 'application/apply-patch+yaml');
      assert.deepEqual(call.query.fieldManager, ['valve']);
      assert.deepEqual(call.query.force, ['true']);
      const body = call.body as {
        metadata: { labels: Record<string, string>; annotations: Record<string, string> };
      };
      assert.equal(body.metadata.labels['valve.dev/inventory'], INVENTORY);
      assert.equal(body.metadata.annotations['valve.dev/key'], KEY);
    }
    const deployment = applied[0]!.body as {
      spec: { template: { metadata: { labels: Record<string, string> }; spec: unknown } };
    };
    assert.equal(deployment.spec.template.metadata.labels['valve.dev/inventory'], INVENTORY);
    assert.deepEqual(deployment.spec.template.spec, {
      containers: [
        {
          name: 'app',
          image: `registry.example/team-a/hello@${digest('1')}`,
          env: [{ name: 'GREETING', value: 'hello 1' }],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: {
            httpGet: { path: '/', port: 8080 },
            periodSeconds: 10,
            timeoutSeconds: 1,
            failureThreshold: 3,
          },
        },
      ],
    });
    const managers = standin
      .workloadObject('deployments', NS, NAME)!
      .metadata.managedFields!.filter((m) => m.operation === 'Apply')
      .map((m) => m.manager);
    assert.deepEqual(managers, ['valve']);
    // Prune listed every managed kind by the inventory label and deleted nothing.
    const lists = standin.calls.filter(
      (c) => c.method === 'GET' && c.query.labelSelector?.[0] === SELECTOR && !c.query.watch,
    );
    for (const resource of [
      'configmaps',
      'deployments',
      'services',
      'ingresses',
      'horizontalpodautoscalers',
      'poddisruptionbudgets',
    ])
      assert.ok(
        lists.some((c) => c.path.endsWith(`/namespaces/${NS}/${resource}`)),
        `listed ${resource}`,
      );
    assert.deepEqual(deletes(standin.calls), []);

    // The same spec again: applied again (server-side apply is idempotent), nothing to wait for.
    const before = standin.workloadObject('deployments', NS, NAME)!.metadata.generation;
    assert.equal((await target.apply(spec('1'))).health, 'healthy');
    assert.equal(standin.workloadObject('deployments', NS, NAME)!.metadata.generation, before);
  });

  it('health follows the Deployment status through the watch: progressing, healthy, degraded', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1'));
    // A pod lost after the rollout finished: degraded, with the reason.
    standin.setDeploymentStatus(NS, NAME, {
      observedGeneration: 1,
      replicas: 2,
      updatedReplicas: 2,
      readyReplicas: 1,
      availableReplicas: 1,
      conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }],
    });
    const degraded = await until(async () => {
      const status = await target.status(KEY);
      return status.health === 'degraded' ? status : null;
    }, 'degraded');
    assert.match(degraded.message ?? '', /1 of 2 replicas available/);
    standin.completeRollout(NS, NAME, { restartCount: 3 });
    const healthy = await until(async () => {
      const status = await target.status(KEY);
      return status.health === 'healthy' ? status : null;
    }, 'healthy again');
    assert.deepEqual(
      healthy.instances.map((i) => i.restarts),
      [3, 3],
    );
    assert.equal(healthy.message, null);
  });

  it('fails the apply on ProgressDeadlineExceeded, with the reason, and prunes nothing', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1'));
    standin.autoCompleteRollouts = false;
    const progress: string[] = [];
    const applying = target.apply(spec('2'), (line) => progress.push(line));
    await until(
      () => standin.workloadObject('deployments', NS, NAME)!.metadata.generation === 2,
      'generation 2',
    );
    const mark = standin.calls.length;
    standin.failRollout(NS, NAME, `ReplicaSet "${NAME}-2" has timed out progressing.`);
    await assert.rejects(applying, (error: ValveError) => {
      assert.equal(error.code, 'DEPLOY_ROLLOUT_FAILED');
      assert.match(error.message, /has timed out progressing/);
      return true;
    });
    assert.ok(progress.some((line) => /has timed out progressing/.test(line)));
    assert.deepEqual(deletes(standin.calls.slice(mark)), []);
    const status = await target.status(KEY);
    assert.equal(status.health, 'degraded');
    assert.match(status.message ?? '', /has timed out progressing/);
  });

  it('fails after the timeout with what it was waiting for', async (t) => {
    const { target } = await setup(t, { rolloutTimeoutMs: 300 });
    await assert.rejects(target.apply(spec('1')), (error: ValveError) => {
      assert.equal(error.code, 'DEPLOY_ROLLOUT_FAILED');
      assert.match(
        error.message,
        /deployment team-a-hello-dev was not available after 0 s: deployment team-a-hello-dev: waiting for the controller/,
      );
      return true;
    });
    assert.equal((await target.status(KEY)).health, 'degraded');
  });

  it('applies rendered manifests and prunes exactly the objects no longer in the set', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    // Another workload's object in the same namespace: never pruned.
    await target.applyManifests('team-a/other/dev', [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'other' }, data: {} },
    ]);
    const all = rendered('1', { ingress: true, hpa: true, pdb: true });
    // manifests.ts's entries ({ file, kind, name, object, line }) are accepted as they are.
    const entries = all.map((object, i) => ({
      file: `envs/dev/${i}.yaml`,
      kind: object.kind,
      name: (object.metadata as { name: string }).name,
      object,
      line: 1,
    }));
    const status = await target.applyManifests(KEY, entries);
    assert.equal(status.health, 'healthy');
    assert.equal(status.url, 'https://hello.example.com');
    assert.deepEqual(
      patches(standin.calls)
        .slice(1)
        .map((c) =>
          c.path.replace(/^\/apis?\/(?:[a-z0-9.]+\/)?v\d+\/namespaces\/valve-test\//, ''),
        ),
      [
        'configmaps/hello-files',
        'deployments/hello',
        'services/hello',
        'ingresses/hello',
        'horizontalpodautoscalers/hello',
        'poddisruptionbudgets/hello',
      ],
    );
    for (const resource of [
      'ingresses',
      'horizontalpodautoscalers',
      'poddisruptionbudgets',
    ] as const)
      assert.equal(
        standin.workloadObject(resource, NS, 'hello')!.metadata.labels!['valve.dev/inventory'],
        INVENTORY,
      );

    const mark = standin.calls.length;
    await target.applyManifests(KEY, rendered('1'));
    const after = standin.calls.slice(mark);
    assert.deepEqual(
      deletes(after).map((c) => [c.path, c.query.propagationPolicy?.[0]]),
      [
        [`/apis/networking.k8s.io/v1/namespaces/${NS}/ingresses/hello`, 'Background'],
        [`/apis/autoscaling/v2/namespaces/${NS}/horizontalpodautoscalers/hello`, 'Background'],
        [`/apis/policy/v1/namespaces/${NS}/poddisruptionbudgets/hello`, 'Background'],
      ],
    );
    // Each deleted object was found by listing its kind with the inventory label.
    for (const call of deletes(after)) {
      const collection = call.path.slice(0, call.path.lastIndexOf('/'));
      const listIndex = after.findIndex(
        (c) =>
          c.method === 'GET' && c.path === collection && c.query.labelSelector?.[0] === SELECTOR,
      );
      assert.ok(listIndex >= 0 && listIndex < after.indexOf(call), `listed ${collection} first`);
    }
    assert.ok(
      standin.workloadObject('configmaps', NS, 'other'),
      'the other inventory is left alone',
    );
    assert.ok(standin.workloadObject('configmaps', NS, 'hello-files'));
    assert.equal(standin.workloadObject('ingresses', NS, 'hello'), null);
  });

  it('refuses kinds it cannot prune, a foreign namespace, and a canary with two Deployments', async (t) => {
    const { standin, target } = await setup(t);
    await assert.rejects(
      target.applyManifests(KEY, [
        {
          file: 'envs/dev/secret.yaml',
          line: 3,
          kind: 'Secret',
          name: 'x',
          object: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } },
        },
      ]),
      (error: ValveError) =>
        error.code === 'DEPLOY_MANIFEST_INVALID' &&
        /^envs\/dev\/secret\.yaml:3: kind Secret is not one the Kubernetes target manages/.test(
          error.message,
        ),
    );
    await assert.rejects(
      target.applyManifests(KEY, [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x', namespace: 'kube-system' } },
      ]),
      /namespace kube-system: this target applies into namespace valve-test/,
    );
    const [deployment] = rendered('1');
    const second = structuredClone(deployment!) as { metadata: { name: string } };
    second.metadata.name = 'hello-worker';
    await assert.rejects(
      target.applyManifests(KEY, [deployment!, second], {
        rollout: { ...blueGreen, strategy: 'canary' },
      }),
      (error: ValveError) =>
        error.code === 'INPUT_INVALID' && /exactly one Deployment/.test(error.message),
    );
    assert.deepEqual(patches(standin.calls), []);
  });

  it("takes the rollout from the Deployment's valve.dev/rollout annotation", async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    const withAnnotation = (text: string) =>
      rendered('1').map((object) => {
        if (object.kind !== 'Deployment') return object;
        const copy = structuredClone(object) as { metadata: { annotations?: object } };
        copy.metadata.annotations = { 'valve.dev/rollout': text };
        return copy;
      });
    await assert.rejects(
      target.applyManifests(KEY, withAnnotation('{"strategy":')),
      (error: ValveError) =>
        error.code === 'DEPLOY_MANIFEST_INVALID' &&
        /valve\.dev\/rollout is not JSON/.test(error.message),
    );
    await target.applyManifests(KEY, withAnnotation(JSON.stringify(blueGreen)));
    assert.ok(standin.workloadObject('deployments', NS, 'hello-blue'));
    assert.equal(standin.workloadObject('deployments', NS, 'hello'), null);
    assert.equal(
      selectorOf(standin.workloadObject('services', NS, 'hello'))['valve.dev/slot'],
      'blue',
    );
  });

  it('resumes a watch the server ended from the last resourceVersion it saw', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1'));
    const seen = standin.workloadObject('deployments', NS, NAME)!.metadata.resourceVersion!;
    const watches = () => standin.calls.filter((c) => c.path === DEPLOYMENTS && c.query.watch);
    const before = watches().length;
    standin.endWatches();
    await until(() => watches().length > before, 'a new watch');
    assert.deepEqual(watches().at(-1)!.query.resourceVersion, [seen]);
    // Changes after the reconnect arrive through it.
    standin.failRollout(NS, NAME);
    await until(async () => (await target.status(KEY)).health === 'degraded', 'degraded');
  });

  it('falls back to listing when the API refuses watches', async (t) => {
    const { standin, target } = await setup(t);
    standin.refuseWatches = true;
    const applying = target.apply(spec('1'));
    await until(() => standin.workloadObject('deployments', NS, NAME), 'the Deployment');
    standin.completeRollout(NS, NAME);
    assert.equal((await applying).health, 'healthy');
    const watchCall = standin.calls.find((c) => c.path === DEPLOYMENTS && c.query.watch);
    assert.ok(watchCall, 'a watch was tried');
    const polls = standin.calls.filter(
      (c) => c.path === DEPLOYMENTS && c.method === 'GET' && !c.query.watch,
    );
    assert.ok(polls.length >= 2, `listed again after the refusal (${polls.length} lists)`);
  });

  it('blue-green: switches the Service selector only after the new Deployment is available', async (t) => {
    const { standin, target } = await setup(t);
    const green = `${NAME}-green`;
    const blue = `${NAME}-blue`;

    // First rollout: nothing serves; the Service is created once blue is available.
    const first = target.apply(spec('1', { rollout: blueGreen }));
    await until(() => standin.workloadObject('deployments', NS, blue), 'blue');
    assert.equal(standin.workloadObject('services', NS, NAME), null);
    standin.completeRollout(NS, blue);
    await first;
    assert.deepEqual(selectorOf(standin.workloadObject('services', NS, NAME)), {
      'app.kubernetes.io/instance': NAME,
      'valve.dev/slot': 'blue',
    });

    // Second: green starts beside blue; the Service keeps selecting blue until green is available.
    const second = target.apply(spec('2', { rollout: blueGreen }));
    await until(() => standin.workloadObject('deployments', NS, green), 'green');
    const greenApplied = standin.calls.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(
      selectorOf(standin.workloadObject('services', NS, NAME))['valve.dev/slot'],
      'blue',
    );
    assert.ok(
      !patches(standin.calls.slice(greenApplied)).some((c) => c.path === `${SERVICES}/${NAME}`),
      'no Service change before green is available',
    );
    const available = standin.calls.length;
    standin.completeRollout(NS, green);
    const status = await second;
    const switched = standin.calls.findIndex(
      (c, i) => i >= available && c.method === 'PATCH' && c.path === `${SERVICES}/${NAME}`,
    );
    assert.ok(switched >= available, 'the Service was switched after green was available');
    assert.equal(standin.calls[switched]!.contentType, 'application/apply-patch+yaml');
    assert.equal(
      selectorOf(standin.workloadObject('services', NS, NAME))['valve.dev/slot'],
      'green',
    );
    // Blue is scaled to zero (kept for the next rollout), the preview Service is gone.
    const scale = standin.calls.find(
      (c) =>
        c.method === 'PATCH' &&
        c.path === `${DEPLOYMENTS}/${blue}` &&
        c.contentType !== 'application/apply-patch+yaml',
    );
    assert.equal(scale?.contentType, 'application/merge-patch+json');
    assert.equal(replicasOf(standin.workloadObject('deployments', NS, blue)), 0);
    assert.ok(
      standin.calls.some((c) => c.method === 'PATCH' && c.path === `${SERVICES}/${NAME}-preview`),
      'a preview Service was opened',
    );
    assert.equal(standin.workloadObject('services', NS, `${NAME}-preview`), null);
    assert.equal(status.health, 'healthy');
    assert.equal(status.image, digest('2'));
    assert.equal(status.rollout?.phase, 'promoted');

    // Third, failing: blue gets the new version and never becomes available; green keeps serving.
    const third = target.apply(spec('3', { rollout: blueGreen }));
    await until(
      () => imageOf(standin.workloadObject('deployments', NS, blue)).endsWith(digest('3')),
      'blue with version 3',
    );
    standin.failRollout(NS, blue);
    await assert.rejects(third, (error: ValveError) => error.code === 'DEPLOY_ROLLOUT_FAILED');
    assert.equal(
      selectorOf(standin.workloadObject('services', NS, NAME))['valve.dev/slot'],
      'green',
    );
    assert.equal(replicasOf(standin.workloadObject('deployments', NS, blue)), 0);
    const after = await target.status(KEY);
    assert.equal(after.image, digest('2'));
    assert.equal(after.health, 'degraded');
    assert.equal(after.rollout?.phase, 'failed');
  });

  it('canary: scales a canary beside the stable Deployment by replica ratio, then promotes', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1', { replicas: 4 }));
    const canary: RolloutSpec = {
      strategy: 'canary',
      steps: [
        { weight: 25, pauseSeconds: 0 },
        { weight: 50, pauseSeconds: 0 },
      ],
      analysis,
      autoPromote: true,
    };
    const mark = standin.calls.length;
    const status = await target.apply(spec('2', { replicas: 4, rollout: canary }));
    const calls = standin.calls.slice(mark);
    const canaryApplies = patches(calls).filter((c) => c.path === `${DEPLOYMENTS}/${NAME}-canary`);
    assert.deepEqual(
      canaryApplies.map((c) => replicasOf(c.body)),
      [1, 2],
    );
    for (const call of canaryApplies) {
      const body = call.body as {
        spec: { template: { metadata: { labels: Record<string, string> } } };
      };
      // Its pods carry the labels the Service selects, so they share its traffic.
      assert.equal(body.spec.template.metadata.labels['app.kubernetes.io/instance'], NAME);
      assert.equal(body.spec.template.metadata.labels['valve.dev/slot'], 'canary');
    }
    const stableScales = patches(calls).filter(
      (c) =>
        c.path === `${DEPLOYMENTS}/${NAME}` && c.contentType === 'application/merge-patch+json',
    );
    // 1 canary beside 3 stable = 25%; 2 beside 2 = 50%.
    assert.deepEqual(
      stableScales.map((c) => replicasOf(c.body)),
      [3, 2],
    );
    const promoted = patches(calls).findLast(
      (c) =>
        c.path === `${DEPLOYMENTS}/${NAME}` && c.contentType === 'application/apply-patch+yaml',
    );
    assert.equal(replicasOf(promoted!.body), 4);
    assert.ok(imageOf(promoted!.body).endsWith(digest('2')));
    assert.deepEqual(
      deletes(calls).map((c) => c.path),
      [`${DEPLOYMENTS}/${NAME}-canary`],
    );
    assert.equal(standin.workloadObject('deployments', NS, `${NAME}-canary`), null);
    assert.deepEqual(selectorOf(standin.workloadObject('services', NS, NAME)), {
      'app.kubernetes.io/instance': NAME,
    });
    assert.equal(status.image, digest('2'));
    assert.equal(status.desiredReplicas, 4);
    assert.equal(status.rollout?.phase, 'promoted');
  });

  it('reports drift from the applied manifests and from other managers, and repairs it', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1'));
    standin.editObject('deployments', NS, NAME, { spec: { replicas: 5 } });
    let status = await target.status(KEY, { verify: true });
    assert.deepEqual(status.drift, [
      `Deployment/${NAME}: spec.replicas differs from the applied manifest (changed by kubectl-edit)`,
    ]);
    await target.repair(KEY);
    assert.equal(replicasOf(standin.workloadObject('deployments', NS, NAME)), 2);
    status = await target.status(KEY, { verify: true });
    assert.deepEqual(status.drift, []);

    // A fresh target (a restarted server) still sees other managers' changes in managedFields.
    const restarted = new KubernetesTarget({
      server: standin.url,
      token: standin.token,
      insecureSkipTLSVerify: true,
      namespace: NS,
      pollMs: 50,
    });
    t.after(() => restarted.close());
    await restarted.recover();
    standin.editObject(
      'services',
      NS,
      NAME,
      { metadata: { labels: { team: 'x' } } },
      'kubectl-label',
    );
    status = await restarted.status(KEY, { verify: true });
    assert.deepEqual(status.drift, [
      `Service/${NAME}: metadata.labels.team changed by kubectl-label`,
    ]);
  });

  it('logs: the tail of each pod from pods/log', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.apply(spec('1'));
    const pods = standin
      .listPods()
      .map((p) => p.metadata.name)
      .sort();
    assert.equal(pods.length, 2);
    for (const pod of pods) standin.setPodLog(NS, pod, `one ${pod}\ntwo ${pod}\nthree ${pod}\n`);
    const text = await target.logs(KEY, { tailLines: 2 });
    assert.equal(
      text,
      pods
        .map(
          (pod) =>
            `==> ${pod} (ready, restarts 0, registry.example/team-a/hello@${digest('1')}) <==\ntwo ${pod}\nthree ${pod}`,
        )
        .join('\n\n') + '\n',
    );
    const logCalls = standin.calls.filter((c) => c.path.endsWith('/log'));
    assert.deepEqual(
      logCalls.map((c) => [c.path, c.query.tailLines, c.query.container]),
      pods.map((pod) => [`/api/v1/namespaces/${NS}/pods/${pod}/log`, ['2'], ['app']]),
    );
  });

  it('delete removes every object of the inventory and nothing else; recover and close start and stop the watch', async (t) => {
    const { standin, target } = await setup(t);
    standin.autoCompleteRollouts = true;
    await target.applyManifests(KEY, rendered('1', { ingress: true, pdb: true }));
    await target.applyManifests('team-a/other/dev', [
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'other' }, data: {} },
    ]);
    const mark = standin.calls.length;
    await target.delete(KEY);
    assert.deepEqual(
      deletes(standin.calls.slice(mark))
        .map((c) => c.path.split('/').slice(-2).join('/'))
        .sort(),
      [
        'configmaps/hello-files',
        'deployments/hello',
        'ingresses/hello',
        'poddisruptionbudgets/hello',
        'services/hello',
      ],
    );
    assert.equal((await target.status(KEY)).health, 'missing');
    assert.ok(standin.workloadObject('configmaps', NS, 'other'));
    await target.delete('team-b/unknown/dev');

    const later = new KubernetesTarget({
      server: standin.url,
      token: standin.token,
      insecureSkipTLSVerify: true,
      namespace: NS,
    });
    const open = standin.openWatches().length;
    await later.recover();
    await until(() => standin.openWatches().length === open + 1, 'the recovered watch');
    await later.close();
    await until(() => standin.openWatches().length === open, 'the watch closed');
  });
});
