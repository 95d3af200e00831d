/**
 * The CI engine through its public interfaces, with real runs on the local executor: a job
 * graph with needs, a matrix, outputs and if/always/failure; secrets that never reach stored or
 * streamed logs; a timeout that kills the whole process tree; a cache hit on the second run;
 * concurrency with cancel-in-progress; manual dispatch with inputs; an approval gate that only
 * the approving team can pass; re-running only the failed jobs; and a signed webhook from an
 * external repository.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { ensureBusyboxHttpImage, ensureBusyboxImage, podmanInstalled } from '../support/images.js';
import {
  api,
  cloneUrl,
  git,
  runLog,
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from './harness.js';

interface Job {
  key: string;
  status: string;
  outputs: Record<string, string>;
  environment: { name: string; approval: { status: string; team: string } | null } | null;
  steps: { name: string; status: string }[];
}
interface Run {
  number: number;
  status: string;
  error: string | null;
  event: string;
  jobs: Job[];
}

let valve: Valve;
let alice: Session;
let work: string;
let appCount = 0;

before(async () => {
  valve = await startValve();
  work = mkdtempSync(join(tmpdir(), 'valve-pipelines-'));
  alice = await signup(valve, 'alice', 'dev');
});

after(async () => {
  await valve?.destroy();
  rmSync(work, { recursive: true, force: true });
});

/** A new app whose repo holds only the given workflows (and the template's other files). */
async function appWith(
  workflows: Record<string, string>,
  extra: Record<string, string> = {},
): Promise<{ app: string; dir: string }> {
  const name = `p${++appCount}`;
  const created = await api(valve, alice.token, 'POST', '/api/apps', {
    team: 'dev',
    name,
    template: 'node-http',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const dir = join(work, name);
  git(work, ['clone', '-q', cloneUrl(valve, alice, `dev/${name}`), dir]);
  rmSync(join(dir, '.valve/workflows'), { recursive: true, force: true });
  mkdirSync(join(dir, '.valve/workflows'), { recursive: true });
  for (const [file, text] of Object.entries(workflows))
    writeFileSync(join(dir, '.valve/workflows', file), text);
  for (const [file, text] of Object.entries(extra)) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  return { app: `dev/${name}`, dir };
}

function push(dir: string, message: string): string {
  git(dir, ['add', '-A']);
  git(dir, ['commit', '-qm', message]);
  git(dir, ['push', '-q', 'origin', 'HEAD:main']);
  return git(dir, ['rev-parse', 'HEAD']).output.trim();
}

function processWithArgument(argument: string): boolean {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(argument)) return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

const job = (run: Run, key: string) => {
  const found = run.jobs.find((j) => j.key === key);
  assert.ok(found, `no job ${key} in ${run.jobs.map((j) => j.key).join(', ')}`);
  return found;
};

test('a job graph: needs, matrix with include, outputs, if always() and failure(), skipped dependents', async () => {
  const { app, dir } = await appWith({
    'graph.yml': `name: graph
on: push
jobs:
  plan:
    outputs:
      greeting: \${{ steps.p.outputs.greeting }}
    steps:
      - id: p
        run: echo "greeting=hello" >> "$GITHUB_OUTPUT"
  test:
    needs: plan
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2]
        include:
          - n: 3
            extra: more
    steps:
      - run: echo "test \${{ matrix.n }} \${{ needs.plan.outputs.greeting }} \${{ matrix.extra }}"
      - run: exit \${{ matrix.n == 2 && 1 || 0 }}
      - if: always()
        run: echo "cleanup \${{ matrix.n }}"
      - if: failure()
        run: echo "failed \${{ matrix.n }}"
  report:
    needs: test
    if: always()
    steps:
      - run: echo "report \${{ needs.test.result }}"
  never:
    needs: test
    steps:
      - run: echo never
`,
  });
  push(dir, 'graph');
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'failed', log);
  assert.equal(job(run, 'plan').status, 'succeeded');
  assert.equal(job(run, 'plan').outputs.greeting, 'hello');
  assert.equal(job(run, 'test (1)').status, 'succeeded');
  assert.equal(job(run, 'test (2)').status, 'failed');
  assert.equal(job(run, 'test (3, more)').status, 'succeeded');
  assert.equal(job(run, 'report').status, 'succeeded');
  assert.equal(job(run, 'never').status, 'skipped');
  assert.match(log, /test 1 hello/);
  assert.match(log, /test 3 hello more/);
  assert.match(log, /cleanup 2/);
  assert.match(log, /failed 2/);
  assert.doesNotMatch(log, /failed 1|failed 3/);
  assert.match(log, /report failure/);
  assert.doesNotMatch(log, /^never$/m);

  // Re-run only the failed jobs: plan keeps its result and outputs and is not run again.
  const rerun = await api<Run>(valve, alice.token, 'POST', `/api/apps/${app}/runs/1/rerun`, {
    failedOnly: true,
  });
  assert.equal(rerun.status, 201, JSON.stringify(rerun.body));
  const second = (await waitForRun(valve, alice, app, rerun.body.number)) as unknown as Run;
  assert.equal(second.event, 'rerun');
  assert.equal(job(second, 'plan').status, 'succeeded');
  assert.ok(
    job(second, 'plan').steps.every((s) => s.status === 'skipped'),
    'plan is not run again',
  );
  assert.equal(job(second, 'test (2)').status, 'failed');
  assert.match(
    await runLog(valve, alice, app, rerun.body.number),
    /test 2 hello/,
    'outputs of kept jobs reach the re-run',
  );
});

test('secrets are injected where referenced and masked in stored and streamed logs; a timeout kills the process tree; the cache hits on the second run', async () => {
  const secret = 's3cr3t-Value-that-is-long';
  // A unique duration marks the timed-out step's background process in the host's process list.
  const marker = `${300 + Math.floor(Math.random() * 600)}.${Date.now() % 1000}`;
  const { app, dir } = await appWith({
    'secrets.yml': `on: push
jobs:
  secret:
    steps:
      - run: |
          echo "token is $TOKEN"
          printf '%s' "\${TOKEN:0:6}"; sleep 0.3; printf '%s\\n' "\${TOKEN:6}"
          echo "::add-mask::runtime-value-123"
          echo "runtime runtime-value-123"
        env:
          TOKEN: \${{ secrets.API_TOKEN }}
      - run: if grep -rqF "$TOKEN" . 2>/dev/null; then echo "secret in workspace"; exit 1; fi
        env:
          TOKEN: \${{ secrets.API_TOKEN }}
      - run: echo "unreferenced=[\${OTHER:-none}]"
  slow:
    timeout-minutes: 0.05
    steps:
      - run: |
          sleep ${marker} &
          echo "started the background sleep"
          wait
  cached:
    steps:
      - id: c
        uses: valve/cache@v1
        with:
          path: deps
          key: deps-v1
      - run: |
          echo "hit=\${{ steps.c.outputs.cache-hit }}"
          mkdir -p deps && echo data > deps/file
`,
  });
  assert.equal(
    (await api(valve, alice.token, 'PUT', `/api/apps/${app}/secrets/API_TOKEN`, { value: secret }))
      .status,
    204,
  );
  assert.equal(
    (
      await api(valve, alice.token, 'PUT', `/api/apps/${app}/secrets/OTHER`, {
        value: 'other-secret-value',
      })
    ).status,
    204,
  );
  const listed = await api<{ name: string }[]>(
    valve,
    alice.token,
    'GET',
    `/api/apps/${app}/secrets`,
  );
  assert.deepEqual(
    listed.body.map((s) => s.name),
    ['API_TOKEN', 'OTHER'],
  );
  assert.ok(!JSON.stringify(listed.body).includes(secret), 'values are never returned');
  const short = await api<{ error: { message: string } }>(
    valve,
    alice.token,
    'PUT',
    `/api/apps/${app}/secrets/X`,
    { value: 'ab' },
  );
  assert.equal(short.status, 400);
  assert.match(short.body.error.message, /value: expected at least 3 characters/);

  push(dir, 'secrets');
  await waitFor(
    'run 1 to exist',
    async () => (await api(valve, alice.token, 'GET', `/api/apps/${app}/runs/1`)).status === 200,
  );
  // Follow the live stream while the run goes on.
  const streamed = await (
    await fetch(new URL(`/api/apps/${app}/runs/1/logs?follow=1`, valve.url), {
      headers: { authorization: `Bearer ${alice.token}` },
    })
  ).text();
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const stored = await runLog(valve, alice, app, 1);
  assert.equal(job(run, 'secret').status, 'succeeded', stored);
  assert.match(stored, /token is \*\*\*/);
  assert.match(stored, /^\*\*\*$/m, 'a secret written in two parts is masked too');
  assert.match(stored, /runtime \*\*\*/);
  assert.match(
    stored,
    /unreferenced=\[none\]/,
    'a secret reaches only the steps that reference it',
  );
  for (const text of [
    stored,
    streamed,
    readFileSync(join(valve.dataDir, 'valve.db')).toString('latin1'),
  ]) {
    assert.ok(!text.includes(secret), 'the secret value appears nowhere');
    assert.ok(!text.includes('runtime-value-123'));
  }
  assert.ok(streamed.includes('event: end'));

  assert.equal(job(run, 'slow').status, 'failed');
  assert.match(stored, /started the background sleep/);
  assert.match(stored, /timed out after/);
  await waitFor(
    'the background process of the timed-out step to be gone',
    async () => !processWithArgument(marker),
    10_000,
  );

  assert.match(stored, /hit=false/);
  git(dir, ['commit', '-q', '--allow-empty', '-m', 'again']);
  git(dir, ['push', '-q', 'origin', 'HEAD:main']);
  await waitForRun(valve, alice, app, 2);
  assert.match(await runLog(valve, alice, app, 2), /hit=true/);
});

test('concurrency with cancel-in-progress cancels the older run', async () => {
  const { app, dir } = await appWith(
    {
      'deploy.yml': `on: push
concurrency:
  group: deploy-\${{ github.ref }}
  cancel-in-progress: true
jobs:
  deploy:
    steps:
      - uses: valve/checkout@v1
      - run: sleep "$(cat delay)"; echo "deployed after $(cat delay)"
`,
    },
    { delay: '120\n' },
  );
  push(dir, 'slow');
  await waitFor('run 1 to run', async () =>
    (await runLog(valve, alice, app, 1)).includes('Run valve/checkout@v1'),
  );
  writeFileSync(join(dir, 'delay'), '0\n');
  push(dir, 'fast');
  const second = (await waitForRun(valve, alice, app, 2)) as unknown as Run;
  assert.equal(second.status, 'succeeded', await runLog(valve, alice, app, 2));
  const first = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  assert.equal(first.status, 'cancelled');
});

test('manual dispatch with inputs, and an approval gate only the approving team can pass', async () => {
  const carol = await signup(valve, 'carol', 'ops');
  const spec = readFileSync(
    new URL('../../src/apps/templates/node-http/valve.yaml', import.meta.url),
    'utf8',
  )
    .replaceAll('{{app}}', 'p5')
    .concat('  prod:\n    approval:\n      team: ops\n      timeoutMinutes: 10\n');
  const { app, dir } = await appWith(
    {
      'release.yml': `on:
  workflow_dispatch:
    inputs:
      who:
        type: string
        required: true
      loud:
        type: boolean
        default: false
jobs:
  hello:
    steps:
      - run: echo "hello \${{ inputs.who }} loud=\${{ inputs.loud }}"
  ship:
    needs: hello
    environment: prod
    steps:
      - run: echo shipped
`,
    },
    { 'valve.yaml': spec },
  );
  push(dir, 'release workflow');
  const workflows = await api<{ file: string; inputs: Record<string, unknown> | null }[]>(
    valve,
    alice.token,
    'GET',
    `/api/apps/${app}/workflows`,
  );
  assert.deepEqual(
    workflows.body.map((w) => w.file),
    ['.valve/workflows/release.yml'],
  );
  assert.ok(workflows.body[0]!.inputs?.who);

  const missing = await api<{ error: { message: string } }>(
    valve,
    alice.token,
    'POST',
    `/api/apps/${app}/dispatch`,
    { workflow: '.valve/workflows/release.yml', inputs: {} },
  );
  assert.equal(missing.status, 400);
  assert.match(missing.body.error.message, /inputs\.who/);

  const dispatched = await api<Run>(valve, alice.token, 'POST', `/api/apps/${app}/dispatch`, {
    workflow: 'release.yml',
    inputs: { who: 'world', loud: true },
  });
  assert.equal(dispatched.status, 201, JSON.stringify(dispatched.body));
  const number = dispatched.body.number;
  const waiting = await waitFor('the ship job to wait for approval', async () => {
    const run = await api<Run>(valve, alice.token, 'GET', `/api/apps/${app}/runs/${number}`);
    return job(run.body, 'ship').environment?.approval?.status === 'pending' ? run.body : undefined;
  });
  assert.equal(job(waiting, 'ship').status, 'waiting');
  assert.equal(job(waiting, 'ship').environment?.approval?.team, 'ops');

  const path = `/api/apps/${app}/runs/${number}/jobs/ship/approval`;
  const byDev = await api(valve, alice.token, 'POST', path, { decision: 'approve' });
  assert.equal(byDev.status, 403, 'a member of the app team who is not in ops cannot approve');
  const outsider = await signup(valve, 'mallory', 'qa');
  assert.equal(
    (await api(valve, outsider.token, 'POST', path, { decision: 'approve' })).status,
    404,
  );
  const approved = await api(valve, carol.token, 'POST', path, {
    decision: 'approve',
    comment: 'go',
  });
  assert.equal(approved.status, 200, JSON.stringify(approved.body));

  const run = (await waitForRun(valve, alice, app, number)) as unknown as Run;
  const log = await runLog(valve, alice, app, number);
  assert.equal(run.status, 'succeeded', log);
  assert.equal(run.event, 'workflow_dispatch');
  assert.match(log, /hello world loud=true/);
  assert.match(log, /shipped/);
  assert.equal(job(run, 'ship').environment?.approval?.status, 'approved');
});

test('a job deploying where the approving team does not exist fails, naming valve.yaml line', async () => {
  // Nobody has signed up for team audit: whoever did first would decide this app's deploys.
  const spec = readFileSync(
    new URL('../../src/apps/templates/node-http/valve.yaml', import.meta.url),
    'utf8',
  )
    .replaceAll('{{app}}', 'p-audit')
    .concat('  prod:\n    approval:\n      team: audit\n');
  const { app, dir } = await appWith(
    {
      'ship.yml': `on: push
jobs:
  ship:
    environment: prod
    steps:
      - run: echo shipped
`,
    },
    { 'valve.yaml': spec },
  );
  push(dir, 'ship to prod, approved by audit');
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'failed', log);
  assert.equal(job(run, 'ship').environment?.approval ?? null, null, 'no approval was asked');
  const line = spec.split('\n').indexOf('      team: audit') + 1;
  assert.match(
    log,
    new RegExp(
      `ship: valve\\.yaml:${line}:\\d+: environments\\.prod\\.approval\\.team: team audit does not exist`,
    ),
  );
  assert.doesNotMatch(log, /shipped/);
});

