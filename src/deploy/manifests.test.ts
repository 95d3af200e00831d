import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { FileValidationError } from '../formats/yaml.js';
import { APP_SPEC_FILE, parseAppSpec } from './appspec.js';
import { readDesiredEnvironment, readEnvironmentManifests } from './manifests.js';
import { renderEnvironment } from './render.js';
import { defaultRollout } from './rollout-spec.js';

const digest = `sha256:${'c'.repeat(64)}`;
const image = `127.0.0.1:7080/dev/hello@${digest}`;
const documentedSpec = /```yaml\n(apiVersion: score\.dev[\s\S]*?)```/.exec(
  readFileSync(new URL('../../docs/app-spec.md', import.meta.url), 'utf8'),
)![1]!;
const template = readFileSync(
  new URL('../apps/templates/node-http/valve.yaml', import.meta.url),
  'utf8',
).replaceAll('{{app}}', 'hello');

function rendered(spec: string, environment: string) {
  const files = renderEnvironment({
    spec: parseAppSpec(spec, APP_SPEC_FILE, { readSource: () => 'banner\n' }),
    app: 'hello',
    team: 'dev',
    environment,
    image,
    sourceCommit: 'c0ffee',
  });
  return Object.entries(files).map(([name, text]) => ({
    path: `envs/${environment}/${name}`,
    text,
  }));
}

test('an environment reads back into its resources and the workload', () => {
  const read = readDesiredEnvironment(rendered(documentedSpec, 'prod'), 'dev/hello/prod');
  assert.deepEqual(
    read.resources.map((r) => [r.file, r.line, r.kind, r.name, r.apiVersion]),
    [
      ['envs/prod/configmap.yaml', 1, 'ConfigMap', 'hello-files', 'v1'],
      ['envs/prod/deployment.yaml', 1, 'Deployment', 'hello', 'apps/v1'],
      ['envs/prod/hpa.yaml', 1, 'HorizontalPodAutoscaler', 'hello', 'autoscaling/v2'],
      ['envs/prod/ingress.yaml', 1, 'Ingress', 'hello', 'networking.k8s.io/v1'],
      ['envs/prod/pdb.yaml', 1, 'PodDisruptionBudget', 'hello', 'policy/v1'],
      ['envs/prod/service.yaml', 1, 'Service', 'hello', 'v1'],
    ],
  );
  assert.equal(read.sourceCommit, 'c0ffee');
  assert.deepEqual(read.workload, {
    key: 'dev/hello/prod',
    image: { reference: image, repo: 'dev/hello', digest },
    command: ['node'],
    args: ['server.js'],
    env: { GREETING: 'Hello from hello' },
    port: 8080,
    replicas: 2,
    readiness: { path: '/healthz' },
    rollout: {
      strategy: 'canary',
      steps: [
        { weight: 10, pauseSeconds: 60 },
        { weight: 50, pauseSeconds: 60 },
      ],
      analysis: { maxErrorRate: 0.01, minRequests: 50, maxFailedChecks: 2, intervalSeconds: 5 },
      autoPromote: true,
    },
    target: 'kubernetes',
    sync: { automated: true, selfHeal: true, prune: false },
    secretEnv: { DATABASE_PASSWORD: { secret: 'hello-secrets', key: 'DATABASE_PASSWORD' } },
    files: [
      { path: '/etc/hello/banner.txt', content: 'banner\n' },
      { path: '/etc/hello/config.json', content: '{ "name": "hello" }\n', mode: 0o644 },
    ],
    resources: { limits: { cpu: '1', memory: '256Mi' }, requests: { cpu: '100m', memory: '64Mi' } },
    liveness: { path: '/healthz' },
    autoscaling: { minReplicas: 2, maxReplicas: 10, targetCPUUtilizationPercentage: 70 },
  });
});

test('a plain Deployment without Valve annotations gets every default', () => {
  const deployment = rendered(template, 'dev')
    .find((f) => f.path.endsWith('deployment.yaml'))!
    .text.replace(/ {2}annotations:\n( {4}.*\n)+/, '');
  const { workload } = readDesiredEnvironment(
    [{ path: 'envs/dev/deployment.yaml', text: deployment }],
    'k',
  );
  assert.deepEqual(workload!.rollout, defaultRollout);
  assert.deepEqual(workload!.sync, { automated: true, selfHeal: true, prune: true });
  assert.equal(workload!.target, 'local');
  assert.deepEqual(workload!.files, []);
  assert.deepEqual(workload!.secretEnv, {});
});

test('an environment without a Deployment has no workload', () => {
  assert.deepEqual(readDesiredEnvironment([], 'k'), {
    resources: [],
    workload: null,
    sourceCommit: null,
  });
  assert.deepEqual(
    readEnvironmentManifests([{ path: 'envs/dev/empty.yaml', text: '# nothing\n' }]),
    {
      workloads: [],
      sourceCommit: null,
    },
  );
});

/** The error reading the template's dev environment with `edit` applied to one file. */
function errorOf(
  file: string,
  edit: (text: string) => string,
  extra: { path: string; text: string }[] = [],
) {
  const files = rendered(template, 'dev').map((f) =>
    f.path.endsWith(file) ? { ...f, text: edit(f.text) } : f,
  );
  try {
    readDesiredEnvironment([...files, ...extra], 'k');
  } catch (error) {
    assert.ok(error instanceof FileValidationError, String(error));
    return error.message;
  }
  assert.fail('expected a validation error');
}

