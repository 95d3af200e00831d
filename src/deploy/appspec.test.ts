import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileValidationError } from '../formats/yaml.js';
import {
  APP_SPEC_FILE,
  containerPort,
  environmentSettings,
  loadAppSpec,
  parseAppSpec,
  parseAppSpecWithSources,
  plainVariables,
  resolveVariable,
} from './appspec.js';
import { readEnvironmentManifests } from './manifests.js';
import { renderEnvironment } from './render.js';
import { defaultRollout } from './rollout-spec.js';

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

/** The full example of docs/app-spec.md: the docs cannot show a spec that does not parse. */
const documentedSpec = /```yaml\n(apiVersion: score\.dev[\s\S]*?)```/.exec(
  readFileSync(new URL('../../docs/app-spec.md', import.meta.url), 'utf8'),
)![1]!;

test('the documented example parses, with every default filled in', () => {
  const spec = parseAppSpec(documentedSpec, APP_SPEC_FILE, {
    readSource: (path) => (path === 'banner.txt' ? 'Hello ${metadata.name}\n' : null),
  });
  const web = spec.containers.web!;
  assert.equal(web.files!['/etc/hello/banner.txt']!.content, 'Hello ${metadata.name}\n');
  assert.deepEqual(web.resources, {
    requests: { cpu: '100m', memory: '64Mi' },
    limits: { cpu: '1', memory: '256Mi' },
  });

  const dev = environmentSettings(spec, 'dev');
  assert.equal(dev.target, 'local');
  assert.equal(dev.replicas, 1);
  assert.equal(dev.autoscaling, null);
  assert.deepEqual(dev.rollout, defaultRollout);
  assert.deepEqual(dev.sync, { automated: true, selfHeal: true, prune: true });
  assert.equal(dev.variables.GREETING, 'Hi');

  const stage = environmentSettings(spec, 'stage');
  assert.equal(stage.replicas, 2);
  assert.deepEqual(stage.rollout, {
    strategy: 'blue-green',
    steps: [{ weight: 100, pauseSeconds: 30 }],
    analysis: { maxErrorRate: 0.05, minRequests: 20, maxFailedChecks: 2, intervalSeconds: 5 },
    autoPromote: false,
  });

  const prod = environmentSettings(spec, 'prod');
  assert.equal(prod.target, 'kubernetes');
  assert.deepEqual(prod.autoscaling, {
    minReplicas: 2,
    maxReplicas: 10,
    targetCPUUtilizationPercentage: 70,
  });
  assert.equal(prod.replicas, 2, 'targets that cannot scale run minReplicas');
  assert.deepEqual(prod.rollout.steps, [
    { weight: 10, pauseSeconds: 60 },
    { weight: 50, pauseSeconds: 60 },
  ]);
  assert.deepEqual(prod.rollout.analysis, {
    maxErrorRate: 0.01,
    minRequests: 50,
    maxFailedChecks: 2,
    intervalSeconds: 5,
  });
  assert.deepEqual(prod.sync, { automated: true, selfHeal: true, prune: false });
  assert.deepEqual(prod.ingress, { host: 'hello.example.com' });
  assert.deepEqual(prod.approval, { team: 'ops', timeoutMinutes: 60 });
});

test('the template keeps its defaults: local target, rolling, one replica', () => {
  const dev = environmentSettings(parseAppSpec(template), 'dev');
  assert.equal(dev.target, 'local');
  assert.equal(dev.replicas, 1);
  assert.equal(dev.rollout.strategy, 'rolling');
  assert.deepEqual(dev.rollout.steps, []);
});

test('placeholders: metadata expands, $$ escapes, a secret is a reference', () => {
  const metadata = { name: 'hello', team: { owner: 'ana' } };
  assert.deepEqual(resolveVariable('${metadata.name} by ${metadata.team.owner}', metadata), {
    value: 'hello by ana',
  });
  assert.deepEqual(resolveVariable('cost: $$5', metadata), { value: 'cost: $5' });
  const spec = parseAppSpec(documentedSpec);
  assert.deepEqual(
    plainVariables(spec),
    { GREETING: 'Hello from hello' },
    'what an image may carry',
  );
  assert.deepEqual(resolveVariable('${resources.secrets.DB_PASSWORD}', metadata), {
    secret: 'DB_PASSWORD',
  });
});

