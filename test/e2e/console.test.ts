/**
 * The web console in a real browser (Chromium through playwright-core) against the real
 * server: sign-in redirect and API 401 without a session, sign-up with an API error shown next
 * to the form, an app created from the node-http template and listed with its clone URL, the
 * app page; then a real `git push` (token from POST /api/tokens) shows up as a run whose page
 * streams its log live and reaches `succeeded`, the environment turns healthy and its URL
 * serves the pushed version; sign-out ends the session and sign-in returns to where you were.
 * The pushed workflow gets a first step that waits until this test answers its HTTP gate, so the
 * run is seen while it runs (log lines arriving, Cancel offered) on any machine, fast or slow.
 * Then the CI engine's pages: a pushed workflow with `needs` and a two-entry matrix is drawn as
 * a job graph (columns, edges, matrix values, status colours) with its summary rendered, a job
 * is selected to see its steps and only its log lines; the runs page filters from its URL; the
 * secret the failed job lacked is set without its value ever shown, and "Re-run failed jobs"
 * starts a new run that succeeds; a workflow started from the "Run workflow" form with inputs
 * waits for an approval that is given by clicking Approve.
 *
 * Needs the console built (`npm run build:console`) and Chromium at /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './browser.js';
import { git, startValve, type Valve } from './harness.js';

const SCREENSHOT = '/tmp/valve-console-run.png';

const username = 'ada';
const password = 'correct horse battery';
const team = 'dev';
const appName = 'hello';
const finished = ['succeeded', 'failed', 'cancelled'];
const GATE_STEP = 'Wait for the console test';
const GATE_WAITING = 'waiting for the browser to watch';
const GATE_RELEASED = 'released by the browser test';
const SECRET_VALUE = 'console-secret-value-4c1d';

let valve: Valve;
let context: BrowserContext;
let page: Page;
let profileDir: string;
let workDir: string;
let gitUrl: string;
let pushedCommit: string;
/** The gate the pushed workflow waits at: 503 until the test opens it. */
let gate: Server;
let gateUrl: string;
let gateOpen = false;
let graphCommit: string;
let graphRun: number;

const at = (path: string) => new URL(path, valve.url).href;

/**
 * The steps build on each other (one user, one app, one push): after a failure the rest are
 * skipped instead of each waiting for what can no longer happen.
 */
let earlierStepFailed = false;
function step(name: string, body: () => Promise<void>) {
  test(name, async (t) => {
    if (earlierStepFailed) return t.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      earlierStepFailed = true;
      throw error;
    }
  });
}
const testId = (id: string) => `[data-testid="${id}"]`;

before(async () => {
  valve = await startValve();
  profileDir = mkdtempSync(join(tmpdir(), 'valve-console-chromium-'));
  workDir = mkdtempSync(join(tmpdir(), 'valve-console-work-'));
  // Steps run sandboxed (no host files, private /tmp) but share the network: an HTTP gate.
  gate = createServer((_request, response) => {
    response.writeHead(gateOpen ? 200 : 503).end();
  });
  await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
  gateUrl = `http://127.0.0.1:${(gate.address() as AddressInfo).port}/`;
  ({ context, page } = await launchChromium(profileDir));
});

after(async () => {
  // Never leave a run waiting at the gate.
  gateOpen = true;
  await context?.close();
  await valve?.destroy();
  gate?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

step('without a session, the API answers 401 and a console page shows sign-in', async () => {
  // What the console's own requests get. A Basic challenge here would make browsers prompt
  // for a password (and make Chromium hold the console's fetch until someone answers).
  const anonymous = await fetch(at('/api/me'), { headers: { accept: 'application/json' } });
  assert.equal(anonymous.status, 401);
  assert.doesNotMatch(
    anonymous.headers.get('www-authenticate') ?? '',
    /basic/i,
    'a 401 from /api/ must not carry a Basic challenge: browsers would prompt for a password',
  );

  await page.goto(at(`/apps/${team}/${appName}`));
  await page.locator(testId('auth-form')).waitFor();
  // The page asked for is kept, to return to after signing in.
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), `/apps/${team}/${appName}`);

  const response = await page.goto(at('/api/apps'));
  assert.ok(response);
  assert.equal(response.status(), 401);
  const body = (await response.json()) as { error: { code: string } };
  assert.equal(body.error.code, 'AUTH_REQUIRED');
});

