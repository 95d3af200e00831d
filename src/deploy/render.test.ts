import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as k8s from '@kubernetes/client-node';
import { parse } from 'yaml';
import { APP_SPEC_FILE, parseAppSpec, type AppSpec } from './appspec.js';
import {
  RENDERED_FILES,
  canonicalJson,
  renderEnvironment,
  renderEnvironmentObjects,
  type RenderInput,
} from './render.js';

const digest = `sha256:${'b'.repeat(64)}`;
const image = `127.0.0.1:7080/dev/hello@${digest}`;
const template = readFileSync(
  new URL('../apps/templates/node-http/valve.yaml', import.meta.url),
  'utf8',
).replaceAll('{{app}}', 'hello');
/** The full example of docs/app-spec.md. */
const documentedSpec = /```yaml\n(apiVersion: score\.dev[\s\S]*?)```/.exec(
  readFileSync(new URL('../../docs/app-spec.md', import.meta.url), 'utf8'),
)![1]!;
const documented = () =>
  parseAppSpec(documentedSpec, APP_SPEC_FILE, { readSource: () => 'banner of ${metadata.name}\n' });
const input = (spec: AppSpec, environment: string): RenderInput => ({
  spec,
  app: 'hello',
  team: 'dev',
  environment,
  image,
  sourceCommit: 'c0ffee',
});

/**
 * Checks every field name against the Kubernetes API's own models (the OpenAPI-generated
 * types of @kubernetes/client-node), so a misspelt or misplaced field fails here and not at
 * `kubectl apply`.
 */
function unknownFields(value: unknown, type: string, path: string): string[] {
  const inner = /^Array<(.+)>$/.exec(type) ?? /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (inner) {
    const items = Array.isArray(value) ? value.entries() : Object.entries(value as object);
    if (type.startsWith('Array') !== Array.isArray(value)) return [`${path}: expected ${type}`];
    return [...items].flatMap(([k, v]) => unknownFields(v, inner[1]!, `${path}.${k}`));
  }
  const primitive: Record<string, (v: unknown) => boolean> = {
    string: (v) => typeof v === 'string',
    number: (v) => typeof v === 'number',
    boolean: (v) => typeof v === 'boolean',
    IntOrString: (v) => typeof v === 'number' || typeof v === 'string',
  };
  if (primitive[type]) return primitive[type](value) ? [] : [`${path}: expected ${type}`];
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => unknown }>)[type];
  assert.ok(model?.getAttributeTypeMap, `no Kubernetes model ${type}`);
  const attributes = model.getAttributeTypeMap() as { baseName: string; type: string }[];
  return Object.entries(value as object).flatMap(([key, v]) => {
    const attribute = attributes.find((a) => a.baseName === key);
    return attribute ? unknownFields(v, attribute.type, `${path}.${key}`) : [`${path}.${key}`];
  });
}
const models: Record<string, string> = {
  Deployment: 'V1Deployment',
  Service: 'V1Service',
  ConfigMap: 'V1ConfigMap',
  Ingress: 'V1Ingress',
  HorizontalPodAutoscaler: 'V2HorizontalPodAutoscaler',
  PodDisruptionBudget: 'V1PodDisruptionBudget',
};

test('the template renders a Deployment, a Service and an Ingress', () => {
  const files = renderEnvironment(input(parseAppSpec(template), 'dev'));
  assert.deepEqual(Object.keys(files), ['deployment.yaml', 'service.yaml', 'ingress.yaml']);
  const deployment = parse(files['deployment.yaml']!);
  assert.equal(deployment.spec.replicas, 1);
  assert.equal(deployment.spec.template.spec.containers[0].image, image);
  assert.deepEqual(deployment.metadata.annotations, {
    'valve.dev/rollout':
      '{"analysis":{"intervalSeconds":5,"maxErrorRate":0.05,"maxFailedChecks":2,"minRequests":20},"autoPromote":true,"steps":[],"strategy":"rolling"}',
    'valve.dev/source-commit': 'c0ffee',
    'valve.dev/sync': '{"automated":true,"prune":true,"selfHeal":true}',
    'valve.dev/target': 'local',
  });
  assert.equal(parse(files['ingress.yaml']!).spec.rules[0].host, 'hello-dev.dev.valve.local');
  assert.doesNotMatch(Object.values(files).join(''), /[&*]a\d/, 'no YAML anchors or aliases');
});