/** Parses `template` with `edit` applied and returns the one error message. */
function errorOf(edit: (text: string) => string): string {
  try {
    parseAppSpec(edit(template));
  } catch (error) {
    assert.ok(error instanceof FileValidationError, String(error));
    return error.message;
  }
  assert.fail('expected a validation error');
}
const withContainer = (extra: string) => (t: string) =>
  t.replace('    readinessProbe:', `${extra}    readinessProbe:`);

test('bad values name the file, line, column and field', () => {
  const cases: [string, (t: string) => string, RegExp][] = [
    [
      'memory in millis',
      withContainer('    resources:\n      limits:\n        memory: 256m\n'),
      /^valve\.yaml:15:17: containers\.web\.resources\.limits\.memory: expected bytes with a suffix such as Mi or Gi/,
    ],
    [
      'not a quantity',
      withContainer('    resources:\n      requests:\n        cpu: lots\n'),
      /^valve\.yaml:15:14: containers\.web\.resources\.requests\.cpu: expected a CPU quantity/,
    ],
    [
      'request above limit',
      withContainer('    resources:\n      requests: { cpu: "2" }\n      limits: { cpu: 500m }\n'),
      /^valve\.yaml:14:24: containers\.web\.resources\.requests\.cpu: expected at most the limit \(500m\)/,
    ],
    [
      'secret inside a longer value',
      (t) => t.replace('GREETING: Hello', 'GREETING: "x ${resources.secrets.TOKEN}"'),
      /^valve\.yaml:12:17: containers\.web\.variables\.GREETING: \$\{resources\.secrets\.TOKEN\}: a secret reference must be the whole value/,
    ],
    [
      'unknown placeholder',
      (t) => t.replace('GREETING: Hello', 'GREETING: "${resources.db.host}"'),
      /containers\.web\.variables\.GREETING: \$\{resources\.db\.host\}: expected \$\{metadata\.KEY\} or \$\{resources\.secrets\.NAME\}/,
    ],
    [
      'content and source',
      withContainer('    files:\n      /etc/a.txt: { content: a, source: a.txt }\n'),
      /^valve\.yaml:14:19: containers\.web\.files\.\/etc\/a\.txt: expected exactly one of content or source/,
    ],
    [
      'relative target',
      withContainer('    files:\n      etc/a.txt: { content: a }\n'),
      /^valve\.yaml:14:18: containers\.web\.files\.etc\/a\.txt: expected an absolute file path/,
    ],
    [
      'a secret in a file',
      withContainer('    files:\n      /etc/a.txt: { content: "${resources.secrets.X}" }\n'),
      /containers\.web\.files\.\/etc\/a\.txt\.content: \$\{resources\.secrets\.X\}: secrets cannot go into files/,
    ],
    [
      "Score's list form of files",
      withContainer('    files:\n      - target: /etc/a.txt\n        content: a\n'),
      /^valve\.yaml:14:7: containers\.web\.files: expected a map of target path/,
    ],
    [
      'an unquoted mode',
      withContainer('    files:\n      /etc/a.txt: { content: a, mode: 0644 }\n'),
      /containers\.web\.files\.\/etc\/a\.txt\.mode: expected an octal mode in quotes/,
    ],
    [
      'steps for a rolling update',
      (t) => `${t}    rollout: { steps: [{ weight: 10 }] }\n`,
      /^valve\.yaml:24:23: environments\.dev\.rollout\.steps: steps apply to strategies canary and blue-green, not rolling/,
    ],
    [
      'canary weights going down',
      (t) =>
        `${t}    rollout:\n      strategy: canary\n      steps: [{ weight: 50 }, { weight: 10 }]\n`,
      /^valve\.yaml:26:41: environments\.dev\.rollout\.steps\[1\]\.weight: expected a weight above the step before \(50\)/,
    ],
    [
      'an unknown strategy',
      (t) => `${t}    rollout: { strategy: big-bang }\n`,
      /environments\.dev\.rollout\.strategy: /,
    ],
    [
      'an unknown sync option',
      (t) => `${t}    sync: { autoSync: true }\n`,
      /^valve\.yaml:24:13: environments\.dev\.sync\.autoSync: /,
    ],
    [
      'a bad ingress host',
      (t) => `${t}    ingress: { host: "Not A Host" }\n`,
      /environments\.dev\.ingress\.host: expected a DNS name/,
    ],
    [
      'replicas while autoscaling',
      (t) =>
        withContainer('    resources: { requests: { cpu: 100m } }\n')(t).replace(
          'environments:',
          'autoscaling: { maxReplicas: 4 }\nenvironments:',
        ),
      /^valve\.yaml:25:15: environments\.dev\.replicas: not used while autoscaling is on/,
    ],
    [
      'autoscaling without a CPU request',
      (t) =>
        t
          .replace('environments:', 'autoscaling: { maxReplicas: 4 }\nenvironments:')
          .replace('    replicas: 1', '    autoscaling: { minReplicas: 2 }'),
      /containers\.web\.resources: expected requests\.cpu: autoscaling on CPU utilization \(environment dev\)/,
    ],
    [
      'maxReplicas below minReplicas',
      (t) =>
        t.replace(
          'environments:',
          'autoscaling: { minReplicas: 5, maxReplicas: 2 }\nenvironments:',
        ),
      /autoscaling\.maxReplicas: expected at least minReplicas/,
    ],
    [
      'two containers',
      (t) => t.replace('containers:\n', 'containers:\n  side:\n    image: busybox\n'),
      /^valve\.yaml:7:3: containers: expected exactly one container/,
    ],
    [
      'a bad target name',
      (t) => `${t}    target: My_Cluster\n`,
      /environments\.dev\.target: expected a DNS label/,
    ],
  ];
  for (const [what, edit, expected] of cases) assert.match(errorOf(edit), expected, what);
});