test('hand edits are validated with file, line and field', () => {
  const cases: [
    string,
    string,
    (t: string) => string,
    RegExp,
    { path: string; text: string }[]?,
  ][] = [
    [
      'broken YAML',
      'service.yaml',
      (t) => t.replace('  ports:', '  ports: [oops'),
      /^envs\/dev\/service\.yaml:\d+:\d+: /,
    ],
    [
      'an unknown kind',
      'service.yaml',
      (t) => t.replace('kind: Service', 'kind: Servise'),
      /^envs\/dev\/service\.yaml:2:7: kind: expected one of Deployment, Service, ConfigMap/,
    ],
    [
      'a Secret',
      'service.yaml',
      (t) => `${t}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: hello-secrets\n`,
      /^envs\/dev\/service\.yaml:\d+:7: kind: Secrets are not kept in the deploy repo/,
    ],
    [
      'a wrong apiVersion',
      'ingress.yaml',
      (t) => t.replace('networking.k8s.io/v1', 'extensions/v1beta1'),
      /^envs\/dev\/ingress\.yaml:1:13: apiVersion: expected networking\.k8s\.io\/v1 for a Ingress/,
    ],
    [
      'a Deployment without an image',
      'deployment.yaml',
      (t) => t.replace(/ {10}image: .*\n/, ''),
      /^envs\/dev\/deployment\.yaml:\d+:\d+: spec\.template\.spec\.containers\[0\]\.image: /,
    ],
    [
      'an image by tag',
      'deployment.yaml',
      (t) => t.replace(`@${digest}`, ':latest'),
      /spec\.template\.spec\.containers\[0\]\.image: expected an image pinned by digest/,
    ],
    [
      'an annotation that is not JSON',
      'deployment.yaml',
      (t) => t.replace(/valve\.dev\/sync: .*/, "valve.dev/sync: '{automated: yes}'"),
      /^envs\/dev\/deployment\.yaml:15:21: metadata\.annotations\.valve\.dev\/sync: expected JSON/,
    ],
    [
      'a rollout annotation with a bad value',
      'deployment.yaml',
      (t) => t.replace('"strategy":"rolling"', '"strategy":"rolling","steps":[{"weight":500}]'),
      /^envs\/dev\/deployment\.yaml:13:24: metadata\.annotations\.valve\.dev\/rollout: steps\[0\]\.weight: /,
    ],
    [
      'a field Valve cannot run',
      'deployment.yaml',
      (t) =>
        t.replace(
          '              value: Hello',
          '              valueFrom:\n                fieldRef: { fieldPath: metadata.name }',
        ),
      /spec\.template\.spec\.containers\[0\]\.env\[0\]\.valueFrom: expected valueFrom\.secretKeyRef/,
    ],
    [
      'the same object twice',
      'service.yaml',
      (t) => `${t}---\n${t}`,
      /^envs\/dev\/service\.yaml:\d+:9: metadata\.name: a Service named hello is already in envs\/dev\/service\.yaml:1/,
    ],
    [
      'two Deployments',
      'deployment.yaml',
      (t) => `${t}---\n${t.replace('name: hello\n', 'name: hello2\n')}`,
      /kind: expected one Deployment per environment/,
    ],
    [
      'a selector the pods do not match',
      'deployment.yaml',
      (t) =>
        t.replace(
          '      app.kubernetes.io/instance: hello-dev\n  strategy',
          '      app.kubernetes.io/instance: other\n  strategy',
        ),
      /spec\.template\.metadata\.labels: expected app\.kubernetes\.io\/instance: other/,
    ],
    [
      'a ConfigMap volume without its ConfigMap',
      'deployment.yaml',
      (t) =>
        t.replace(
          '          readinessProbe:',
          '          volumeMounts:\n            - { name: files, mountPath: /etc/x, subPath: x }\n          readinessProbe:',
        ) + '      volumes:\n        - name: files\n          configMap: { name: gone }\n',
      /^envs\/dev\/deployment\.yaml:\d+:\d+: spec\.template\.spec\.volumes\[0\]\.configMap\.name: expected a ConfigMap gone in this environment/,
    ],
    [
      'an HPA for another Deployment',
      'service.yaml',
      (t) => t,
      /^envs\/dev\/hpa\.yaml:6:66: spec\.scaleTargetRef\.name: expected the Deployment's name, hello/,
      [
        {
          path: 'envs/dev/hpa.yaml',
          text: 'apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: hello\nspec:\n  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: other }\n  maxReplicas: 3\n',
        },
      ],
    ],
  ];
  for (const [what, file, edit, expected, extra] of cases)
    assert.match(errorOf(file, edit, extra), expected, what);
});

test('the older reader keeps its shape for callers not yet moved', () => {
  const read = readEnvironmentManifests(rendered(documentedSpec, 'dev'));
  assert.deepEqual(Object.keys(read.workloads[0]!).sort(), [
    'args',
    'command',
    'env',
    'image',
    'port',
    'readiness',
    'replicas',
  ]);
  assert.deepEqual(read.workloads[0]!.env, { GREETING: 'Hi' });
});
