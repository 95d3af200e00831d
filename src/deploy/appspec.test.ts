import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { FileValidationError } from '../formats/yaml.js';
import { containerPort, parseAppSpec } from './appspec.js';
import { readEnvironmentManifests } from './manifests.js';
import { renderEnvironment } from './render.js';

const template = readFileSync(
  new URL('../apps/templates/node-http/valve.yaml', import.meta.url),
  'utf8',
).replaceAll('{{app}}', 'hello');
const digest = `sha256:${'a'.repeat(64)}`;

test('the template app spec parses', () => {
  const spec = parseAppSpec(template);
  assert.deepEqual(Object.keys(spec.environments), ['dev']);
  assert.equal(containerPort(spec), 8080);
});

test('a broken app spec names the file, line and field', () => {
  const broken = template.replace('    replicas: 1', '    replicas: "one"');
  assert.throws(
    () => parseAppSpec(broken),
    (error: unknown) =>
      error instanceof FileValidationError &&
      /^valve\.yaml:\d+:15: environments\.dev\.replicas: /.test(error.message),
  );
  assert.throws(
    () => parseAppSpec(template.replace('containers:', 'container:')),
    /valve\.yaml:\d+:1: container: /,
  );
});

test('rendered manifests read back into the same workload', () => {
  const spec = parseAppSpec(template);
  const files = renderEnvironment({
    spec,
    app: 'hello',
    team: 'dev',
    environment: 'dev',
    image: `127.0.0.1:7080/dev/hello@${digest}`,
    sourceCommit: 'abc',
  });
  const read = readEnvironmentManifests(
    Object.entries(files).map(([path, text]) => ({ path: `envs/dev/${path}`, text })),
  );
  assert.equal(read.sourceCommit, 'abc');
  assert.deepEqual(read.workloads[0], {
    image: { reference: `127.0.0.1:7080/dev/hello@${digest}`, repo: 'dev/hello', digest },
    command: ['node'],
    args: ['server.js'],
    env: { GREETING: 'Hello' },
    port: 8080,
    replicas: 1,
    readiness: { path: '/healthz' },
  });
});

test('a hand-edited manifest without a digest is rejected with file and line', () => {
  const spec = parseAppSpec(template);
  const files = renderEnvironment({
    spec,
    app: 'hello',
    team: 'dev',
    environment: 'dev',
    image: `dev/hello@${digest}`,
    sourceCommit: 'abc',
  });
  const text = files['deployment.yaml']!.replace(`dev/hello@${digest}`, 'dev/hello:latest');
  assert.throws(
    () => readEnvironmentManifests([{ path: 'envs/dev/deployment.yaml', text }]),
    /envs\/dev\/deployment\.yaml:\d+:\d+: spec\.template\.spec\.containers\[0\]\.image: expected an image pinned by digest/,
  );
});
