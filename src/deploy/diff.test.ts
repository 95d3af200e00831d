import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diffResources, liveResources, resourceHealth, type ManifestResource } from './diff.js';
import type { WorkloadStatus } from './targets/target.js';

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const image = (c: string) => `127.0.0.1:7080/dev/hello@${digest(c)}`;

function deployment(tag: string, replicas = 1, env: Record<string, string> = {}): ManifestResource {
  return {
    file: 'envs/dev/deployment.yaml',
    line: 1,
    kind: 'Deployment',
    name: 'hello',
    object: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'hello', annotations: { 'valve.dev/source-commit': 'abc' } },
      spec: {
        replicas,
        template: {
          spec: {
            containers: [
              {
                name: 'web',
                image: image(tag),
                env: Object.entries(env).map(([name, value]) => ({ name, value })),
              },
            ],
          },
        },
      },
    },
  };
}
const service: ManifestResource = {
  file: 'envs/dev/service.yaml',
  line: 1,
  kind: 'Service',
  name: 'hello',
  object: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'hello' }, spec: { ports: [] } },
};

function status(over: Partial<WorkloadStatus> = {}): WorkloadStatus {
  return {
    key: 'dev/hello/dev',
    health: 'healthy',
    url: 'http://127.0.0.1:17000',
    image: digest('a'),
    imageReference: image('a'),
    desiredReplicas: 1,
    readyReplicas: 1,
    instances: [],
    message: null,
    drift: [],
    ...over,
  };
}

test('identical desired and live resources have no difference, whatever the key order', () => {
  const live = structuredClone(deployment('a'));
  live.object = Object.fromEntries(Object.entries(live.object).reverse());
  assert.deepEqual(diffResources([deployment('a'), service], [live, service]), []);
});

test('a changed image is one item with its field path, desired and live values', () => {
  const items = diffResources([deployment('b'), service], [deployment('a'), service]);
  assert.deepEqual(items, [
    {
      resource: 'Deployment/hello',
      path: 'spec.template.spec.containers[0].image',
      desired: image('b'),
      live: image('a'),
    },
  ]);
});

test('added and removed fields and array entries are reported with null on the missing side', () => {
  const items = diffResources(
    [deployment('a', 2, { GREETING: 'Hi', EXTRA: '1' })],
    [deployment('a', 1, { GREETING: 'Hello' })],
  );
  assert.deepEqual(
    items.map((i) => [i.path, i.desired, i.live]),
    [
      ['spec.replicas', 2, 1],
      ['spec.template.spec.containers[0].env[0].value', 'Hi', 'Hello'],
      ['spec.template.spec.containers[0].env[1]', { name: 'EXTRA', value: '1' }, null],
    ],
  );
});

test('a resource only desired is created; one only live is pruned', () => {
  const items = diffResources([deployment('a')], [deployment('a'), service]);
  assert.deepEqual(items, [
    { resource: 'Service/hello', path: '', desired: null, live: service.object, prune: true },
  ]);
  const created = diffResources([deployment('a'), service], []);
  assert.deepEqual(
    created.map((i) => [i.resource, i.path, i.live, i.prune]),
    [
      ['Deployment/hello', '', null, undefined],
      ['Service/hello', '', null, undefined],
    ],
  );
});

test('live resources are the applied manifests with the image and replicas the target reports', () => {
  const live = liveResources(
    [deployment('a'), service],
    status({ image: digest('c'), imageReference: image('c'), desiredReplicas: 3 }),
  );
  const items = diffResources([deployment('a'), service], live);
  assert.deepEqual(
    items.map((i) => [i.path, i.desired, i.live]),
    [
      ['spec.replicas', 1, 3],
      ['spec.template.spec.containers[0].image', image('a'), image('c')],
    ],
  );
  // The baseline is not changed by the overlay.
  assert.equal(
    (deployment('a').object.spec as { replicas: number }).replicas,
    1,
    'a fresh baseline is untouched',
  );
});

test('nothing running means no live resources at all', () => {
  const live = liveResources(
    [deployment('a'), service],
    status({ health: 'missing', image: null, imageReference: null }),
  );
  assert.deepEqual(live, []);
});

test('health per resource: the Deployment has the workload health, the Service its address', () => {
  assert.equal(
    resourceHealth({ kind: 'Deployment' }, status({ health: 'degraded' }), true),
    'degraded',
  );
  assert.equal(resourceHealth({ kind: 'Service' }, status(), true), 'healthy');
  assert.equal(
    resourceHealth({ kind: 'Service' }, status({ health: 'missing', url: null }), true),
    'missing',
  );
  assert.equal(resourceHealth({ kind: 'ConfigMap' }, status(), false), 'missing');
});
