import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LiveObject } from './client.js';
import { differences, driftOf, withoutAutoscaledReplicas } from './drift.js';
import { inventoryOf, resourceNameOf, type Manifest } from './inventory.js';
import { stableReplicasFor } from './rollout-backends.js';

describe('kubernetes target: names, drift, replica ratio', () => {
  it('derives a label value and a Service name from the key', () => {
    assert.equal(inventoryOf('team-a/hello/dev'), 'team-a.hello.dev');
    assert.equal(resourceNameOf('team-a/hello/dev'), 'team-a-hello-dev');
    assert.equal(resourceNameOf('9team/App_x/dev'), 'w-9team-app-x-dev');
    const long = `team/${'a'.repeat(80)}/production`;
    assert.ok(inventoryOf(long).length <= 63);
    assert.match(inventoryOf(long), /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/);
    assert.ok(resourceNameOf(long).length <= 55);
    assert.notEqual(resourceNameOf(long), resourceNameOf(`${long}2`));
  });

  it('compares only the fields that were applied', () => {
    const desired = { spec: { replicas: 2, ports: [{ port: 80, targetPort: 8080 }], empty: {} } };
    const live = {
      spec: { replicas: 2, ports: [{ port: 80, targetPort: '8080', protocol: 'TCP' }] },
      status: {},
    };
    assert.deepEqual(differences(desired, live), []);
    assert.deepEqual(differences(desired, { spec: { replicas: 3, ports: [] } }), [
      'spec.replicas',
      'spec.ports',
    ]);
  });

  it('leaves an autoscaled Deployment’s replicas to the autoscaler and ignores subresource updates', () => {
    const deployment: Manifest = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'hello' },
      spec: { replicas: 2 },
    };
    const hpa: Manifest = {
      apiVersion: 'autoscaling/v2',
      kind: 'HorizontalPodAutoscaler',
      metadata: { name: 'hello' },
      spec: { scaleTargetRef: { kind: 'Deployment', name: 'hello' } },
    };
    const live: LiveObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: {
        name: 'hello',
        managedFields: [
          {
            manager: 'kube-controller-manager',
            operation: 'Update',
            subresource: 'scale',
            fieldsV1: { 'f:spec': { 'f:replicas': {} } },
          },
        ],
      },
      spec: { replicas: 4 },
    };
    assert.deepEqual(driftOf([deployment], [live], 'valve'), [
      'Deployment/hello: spec.replicas differs from the applied manifest',
    ]);
    assert.deepEqual(driftOf(withoutAutoscaledReplicas([deployment, hpa]), [live], 'valve'), [
      'HorizontalPodAutoscaler/hello was deleted',
    ]);
  });

  it('approximates a canary weight with the stable replicas', () => {
    assert.equal(stableReplicasFor(1, 25, 4), 3);
    assert.equal(stableReplicasFor(2, 50, 4), 2);
    assert.equal(stableReplicasFor(1, 10, 1), 1); // coarse: 1 beside 1 is 50%
    assert.equal(stableReplicasFor(1, 10, 20), 9);
    assert.equal(stableReplicasFor(3, 100, 3), 1);
  });
});