test('loadAppSpec reads sources inside the repo and refuses paths leaving it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'valve-appspec-'));
  try {
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config/app.json'), '{"a":1}\n');
    writeFileSync(join(tmpdir(), 'valve-appspec-outside.txt'), 'secret\n');
    const spec = (source: string) =>
      withContainer(`    files:\n      /etc/app.json: { source: ${source} }\n`)(template);
    writeFileSync(join(dir, APP_SPEC_FILE), spec('config/app.json'));
    assert.equal(loadAppSpec(dir).containers.web!.files!['/etc/app.json']!.content, '{"a":1}\n');
    for (const escape of ['../valve-appspec-outside.txt', '/etc/passwd', 'missing.txt']) {
      writeFileSync(join(dir, APP_SPEC_FILE), spec(escape));
      assert.throws(
        () => loadAppSpec(dir),
        /valve\.yaml:14:32: containers\.web\.files\.\/etc\/app\.json\.source: expected a file of the repository/,
        escape,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(tmpdir(), 'valve-appspec-outside.txt'), { force: true });
  }
});

test('sources can be read asynchronously, e.g. from a commit, and never outside the repo', async () => {
  const spec = (source: string) =>
    withContainer(`    files:\n      /etc/app.json: { source: ${source} }\n`)(template);
  const asked: string[] = [];
  const read = async (path: string) => {
    asked.push(path);
    return path === 'config/app.json' ? Buffer.from('{}') : null;
  };
  const loaded = await parseAppSpecWithSources(
    spec('./config/../config/app.json'),
    APP_SPEC_FILE,
    read,
  );
  assert.equal(loaded.containers.web!.files!['/etc/app.json']!.content, '{}');
  await assert.rejects(
    parseAppSpecWithSources(spec('../outside.json'), APP_SPEC_FILE, read),
    /valve\.yaml:14:32: containers\.web\.files\.\/etc\/app\.json\.source: expected a file of the repository/,
  );
  assert.deepEqual(asked, ['config/app.json'], 'a path leaving the repo is never read');
});

test('no containers is an error, not a crash; the docs quote a real error', () => {
  assert.match(
    errorOf((t) => t.replace(/containers:\n(.*\n)*?service:/, 'containers: {}\nservice:')),
    /^valve\.yaml:\d+:13: containers: expected exactly one container/,
  );
  const docs = readFileSync(new URL('../../docs/app-spec.md', import.meta.url), 'utf8');
  const quoted = /`(valve\.yaml:\d+:\d+: containers\.web\.resources\.limits\.memory: [^`]*)`/.exec(
    docs,
  )![1]!;
  assert.throws(
    () => parseAppSpec(documentedSpec.replace('memory: 256Mi', 'memory: 256m')),
    (error: unknown) => error instanceof FileValidationError && error.message === quoted,
  );
});
