/**
 * The web console in a real browser (Chromium through playwright-core) against the real
 * server: sign-in redirect and API 401 without a session, sign-up with an API error shown next
 * to the form, an app created from the node-http template and listed with its clone URL, the
 * app page; then a real `git push` (token from POST /api/tokens) shows up as a run whose page
 * streams its log live and reaches `succeeded`, the environment turns healthy and its URL
 * serves the pushed version; sign-out ends the session and sign-in returns to where you were.
 * The pushed workflow gets a first step that waits for a file this test writes, so the run is
 * seen while it runs (log lines arriving, Cancel offered) on any machine, fast or slow.
 *
 * Needs the console built (`npm run build:console`) and Chromium at /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { git, startValve, type Valve } from './harness.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOT = '/tmp/valve-console-run.png';
// Only a guard against hanging forever (a run builds and deploys for real); no test expects
// anything to be fast.
const HANG_GUARD_MS = 5 * 60_000;

const username = 'ada';
const password = 'correct horse battery';
const team = 'dev';
const appName = 'hello';
const finished = ['succeeded', 'failed', 'cancelled'];
const GATE_STEP = 'Wait for the console test';
const GATE_WAITING = 'waiting for the browser to watch';
const GATE_RELEASED = 'released by the browser test';

let valve: Valve;
let context: BrowserContext;
let page: Page;
let profileDir: string;
let workDir: string;
let gitUrl: string;
let pushedCommit: string;
let gate: string;

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
  gate = join(workDir, 'gate');
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(HANG_GUARD_MS);
  context.setDefaultNavigationTimeout(HANG_GUARD_MS);
  page = context.pages()[0] ?? (await context.newPage());
});

after(async () => {
  // Never leave a run waiting at the gate.
  if (gate) writeFileSync(gate, 'go\n');
  await context?.close();
  await valve?.destroy();
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
  writeFileSync(gate, 'go\n');
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

/** The log line that says exactly `text` (not the echoed command that contains it). */
function logLine(text: string) {
  return page.locator(testId('log-text')).filter({ hasText: new RegExp(`^${text}$`) });
}

/**
 * Puts a first step into the pushed workflow that waits for `gate` to exist, so the test sees
 * the run while it runs however fast this machine is (the local executor runs steps on this
 * host). The template's workflow has one job whose steps start after a `steps:` line.
 */
function holdRunAtGate(workflowFile: string) {
  const workflow = readFileSync(workflowFile, 'utf8');
  const script = `echo "${GATE_WAITING}"; until [ -e "${gate}" ]; do sleep 0.2; done; echo "${GATE_RELEASED}"`;
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