test('a signed push webhook from an external repository starts a run; a bad signature is refused', async () => {
  // The "external" repository is another app's repo on this server, reached over real HTTP.
  const { app: upstream, dir } = await appWith({
    'noop.yml': 'on:\n  workflow_dispatch: {}\njobs:\n  a:\n    steps:\n      - run: "true"\n',
  });
  writeFileSync(
    join(dir, '.valve/workflows/external.yml'),
    'on: push\njobs:\n  hello:\n    steps:\n      - uses: valve/checkout@v1\n      - run: echo "from outside $(cat README.md | head -1)"\n',
  );
  const sha = push(dir, 'external change');
  const { app } = await appWith({});
  const secret = 'a-webhook-secret-of-some-length';
  const url = new URL(`/git/${upstream}.git`, valve.url).toString();
  const linked = await api(valve, alice.token, 'PUT', `/api/apps/${app}/external`, {
    provider: 'github',
    url,
    secret,
    username: 'alice',
    password: alice.token,
  });
  assert.equal(linked.status, 204, JSON.stringify(linked.body));
  const body = JSON.stringify({
    ref: 'refs/heads/main',
    before: '0'.repeat(40),
    after: sha,
    deleted: false,
    repository: { clone_url: url, full_name: upstream },
    pusher: { name: 'octocat' },
    commits: [],
  });
  const send = (signature: string) =>
    fetch(new URL(`/hooks/github/${app}`, valve.url), {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'push',
        'x-hub-signature-256': signature,
      },
      body,
    });
  assert.equal((await send(`sha256=${'0'.repeat(64)}`)).status, 401);
  const accepted = await send(`sha256=${createHmac('sha256', secret).update(body).digest('hex')}`);
  assert.equal(accepted.status, 202, await accepted.clone().text());
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'succeeded', log);
  assert.equal(run.event, 'webhook');
  assert.match(log, /from outside # p/);
});