step('sign-up shows the API error next to the form, then signs in', async () => {
  await page.goto(at('/signup'));
  await page.fill(testId('auth-username'), username);
  await page.fill(testId('auth-password'), 'short');
  await page.fill(testId('auth-team'), team);
  await page.click(testId('auth-submit'));
  const error = page.locator(testId('auth-error'));
  await error.waitFor();
  assert.match(await error.innerText(), /password/);

  await page.fill(testId('auth-password'), password);
  await page.click(testId('auth-submit'));
  await page.locator(testId('header-user')).waitFor();
  assert.equal(await page.locator(testId('header-user')).innerText(), username);
  await page.waitForURL((url) => url.pathname === '/apps');
  await page.locator(testId('apps-list')).getByText('No apps yet').waitFor();
});

step('creates an app from the node-http template and lists it with its clone URL', async () => {
  await page
    .locator(`${testId('new-app-template')} option[value="node-http"]`)
    .waitFor({ state: 'attached' });
  await page.selectOption(testId('new-app-team'), team);
  await page.fill(testId('new-app-name'), appName);
  await page.selectOption(testId('new-app-template'), 'node-http');
  await page.click(testId('new-app-submit'));

  const expected = at(`/git/${team}/${appName}.git`);
  const shown = page.locator(testId('new-app-clone-url'));
  await shown.waitFor();
  gitUrl = await shown.innerText();
  assert.equal(gitUrl, expected);

  const row = page.locator(`${testId('app-row')}[data-app="${team}/${appName}"]`);
  await row.waitFor();
  assert.equal(await row.locator(testId('app-clone-url')).innerText(), expected);
  await row.locator(`${testId('app-env')}[data-env="dev"]`).waitFor();
});

step('the app page shows the source and deploy repos and the dev environment', async () => {
  await page.click(`${testId('app-row')}[data-app="${team}/${appName}"] ${testId('app-link')}`);
  await page.waitForURL((url) => url.pathname === `/apps/${team}/${appName}`);
  assert.equal(await page.locator(testId('app-title')).innerText(), `${team}/${appName}`);
  assert.equal(await page.locator(testId('app-clone-url')).innerText(), gitUrl);
  assert.equal(
    await page.locator(testId('app-deploy-url')).innerText(),
    at(`/git/${team}/${appName}.deploy.git`),
  );
  await page.locator(`${testId('env-card')}[data-env="dev"]`).waitFor();
});