test('every rendered object uses only fields of the Kubernetes API, with the labels', () => {
  assert.deepEqual(
    unknownFields(
      { spec: { replica: 1, template: { spec: { containers: [{ envs: [] }] } } } },
      'V1Deployment',
      'd',
    ),
    ['d.spec.replica', 'd.spec.template.spec.containers.0.envs'],
    'the check itself finds misspelt fields',
  );
  const spec = documented();
  for (const environment of Object.keys(spec.environments)) {
    const objects = renderEnvironmentObjects(input(spec, environment));
    for (const [file, object] of Object.entries(objects)) {
      const kind = object.kind as string;
      assert.deepEqual(unknownFields(object, models[kind]!, file), [], `${environment}/${file}`);
      assert.deepEqual((object.metadata as { labels: object }).labels, {
        'app.kubernetes.io/name': 'hello',
        'app.kubernetes.io/instance': `hello-${environment}`,
        'app.kubernetes.io/managed-by': 'valve',
        'valve.dev/team': 'dev',
        'valve.dev/environment': environment,
        'valve.dev/inventory': `dev.hello.${environment}`,
      });
      assert.ok(RENDERED_FILES.includes(file as (typeof RENDERED_FILES)[number]));
    }
  }
});

test('files, secrets, resources, autoscaling, PDB and rollout land where Kubernetes reads them', () => {
  const spec = documented();
  const prod = renderEnvironmentObjects(input(spec, 'prod'));
  assert.deepEqual(Object.keys(prod).sort(), [...RENDERED_FILES].sort());
  const deployment = prod['deployment.yaml'] as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count');
  const container = deployment.spec.template.spec.containers[0];
  assert.deepEqual(container.env, [
    { name: 'GREETING', value: 'Hello from hello' },
    {
      name: 'DATABASE_PASSWORD',
      valueFrom: { secretKeyRef: { name: 'hello-secrets', key: 'DATABASE_PASSWORD' } },
    },
  ]);
  assert.deepEqual(container.resources, {
    limits: { cpu: '1', memory: '256Mi' },
    requests: { cpu: '100m', memory: '64Mi' },
  });
  assert.deepEqual(container.volumeMounts, [
    { name: 'files', mountPath: '/etc/hello/banner.txt', subPath: 'banner.txt', readOnly: true },
    { name: 'files', mountPath: '/etc/hello/config.json', subPath: 'config.json', readOnly: true },
  ]);
  assert.deepEqual(deployment.spec.template.spec.volumes, [
    {
      name: 'files',
      configMap: {
        name: 'hello-files',
        items: [
          { key: 'banner.txt', path: 'banner.txt' },
          { key: 'config.json', path: 'config.json', mode: 0o644 },
        ],
      },
    },
  ]);
  assert.match(
    deployment.spec.template.metadata.annotations['valve.dev/files-checksum'],
    /^[a-f0-9]{64}$/,
  );
  assert.deepEqual(JSON.parse(deployment.metadata.annotations['valve.dev/rollout']), {
    strategy: 'canary',
    steps: [
      { weight: 10, pauseSeconds: 60 },
      { weight: 50, pauseSeconds: 60 },
    ],
    analysis: { maxErrorRate: 0.01, minRequests: 50, maxFailedChecks: 2, intervalSeconds: 5 },
    autoPromote: true,
  });
  assert.equal(deployment.metadata.annotations['valve.dev/target'], 'kubernetes');
  assert.equal(
    deployment.metadata.annotations['valve.dev/sync'],
    '{"automated":true,"prune":false,"selfHeal":true}',
  );
  assert.deepEqual((prod['configmap.yaml'] as { data: object }).data, {
    'banner.txt': 'banner of ${metadata.name}\n', // noExpand
    'config.json': '{ "name": "hello" }\n',
  });
  assert.deepEqual((prod['hpa.yaml'] as { spec: object }).spec, {
    scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'hello' },
    minReplicas: 2,
    maxReplicas: 10,
    metrics: [
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
      },
    ],
  });
  assert.deepEqual((prod['pdb.yaml'] as { spec: object }).spec, {
    maxUnavailable: 1,
    selector: {
      matchLabels: {
        'app.kubernetes.io/name': 'hello',
        'app.kubernetes.io/instance': 'hello-prod',
      },
    },
  });
  assert.equal(
    (prod['ingress.yaml'] as { spec: { rules: { host: string }[] } }).spec.rules[0]!.host,
    'hello.example.com',
  );
  const text = Object.values(renderEnvironment(input(spec, 'prod'))).join('\n');
  assert.doesNotMatch(text, /kind: Secret/, 'only the reference to the secret is committed');

  const dev = renderEnvironmentObjects(input(spec, 'dev'));
  assert.deepEqual(Object.keys(dev).sort(), [
    'configmap.yaml',
    'deployment.yaml',
    'ingress.yaml',
    'service.yaml',
  ]);
  assert.equal((dev['deployment.yaml'] as { spec: { replicas: number } }).spec.replicas, 1);
  assert.ok(renderEnvironmentObjects(input(spec, 'stage'))['pdb.yaml'], 'two replicas, a PDB');
});