test('a local composite action runs its steps with inputs and gives outputs; a broken action.yml names file and line', async () => {
  const { app, dir } = await appWith(
    {
      'composite.yml': `on: push
jobs:
  greet:
    steps:
      - uses: valve/checkout@v1
      - id: hi
        uses: ./.valve/actions/greet
        with:
          who: composite
      - run: echo "action said \${{ steps.hi.outputs.said }}"
      - uses: ./.valve/actions/broken
`,
    },
    {
      '.valve/actions/greet/action.yml': `name: greet
inputs:
  who:
    required: true
  punctuation:
    default: "!"
outputs:
  said:
    value: \${{ steps.say.outputs.text }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      run: echo "text=hello \${{ inputs.who }}\${{ inputs.punctuation }}" >> "$GITHUB_OUTPUT"
    - shell: bash
      run: echo "inside the action for \${{ inputs.who }}"
`,
      '.valve/actions/broken/action.yml':
        'name: broken\nruns:\n  using: node20\n  main: index.js\n',
    },
  );
  push(dir, 'composite');
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'failed', log);
  assert.match(log, /inside the action for composite/);
  assert.match(log, /action said hello composite!/);
  assert.match(
    log,
    /\.valve\/actions\/broken\/action\.yml:3:10: runs\.using: expected "composite"/,
  );
});

test('a job with container: and services: runs in podman, reaching its service by name', async (t) => {
  if (!(await podmanInstalled())) {
    t.skip('podman is not installed (scripts/setup-podman.sh installs it)');
    return;
  }
  const image = await ensureBusyboxImage();
  const httpImage = await ensureBusyboxHttpImage();
  const { app, dir } = await appWith({
    'containers.yml': `on: push
jobs:
  in-podman:
    runs-on: podman
    container:
      image: ${image}
      env:
        WHERE: container
    services:
      web:
        image: ${httpImage}
    steps:
      - run: echo "in the $WHERE, $(cat /etc/os-release 2>/dev/null | head -1 || echo no os-release)"
      - run: wget -q -O - http://web/ && echo " <- from the web service by name"
`,
  });
  push(dir, 'containers');
  const run = (await waitForRun(valve, alice, app, 1)) as unknown as Run;
  const log = await runLog(valve, alice, app, 1);
  assert.equal(run.status, 'succeeded', log);
  assert.match(log, /in the container/);
  assert.match(log, /<- from the web service by name/);
});