step('a git push appears as a run whose page streams its log live until it succeeds', async () => {
  // An API token for git, made with the browser's session.
  const created = await page.request.post(at('/api/tokens'), { data: { name: 'console-e2e-git' } });
  assert.equal(created.status(), 201, await created.text());
  const { token } = (await created.json()) as { token: string };

  const remote = new URL(gitUrl);
  remote.username = username;
  remote.password = token;
  const dir = join(workDir, appName);
  git(workDir, ['clone', '-q', remote.href, dir]);
  const greeting = join(dir, 'greeting.js');
  writeFileSync(
    greeting,
    readFileSync(greeting, 'utf8').replace(/VERSION = '[^']*'/, "VERSION = '2'"),
  );
  holdRunAtGate(join(dir, '.valve/workflows/ci.yml'));
  git(dir, ['commit', '-qam', 'Say version 2']);
  git(dir, ['push', '-q', 'origin', 'main']);
  pushedCommit = git(dir, ['rev-parse', 'HEAD']).output.trim();

  // The app page polls: the run for the pushed commit shows up without a reload.
  const row = page.locator(`${testId('run-row')}[data-commit="${pushedCommit}"]`);
  await row.waitFor();
  assert.match(await row.innerText(), /Say version 2/);
  await row.locator(testId('run-link')).click();
  await page.waitForURL((url) => /^\/apps\/dev\/hello\/runs\/\d+$/.test(url.pathname));
  const runNumber = Number(new URL(page.url()).pathname.split('/').pop());

  // The run is held at the gate: its output so far arrives through the log stream while it
  // runs, and it can be cancelled.
  await logLine(GATE_WAITING).waitFor();
  await page.locator(`${testId('run-status')}[data-status="running"]`).waitFor();
  await page
    .locator(`${testId('step')}[data-status="running"]`)
    .filter({ hasText: GATE_STEP })
    .waitFor();
  assert.ok(await page.locator(testId('run-cancel')).isVisible(), 'a running run offers Cancel');
  assert.equal(await page.locator(testId('log-end')).count(), 0, 'the log has not ended');

  // Lines written after the page was loaded appear in it, without a reload.
  await page.evaluate(() => document.body.setAttribute('data-loaded-once', 'yes'));
  gateOpen = true;
  await logLine(GATE_RELEASED).waitFor();

  // The stream ends once the run is finished (all its lines are shown by then); the run's own
  // status follows from the page's next poll.
  await page.locator(testId('log-end')).waitFor();
  await page.waitForFunction(
    (states) =>
      states.includes(
        document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status') ?? '',
      ),
    finished,
  );
  assert.equal(await page.locator('body').getAttribute('data-loaded-once'), 'yes');
  const logText = await page.locator(testId('log-view')).innerText();
  assert.equal(
    await page.locator(testId('run-status')).getAttribute('data-status'),
    'succeeded',
    logText,
  );
  assert.equal(await page.locator(testId('log-end')).getAttribute('data-status'), 'succeeded');
  assert.equal(
    await page.locator(testId('run-cancel')).count(),
    0,
    'a finished run offers no Cancel',
  );

  // Every line exactly once and in order, numbered as the API numbers them.
  const logs = await page.request.get(at(`/api/apps/${team}/${appName}/runs/${runNumber}/logs`));
  assert.equal(logs.status(), 200);
  const apiLines = (await logs.json()) as { n: number; text: string }[];
  const numbers = await page
    .locator(testId('log-line'))
    .evaluateAll((rows) => rows.map((row) => Number(row.getAttribute('data-n'))));
  assert.deepEqual(
    numbers,
    apiLines.map((line) => line.n),
  );
  assert.deepEqual(
    await page.locator(testId('log-line-number')).allInnerTexts(),
    apiLines.map((line) => String(line.n)),
  );
  const lastText = plain(apiLines[apiLines.length - 1]?.text ?? '').trim();
  if (lastText) assert.ok(logText.includes(lastText), `log view shows the last line "${lastText}"`);

  // Every step is listed with its final status.
  const steps = await page
    .locator(testId('step'))
    .evaluateAll((items) => items.map((item) => item.getAttribute('data-status')));
  assert.ok(steps.length > 1, 'the run page lists the steps');
  assert.ok(
    steps.every((status) => status === 'succeeded' || status === 'skipped'),
    `step states: ${steps.join(', ')}`,
  );

  await page.screenshot({ path: SCREENSHOT, fullPage: true });
});

step('the environment turns healthy with the pushed commit and its URL answers', async () => {
  assert.ok(pushedCommit, 'the push test ran');
  await page.click(testId('run-app-link'));
  await page.waitForURL((url) => url.pathname === `/apps/${team}/${appName}`);
  const env = page.locator(
    `${testId('env-card')}[data-env="dev"][data-health="healthy"][data-source-commit="${pushedCommit}"]`,
  );
  await env.waitFor();
  const href = await env.locator(testId('env-url')).getAttribute('href');
  assert.ok(href, 'the healthy environment shows its URL');
  const response = await fetch(href);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), `Hello from ${appName} (version 2)\n`);
  assert.ok((await env.locator(testId('env-instance')).count()) > 0, 'instances are listed');
});