test('rendering is deterministic: the order of the spec does not change the bytes', () => {
  const spec = `${template.replace(
    '      GREETING: Hello',
    '      GREETING: Hello\n      A_FIRST: "1"\n      Z_LAST: "2"',
  )}    variables:\n      M_MIDDLE: m\n`;
  const reordered = spec.replace(
    '      GREETING: Hello\n      A_FIRST: "1"\n      Z_LAST: "2"',
    '      Z_LAST: "2"\n      GREETING: Hello\n      A_FIRST: "1"',
  );
  const first = renderEnvironment(input(parseAppSpec(spec), 'dev'));
  assert.deepEqual(renderEnvironment(input(parseAppSpec(spec), 'dev')), first);
  assert.deepEqual(renderEnvironment(input(parseAppSpec(reordered), 'dev')), first);
  const env = parse(first['deployment.yaml']!).spec.template.spec.containers[0].env;
  assert.deepEqual(
    env.map((e: { name: string }) => e.name),
    ['A_FIRST', 'GREETING', 'M_MIDDLE', 'Z_LAST'],
  );
});

test('files whose names collide get their whole path as key', () => {
  const spec = parseAppSpec(
    template.replace(
      '    readinessProbe:',
      '    files:\n      /etc/a/app.conf: { content: a }\n      /etc/b/app.conf: { content: b }\n      /srv/other.txt: { content: c }\n    readinessProbe:',
    ),
  );
  const configMap = renderEnvironmentObjects(input(spec, 'dev'))['configmap.yaml'] as {
    data: Record<string, string>;
  };
  assert.deepEqual(configMap.data, {
    'etc_a_app.conf': 'a',
    'etc_b_app.conf': 'b',
    'other.txt': 'c',
  });
});

test('a source file that was not loaded, or a label too long, is refused', () => {
  const spec = parseAppSpec(
    template.replace(
      '    readinessProbe:',
      '    files:\n      /etc/x: { source: x }\n    readinessProbe:',
    ),
  );
  assert.throws(
    () => renderEnvironment(input(spec, 'dev')),
    /containers\.web\.files\.\/etc\/x\.source: x was not read/,
  );
  assert.throws(
    () =>
      renderEnvironment({
        ...input(parseAppSpec(template), 'dev'),
        team: 'a'.repeat(39),
        app: 'b'.repeat(30),
      }),
    /valve\.dev\/inventory .* is longer than the 63 characters/,
  );
});

test('canonical JSON sorts keys and escapes as Go does', () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: '<&>', c: [2, { f: 1, e: 0 }] } }),
    '{"a":{"c":[2,{"e":0,"f":1}],"d":"\\u003c\\u0026\\u003e"},"b":1}',
  );
});