step('signing out ends the session; signing in returns to the page asked for', async () => {
  await page.click(testId('sign-out'));
  await page.locator(testId('auth-form')).waitFor();
  const me = await page.request.get(at('/api/me'));
  assert.equal(me.status(), 401);

  await page.goto(at(`/apps/${team}/${appName}`));
  await page.fill(testId('auth-username'), username);
  await page.fill(testId('auth-password'), 'wrong password');
  await page.click(testId('auth-submit'));
  await page.locator(testId('auth-error')).waitFor();

  await page.fill(testId('auth-password'), password);
  await page.click(testId('auth-submit'));
  await page.waitForURL((url) => url.pathname === `/apps/${team}/${appName}`);
  assert.equal(await page.locator(testId('app-title')).innerText(), `${team}/${appName}`);
});

step('a workflow with needs and a 2-entry matrix is drawn as a job graph', async () => {
  const dir = join(workDir, appName);
  // Only the graph workflow runs on this push (the build-and-deploy one is covered above).
  rmSync(join(dir, '.valve/workflows/ci.yml'));
  writeFileSync(
    join(dir, '.valve/workflows/graph.yml'),
    `name: graph
on: push
jobs:
  build:
    steps:
      - name: Compile
        run: echo "compiled"
  test:
    needs: build
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2]
    steps:
      - name: Entry
        run: |
          echo "entry \${{ matrix.n }} ran"
          if [ "\${{ matrix.n }}" = 2 ] && [ -z "$LUCK" ]; then exit 1; fi
          printf '### Entry %s\\n\\n| check | result |\\n|---|---|\\n| **unit** | \`ok\` |\\n' "\${{ matrix.n }}" >> "$GITHUB_STEP_SUMMARY"
        env:
          # Entry 2 fails until this secret exists; it is set from the console below.
          LUCK: \${{ secrets.LUCK }}
  report:
    needs: test
    steps:
      - run: echo reported
`,
  );
  // For the approval step below: deploys to prod wait for a member of this team.
  writeFileSync(
    join(dir, '.valve/workflows/release.yml'),
    `name: release
on:
  workflow_dispatch:
    inputs:
      who:
        type: string
        required: true
      count:
        type: number
        default: 1
      loud:
        type: boolean
        default: false
      flavour:
        type: choice
        options: [plain, spicy]
jobs:
  hello:
    steps:
      - run: echo "hello \${{ inputs.who }} count=\${{ inputs.count }} loud=\${{ inputs.loud }} flavour=\${{ inputs.flavour }}"
  ship:
    needs: hello
    environment: prod
    steps:
      - run: echo shipped
`,
  );
  const spec = join(dir, 'valve.yaml');
  writeFileSync(
    spec,
    `${readFileSync(spec, 'utf8')}  prod:\n    approval:\n      team: ${team}\n      timeoutMinutes: 30\n`,
  );
  git(dir, ['add', '-A']);
  git(dir, ['commit', '-qm', 'Graph and release workflows']);
  git(dir, ['push', '-q', 'origin', 'main']);
  graphCommit = git(dir, ['rev-parse', 'HEAD']).output.trim();

  await page.goto(at(`/apps/${team}/${appName}`));
  const row = page.locator(`${testId('run-row')}[data-commit="${graphCommit}"]`);
  await row.waitFor();
  await row.locator(testId('run-link')).click();
  await page.waitForURL((url) => /^\/apps\/dev\/hello\/runs\/\d+$/.test(url.pathname));
  graphRun = Number(new URL(page.url()).pathname.split('/').pop());

  const node = (key: string) => page.locator(`${testId('job-node')}[data-job="${key}"]`);
  await node('report').waitFor();
  assert.deepEqual(
    await page
      .locator(testId('job-node'))
      .evaluateAll((nodes) =>
        nodes.map((n) => `${n.getAttribute('data-job')}@${n.getAttribute('data-column')}`),
      ),
    ['build@0', 'test (1)@1', 'test (2)@1', 'report@2'],
  );
  assert.deepEqual(
    (
      await page
        .locator(testId('job-edge'))
        .evaluateAll((edges) =>
          edges.map((e) => `${e.getAttribute('data-from')}->${e.getAttribute('data-to')}`),
        )
    ).sort(),
    ['build->test (1)', 'build->test (2)', 'test (1)->report', 'test (2)->report'],
  );
  assert.equal(await node('test (1)').locator(testId('job-matrix')).innerText(), 'n 1');
  assert.equal(await node('test (2)').locator(testId('job-matrix')).innerText(), 'n 2');

  // The run ends failed: entry 2 failed, so report never ran.
  await page.locator(`${testId('run-status')}[data-status="failed"]`).waitFor();
  await page.locator(`${testId('job-node')}[data-job="test (2)"][data-status="failed"]`).waitFor();
  assert.equal(await node('test (1)').getAttribute('data-status'), 'succeeded');
  assert.notEqual(await node('report').getAttribute('data-status'), 'succeeded');
  const colour = (key: string) => node(key).evaluate((n) => getComputedStyle(n).borderLeftColor);
  assert.notEqual(await colour('test (1)'), await colour('test (2)'), 'status colours differ');

  // The summary the steps wrote, rendered: a heading and a table with bold and code.
  const summary = page.locator(testId('run-summary'));
  await summary.waitFor();
  assert.equal(await summary.locator('h3').first().innerText(), 'Entry 1');
  assert.equal(await summary.locator('table td strong').first().innerText(), 'unit');
  assert.equal(await summary.locator('table td code').first().innerText(), 'ok');

  // Selecting a job shows its steps and only its lines of the log.
  await node('test (2)').click();
  await page.waitForURL((url) => url.searchParams.get('job') === 'test (2)');
  await page.locator(`${testId('job')}[data-job="test (2)"]`).waitFor();
  await page.locator(`${testId('log-view')}[data-job="test (2)"]`).waitFor();
  await logLine('entry 2 ran').waitFor();
  assert.equal(await logLine('entry 1 ran').count(), 0, "another job's lines are not shown");
  const steps = page.locator(`${testId('job')} ${testId('step')}`);
  assert.equal(await steps.count(), 1);
  assert.equal(await steps.first().getAttribute('data-status'), 'failed');
  assert.match(await steps.first().innerText(), /Entry/);
  await page.click(testId('log-all-jobs'));
  await logLine('entry 1 ran').waitFor();
});

step(
  'the runs page filters from its URL; the secret the failed job lacked is set, never shown',
  async () => {
    await page.click(testId('nav-runs'));
    await page.waitForURL((url) => url.pathname === '/runs');
    await page.locator(`${testId('run-row')}[data-run-number="${graphRun}"]`).waitFor();
    await page.selectOption(testId('filter-status'), 'failed');
    await page.waitForURL((url) => url.searchParams.get('status') === 'failed');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('[data-testid="run-row"]')];
      return rows.length > 0 && rows.every((r) => r.getAttribute('data-status') === 'failed');
    });
    assert.equal(
      await page.locator(`${testId('run-row')}[data-run-number="${graphRun}"]`).count(),
      1,
    );
    // A reload keeps the filter.
    await page.reload();
    assert.equal(await page.locator(testId('filter-status')).inputValue(), 'failed');

    await page.goto(at(`/apps/${team}/${appName}`));
    await page.fill(testId('secret-name'), 'LUCK');
    await page.fill(testId('secret-value'), SECRET_VALUE);
    await page.click(testId('secret-submit'));
    await page.locator(`${testId('secret-row')}[data-secret="LUCK"]`).waitFor();
    assert.equal(await page.locator(testId('secret-value')).inputValue(), '');
    assert.ok(
      !(await page.content()).includes(SECRET_VALUE),
      'the value is nowhere in the page once set',
    );
    // The commit status of the default branch's newest run's commit.
    const status = page.locator(`${testId('commit-status')}[data-commit="${graphCommit}"]`);
    await status.waitFor();
    assert.equal(await status.getAttribute('data-state'), 'failure');
  },
);

step('Re-run failed jobs starts a new run that succeeds', async () => {
  assert.ok(graphRun, 'the graph run exists');
  await page.goto(at(`/apps/${team}/${appName}/runs/${graphRun}`));
  await page.click(testId('run-rerun-failed'));
  await page.waitForURL(
    (url) =>
      /^\/apps\/dev\/hello\/runs\/\d+$/.test(url.pathname) &&
      Number(url.pathname.split('/').pop()) > graphRun,
  );
  assert.equal(await page.locator(testId('run-event')).innerText(), 're-run');
  assert.equal(await page.locator(testId('run-rerun-of')).innerText(), `#${graphRun}`);
  await page.waitForFunction(
    (states) =>
      states.includes(
        document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status') ?? '',
      ),
    finished,
  );
  assert.equal(await page.locator(testId('run-status')).getAttribute('data-status'), 'succeeded');
  await page.locator(`${testId('job-node')}[data-job="report"][data-status="succeeded"]`).waitFor();
  // The commit's status follows its newest run of the workflow.
  await page.click(testId('run-app-link'));
  await page
    .locator(`${testId('commit-status')}[data-commit="${graphCommit}"][data-state="success"]`)
    .waitFor();
});

step(
  'a workflow run from the form waits for approval; clicking Approve lets it finish',
  async () => {
    await page.click(testId('dispatch-open'));
    await page.selectOption(testId('dispatch-workflow'), '.valve/workflows/release.yml');
    const input = (name: string) =>
      page.locator(`${testId('dispatch-input')}[data-input="${name}"]`);
    await input('who').fill('console');
    await input('count').fill('3');
    await input('loud').check();
    await input('flavour').selectOption('spicy');
    await page.click(testId('dispatch-submit'));
    await page.waitForURL((url) => /^\/apps\/dev\/hello\/runs\/\d+$/.test(url.pathname));
    assert.equal(await page.locator(testId('run-event')).innerText(), 'manual');

    const approval = page.locator(`${testId('approval')}[data-job="ship"]`);
    await approval.waitFor();
    assert.equal(await approval.locator(testId('approval-environment')).innerText(), 'prod');
    assert.equal(await approval.locator(testId('approval-team')).innerText(), team);
    assert.ok((await approval.locator(testId('approval-expires')).innerText()).length > 0);
    await page.locator(`${testId('job-node')}[data-job="ship"][data-status="waiting"]`).waitFor();
    await approval.locator(testId('approval-comment')).fill('ship it');
    await approval.locator(testId('approval-approve')).click();
    await approval.waitFor({ state: 'detached' });

    await page.waitForFunction(
      (states) =>
        states.includes(
          document.querySelector('[data-testid="run-status"]')?.getAttribute('data-status') ?? '',
        ),
      finished,
    );
    assert.equal(await page.locator(testId('run-status')).getAttribute('data-status'), 'succeeded');
    await logLine('hello console count=3 loud=true flavour=spicy').waitFor();
    await page.locator(`${testId('job-node')}[data-job="ship"]`).click();
    const decision = page.locator(
      `${testId('job')}[data-job="ship"] ${testId('approval-decision')}`,
    );
    await decision.waitFor();
    assert.match(await decision.innerText(), /approved by ada.*ship it/s);
  },
);

/** The log line that says exactly `text` (not the echoed command that contains it). */
function logLine(text: string) {
  return page.locator(testId('log-text')).filter({ hasText: new RegExp(`^${text}$`) });
}

/**
 * Puts a first step into the pushed workflow that waits for the gate to open, so the test sees
 * the run while it runs however fast this machine is (the local executor runs steps on this
 * host). The template's workflow has one job whose steps start after a `steps:` line.
 */
function holdRunAtGate(workflowFile: string) {
  const workflow = readFileSync(workflowFile, 'utf8');
  const script = `echo "${GATE_WAITING}"; until curl -sf -o /dev/null ${gateUrl}; do sleep 0.2; done; echo "${GATE_RELEASED}"`;
  const held = workflow.replace(
    /^( *)steps:\n/m,
    (line, indent: string) =>
      `${line}${indent}  - name: ${GATE_STEP}\n${indent}    run: '${script}'\n`,
  );
  assert.notEqual(held, workflow, `no steps: line in ${workflowFile}`);
  writeFileSync(workflowFile, held);
}

// The log view shows text without terminal colour codes.
function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-?]*[ -/]*[@-~]/g, '');
}
