/**
 * The console's deploy pages in a real browser (Chromium through playwright-core) against the
 * real server, with real processes serving the app: the first push deploys to dev and the app
 * page shows dev healthy with its URL, version and instance; after a second version the
 * environment page lists both deploys, and "Roll back to this" on the first (after a
 * confirmation naming the version) makes dev serve version 1 again, with a rollback entry in
 * the history. Then valve.yaml gains `stage`, and dev is promoted to stage from the UI (stage
 * runs dev's digest); it gains `prod` (approved by team dev) and `qa` (synced by hand): stage to
 * prod, chosen of the two, waits for an approval given by clicking Approve; stage to qa leaves
 * qa OutOfSync with a diff until Sync is clicked. The app page lists the environments in
 * valve.yaml's order, prod's card with its approval badge. Then prod's approval moves to team
 * ops: olga, in ops but not in the app's team, reads prod's page (approval pending, diff,
 * history, no actions), approves a promotion there, and is refused a sync, a deploy and the
 * app's secrets; a user in neither team gets 404. A viewer sees the pages without any action.
 *
 * Needs the console built (`npm run build:console`) and Chromium at /usr/bin/chromium.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './browser.js';
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

const SCREENSHOTS = '/tmp/valve-console-deploy';

const password = 'correct horse battery';
const team = 'dev';
const appName = 'hello';
const repo = `${team}/${appName}`;

interface Environment {
  name: string;
  url: string | null;
  health: string;
  syncStatus: string;
  digest: string | null;
  sourceCommit: string | null;
  instances: { id: string; pid: number }[];
}

let valve: Valve;
let context: BrowserContext;
let page: Page;
let profileDir: string;
let workDir: string;
let ada: Session;
let runs = 0;
/** Digest and source commit of each version deployed to dev, in order. */
const versions: { digest: string; commit: string }[] = [];
const pageErrors: string[] = [];

const at = (path: string) => new URL(path, valve.url).href;
const testId = (id: string) => `[data-testid="${id}"]`;
const envPage = (env: string) => `/apps/${repo}/environments/${env}`;
const greeting = (version: string) => `Hello from ${appName} (version ${version})\n`;

let earlierStepFailed = false;
function step(name: string, body: () => Promise<void>) {
  test(name, async (t) => {
    if (earlierStepFailed) return t.skip('an earlier step failed');
    try {
      await body();
    } catch (error) {
      earlierStepFailed = true;
      await page?.screenshot({ path: `${SCREENSHOTS}-failure.png`, fullPage: true });
      throw error;
    }
  });
}

before(async () => {
  // The reconciler re-checks every second, so nothing waits on its 30 s default.
  valve = await startValve({ env: { VALVE_DEPLOY_POLL_SECONDS: '1' } });
  profileDir = mkdtempSync(join(tmpdir(), 'valve-deploy-chromium-'));
  workDir = mkdtempSync(join(tmpdir(), 'valve-console-deploy-'));
  ({ context, page } = await launchChromium(profileDir));
  page.on('pageerror', (error) => pageErrors.push(error.message));
});

after(async () => {
  await context?.close();
  await valve?.destroy();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function signIn(username: string) {
  await page.goto(at('/login'));
  await page.fill(testId('auth-username'), username);
  await page.fill(testId('auth-password'), password);
  await page.click(testId('auth-submit'));
  await page.locator(testId('header-user')).waitFor();
}

async function environment(name: string): Promise<Environment> {
  const found = await api<Environment>(
    valve,
    ada.token,
    'GET',
    `/api/apps/${repo}/environments/${name}`,
  );
  assert.equal(found.status, 200, JSON.stringify(found.body));
  return found.body;
}

const text = async (url: string) => (await fetch(url)).text();

/** Waits until the environment is synced, healthy and its URL answers `expected`. */
function serves(name: string, expected: string): Promise<Environment> {
  return waitFor(
    `${name} to serve ${JSON.stringify(expected)}`,
    async () => {
      const env = await environment(name);
      return env.url &&
        env.syncStatus === 'Synced' &&
        env.health === 'healthy' &&
        (await text(env.url)) === expected
        ? env
        : undefined;
    },
    180_000,
  );
}

function setVersion(version: string) {
  const file = join(workDir, appName, 'greeting.js');
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace(/VERSION = '[^']*'/, `VERSION = '${version}'`),
  );
}

/** Commits and pushes; the pipeline run it starts (build, deploy to dev) must succeed. */
async function push(message: string): Promise<string> {
  const dir = join(workDir, appName);
  git(dir, ['commit', '-qam', message]);
  git(dir, ['push', '-q', 'origin', 'main']);
  const commit = git(dir, ['rev-parse', 'HEAD']).output.trim();
  const run = await waitForRun(valve, ada, repo, ++runs);
  assert.equal(run.status, 'succeeded', await runLog(valve, ada, repo, runs));
  return commit;
}

/** Waits until the locator matches `count` elements. */
async function waitForCount(what: string, locator: ReturnType<Page['locator']>, count: number) {
  await waitFor(`${what} (${count})`, async () => (await locator.count()) === count, 60_000);
}

const historyRows = () => page.locator(testId('history-row'));

step(
  'the first push deploys to dev: the app page shows it healthy, its URL and instance',
  async () => {
    ada = await signup(valve, 'ada', team, password);
    const created = await api(valve, ada.token, 'POST', '/api/apps', {
      team,
      name: appName,
      template: 'node-http',
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    git(workDir, ['clone', '-q', cloneUrl(valve, ada, repo), join(workDir, appName)]);
    setVersion('v1');
    const commit = await push('version v1');
    const dev = await serves('dev', greeting('v1'));
    assert.equal(dev.sourceCommit, commit);
    versions.push({ digest: dev.digest!, commit });

    await signIn('ada');
    await page.goto(at(`/apps/${repo}`));
    const card = page.locator(
      `${testId('env-card')}[data-env="dev"][data-health="healthy"][data-digest="${dev.digest}"]`,
    );
    await card.waitFor();
    assert.equal(await card.getAttribute('data-sync'), 'Synced');
    assert.equal(await card.getAttribute('data-source-commit'), commit);
    assert.equal(await card.locator(testId('env-health')).innerText(), 'healthy');
    assert.equal(await card.locator(testId('env-sync')).innerText(), 'Synced');
    assert.equal(await card.locator(testId('env-target')).innerText(), 'on local');
    const href = await card.locator(testId('env-url')).getAttribute('href');
    assert.equal(href, dev.url);
    assert.equal(await text(href!), greeting('v1'));
    assert.equal(
      await card.locator(testId('env-image')).innerText(),
      dev.digest!.slice('sha256:'.length, 'sha256:'.length + 12),
    );
    // The source commit links to the run that built it.
    const source = card.locator(testId('env-commit'));
    assert.equal(await source.innerText(), commit.slice(0, 7));
    assert.equal(await source.getAttribute('href'), `/apps/${repo}/runs/1`);
    const instances = card.locator(testId('env-instance'));
    assert.equal(await instances.count(), dev.instances.length);
    assert.ok(dev.instances.length > 0, 'an instance runs');
    const first = instances.first();
    assert.equal(await first.getAttribute('data-instance'), dev.instances[0]!.id);
    assert.equal(await first.getAttribute('data-state'), 'ready');
    assert.match(await first.innerText(), new RegExp(`\\b${dev.instances[0]!.pid}\\b`));
    await page.screenshot({ path: `${SCREENSHOTS}-app.png`, fullPage: true });
  },
);

step('a second version deploys to dev and the card follows it', async () => {
  setVersion('v2');
  const commit = await push('version v2');
  const dev = await serves('dev', greeting('v2'));
  assert.notEqual(dev.digest, versions[0]!.digest);
  versions.push({ digest: dev.digest!, commit });
  await page
    .locator(`${testId('env-card')}[data-env="dev"][data-digest="${dev.digest}"]`)
    .waitFor();
});

step(
  'the environment page lists both deploys; "Roll back to this" serves version 1 again',
  async () => {
    await page
      .locator(`${testId('env-card')}[data-env="dev"]`)
      .locator(testId('env-link'))
      .click();
    await page.waitForURL((url) => url.pathname === envPage('dev'));
    await page.locator(`${testId('environment-page')}[data-env="dev"]`).waitFor();
    const deploys = page.locator(`${testId('history-row')}[data-trigger="deploy"]`);
    await waitForCount('two deploys in the history', deploys, 2);
    assert.deepEqual(
      await deploys.evaluateAll((rows) => rows.map((row) => row.getAttribute('data-digest'))),
      [versions[1]!.digest, versions[0]!.digest],
    );
    const [newest, oldest] = [deploys.nth(0), deploys.nth(1)];
    assert.equal(await newest.getAttribute('data-live'), 'true');
    assert.equal(await newest.locator(testId('history-rollback')).count(), 0, 'not to what runs');
    assert.equal(await oldest.locator(testId('history-result')).innerText(), 'succeeded');
    await page.locator(`${testId('env-diff')}[data-sync="Synced"]`).waitFor();
    await page.locator(testId('diff-none')).waitFor();

    // Dismissed: nothing happens.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await oldest.locator(testId('history-rollback')).click();
    assert.equal(await page.locator(testId('env-change')).count(), 0);

    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await oldest.locator(testId('history-rollback')).click();
    await page.locator(`${testId('env-change')}[data-status="committed"]`).waitFor();
    const shortV1 = versions[0]!.digest.slice('sha256:'.length, 'sha256:'.length + 12);
    assert.match(
      asked,
      new RegExp(
        `Roll back dev to version ${shortV1} \\(source ${versions[0]!.commit.slice(0, 7)}\\)`,
      ),
    );

    const dev = await serves('dev', greeting('v1'));
    assert.equal(dev.digest, versions[0]!.digest);
    const rollback = historyRows().first();
    await page
      .locator(
        `${testId('history-row')}[data-trigger="rollback"][data-live="true"][data-digest="${dev.digest}"]`,
      )
      .waitFor();
    assert.equal(await rollback.getAttribute('data-trigger'), 'rollback');
    assert.match(await rollback.innerText(), /\bada\b/);
    // Back to version 2 is offered; back to version 1 again is not (that is what runs).
    const byDigest = (digest: string) =>
      page.locator(`${testId('history-row')}[data-trigger="deploy"][data-digest="${digest}"]`);
    await byDigest(versions[1]!.digest).locator(testId('history-rollback')).waitFor();
    assert.equal(
      await byDigest(versions[0]!.digest).locator(testId('history-rollback')).count(),
      0,
    );
    await page
      .locator(`${testId('env-card')}[data-env="dev"][data-digest="${dev.digest}"]`)
      .waitFor();
    await page.locator(`${testId('env-diff')}[data-sync="Synced"]`).waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}-history.png`, fullPage: true });
  },
);

/** Appends environments to valve.yaml (under `environments:`, its last section). */
function addEnvironments(lines: string[]) {
  const spec = join(workDir, appName, 'valve.yaml');
  writeFileSync(spec, `${readFileSync(spec, 'utf8').trimEnd()}\n${lines.join('\n')}\n`);
}

async function waitForEnvironment(name: string) {
  await waitFor(`environment ${name} to exist`, async () => {
    const envs = await api<Environment[]>(
      valve,
      ada.token,
      'GET',
      `/api/apps/${repo}/environments`,
    );
    return envs.body.some((e) => e.name === name);
  });
}

step('dev is promoted to stage from the console: stage runs the same digest', async () => {
  addEnvironments(['  stage: {}']);
  await push('add stage');
  const dev = await serves('dev', greeting('v2'));
  await waitForEnvironment('stage');

  await page.goto(at(envPage('dev')));
  await page.locator(`${testId('env-card')}[data-digest="${dev.digest}"]`).waitFor();
  const open = page.locator(testId('promote-open'));
  await waitFor('the promote button to name stage', async () =>
    (await open.innerText()) === 'Promote to stage' ? true : undefined,
  );
  await open.click();
  await page.locator(testId('promote-form')).waitFor();
  assert.equal(await page.locator(testId('promote-target')).count(), 0, 'one choice: no select');
  await page.click(testId('promote-submit'));
  await page.locator(`${testId('env-change')}[data-status="committed"]`).waitFor();

  const stage = await serves('stage', greeting('v2'));
  assert.equal(stage.digest, dev.digest, 'the same image, not a rebuild');
  assert.notEqual(stage.url, dev.url);
  await page.click(testId('env-change-link'));
  await page.waitForURL((url) => url.pathname === envPage('stage'));
  const promoted = page.locator(
    `${testId('history-row')}[data-trigger="promote"][data-digest="${dev.digest}"]`,
  );
  await promoted.waitFor();
  assert.match(await promoted.innerText(), /from dev/);
  await page
    .locator(`${testId('env-card')}[data-env="stage"][data-digest="${dev.digest}"]`)
    .waitFor();
});

step(
  'stage to prod (of two choices) waits for the approving team; Approve deploys it',
  async () => {
    addEnvironments([
      '  prod:',
      '    approval:',
      `      team: ${team}`,
      '  qa:',
      '    sync:',
      '      automated: false',
    ]);
    await push('add prod and qa');
    await waitForEnvironment('qa');
    const stage = await environment('stage');

    await page.goto(at(envPage('stage')));
    const open = page.locator(testId('promote-open'));
    await waitFor('the promote button to offer a choice', async () =>
      (await open.innerText()) === 'Promote…' ? true : undefined,
    );
    await open.click();
    const target = page.locator(testId('promote-target'));
    assert.deepEqual(
      (
        await target
          .locator('option')
          .evaluateAll((options) => options.map((o) => (o as HTMLOptionElement).value))
      ).sort(),
      ['prod', 'qa'],
    );
    await target.selectOption('prod');
    await page.click(testId('promote-submit'));
    await page.locator(`${testId('env-change')}[data-status="pending"]`).waitFor();
    const approval = page.locator(
      `${testId('deploy-approval')}[data-environment="prod"][data-status="pending"]`,
    );
    await approval.waitFor();
    assert.equal(await approval.locator(testId('deploy-approval-team')).innerText(), team);
    assert.equal((await environment('prod')).digest, null, 'nothing deployed before the approval');
    await page.screenshot({ path: `${SCREENSHOTS}-approval.png`, fullPage: true });

    await approval.locator(testId('deploy-approval-comment')).fill('ship it');
    await approval.locator(testId('deploy-approval-approve')).click();
    await approval.waitFor({ state: 'detached' });
    const prod = await serves('prod', greeting('v2'));
    assert.equal(prod.digest, stage.digest);
    const approved = page.locator(`${testId('history-row')}[data-trigger="promote"]`);
    await page.goto(at(envPage('prod')));
    await approved.waitFor();
    assert.match(await approved.innerText(), /from stage, approved by ada/);
  },
);

step('qa syncs manually: OutOfSync with a diff until Sync is clicked', async () => {
  await page.goto(at(envPage('stage')));
  const stage = await environment('stage');
  await page.click(testId('promote-open'));
  await page.locator(testId('promote-target')).selectOption('qa');
  await page.click(testId('promote-submit'));
  await page.locator(`${testId('env-change')}[data-status="committed"]`).waitFor();
  await page.click(testId('env-change-link'));
  await page.waitForURL((url) => url.pathname === envPage('qa'));

  await page.locator(`${testId('env-card')}[data-env="qa"][data-sync="OutOfSync"]`).waitFor();
  await page.locator(`${testId('env-diff')}[data-sync="OutOfSync"]`).waitFor();
  const whole = page.locator(`${testId('diff-item')}[data-resource="Deployment/hello"]`).first();
  await whole.waitFor();
  assert.match(await whole.innerText(), /not live yet/);
  assert.equal(await page.locator(testId('env-sync-mode')).count(), 1);
  await page.screenshot({ path: `${SCREENSHOTS}-diff.png`, fullPage: true });

  await page.click(testId('env-sync-button'));
  await page.locator(`${testId('env-sync-result')}[data-status="succeeded"]`).waitFor();
  const qa = await serves('qa', greeting('v2'));
  assert.equal(qa.digest, stage.digest);
  await page.locator(`${testId('env-diff')}[data-sync="Synced"]`).waitFor();
  await page.locator(testId('diff-none')).waitFor();
  await page.locator(`${testId('history-row')}[data-trigger="manual sync"]`).waitFor();

  await page.goto(at(`/apps/${repo}`));
  for (const env of ['dev', 'stage', 'prod', 'qa'])
    await page.locator(`${testId('env-card')}[data-env="${env}"][data-health="healthy"]`).waitFor();
  // valve.yaml's order, not the names' (prod, qa, stage would come first that way).
  assert.deepEqual(
    await page
      .locator(testId('env-card'))
      .evaluateAll((cards) => cards.map((card) => card.getAttribute('data-env'))),
    ['dev', 'stage', 'prod', 'qa'],
  );
  const badge = page.locator(`${testId('env-card')}[data-env="prod"] ${testId('env-approval')}`);
  assert.equal(await badge.getAttribute('data-team'), team);
  assert.equal(await badge.getAttribute('data-pending'), 'false');
  assert.equal(await badge.innerText(), `approval: ${team}`);
  assert.equal(
    await page.locator(`${testId('env-card')}[data-env="dev"] ${testId('env-approval')}`).count(),
    0,
  );
  await page.screenshot({ path: `${SCREENSHOTS}-environments.png`, fullPage: true });
});

step(
  "a member of the approving team outside the app's team reads prod's page and approves there",
  async () => {
    const olga = await signup(valve, 'olga', 'ops', password);
    const sam = await signup(valve, 'sam', 'web', password);
    const spec = join(workDir, appName, 'valve.yaml');
    const before = readFileSync(spec, 'utf8');
    const moved = before.replace(/(\n {2}prod:\n {4}approval:\n {6}team: )dev\n/, '$1ops\n');
    assert.notEqual(moved, before, 'prod approved by ops now');
    writeFileSync(spec, moved);
    setVersion('v3');
    await push('version v3; prod approved by team ops');
    const dev = await serves('dev', greeting('v3'));
    const asked = await api<{ status: string; approval: { id: string; team: string } }>(
      valve,
      ada.token,
      'POST',
      `/api/apps/${repo}/promote`,
      { from: 'dev', to: 'prod' },
    );
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    assert.equal(asked.body.approval.team, 'ops');

    // The API: olga reads the environments in valve.yaml's order, changes nothing, sees no
    // secrets; sam, in neither team, sees nothing.
    const envs = await api<{ name: string; approval: { team: string } | null }[]>(
      valve,
      olga.token,
      'GET',
      `/api/apps/${repo}/environments`,
    );
    assert.equal(envs.status, 200, JSON.stringify(envs.body));
    assert.deepEqual(
      envs.body.map((env) => [env.name, env.approval?.team ?? null]),
      [
        ['dev', null],
        ['stage', null],
        ['prod', 'ops'],
        ['qa', null],
      ],
    );
    for (const [path, body] of [
      [`/api/apps/${repo}/environments/prod/sync`, {}],
      [`/api/apps/${repo}/environments/prod/deploy`, { image: dev.digest }],
      [`/api/apps/${repo}/promote`, { from: 'dev', to: 'qa' }],
    ] as const) {
      const refused = await api(valve, olga.token, 'POST', path, body);
      assert.equal(refused.status, 403, `${path}: ${JSON.stringify(refused.body)}`);
    }
    for (const path of [`/api/apps/${repo}/secrets`, `/api/apps/${repo}/runs`]) {
      const hidden = await api(valve, olga.token, 'GET', path);
      assert.equal(hidden.status, 404, `${path}: ${JSON.stringify(hidden.body)}`);
    }
    const seen = await api<{ access: string; lastRun: unknown; environments: unknown[] }>(
      valve,
      olga.token,
      'GET',
      `/api/apps/${repo}`,
    );
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.equal(seen.body.access, 'approver');
    assert.equal(seen.body.lastRun, null, "runs are the app team's");
    assert.equal(seen.body.environments.length, 4);
    for (const path of [
      `/api/apps/${repo}`,
      `/api/apps/${repo}/environments`,
      `/api/apps/${repo}/environments/prod/history`,
      `/api/apps/${repo}/approvals`,
    ]) {
      const hidden = await api(valve, sam.token, 'GET', path);
      assert.equal(hidden.status, 404, `${path}: ${JSON.stringify(hidden.body)}`);
    }

    // The console: prod's page with the approval pending, read only but for the decision.
    await context.clearCookies();
    await signIn('olga');
    await page.goto(at(envPage('prod')));
    await page.locator(`${testId('environment-page')}[data-env="prod"]`).waitFor();
    await page.locator(testId('env-approver-note')).waitFor();
    const badge = page.locator(`${testId('env-approval')}[data-pending="true"]`);
    await badge.waitFor();
    assert.equal(await badge.getAttribute('data-team'), 'ops');
    assert.equal(await badge.innerText(), 'approval pending: ops');
    await page.locator(testId('env-diff')).waitFor();
    await page
      .locator(`${testId('history-row')}[data-trigger="promote"]`)
      .first()
      .waitFor();
    for (const action of ['promote-open', 'env-sync-button', 'history-rollback'])
      assert.equal(await page.locator(testId(action)).count(), 0, `no ${action}`);
    const approval = page.locator(
      `${testId('deploy-approval')}[data-approval="${asked.body.approval.id}"][data-status="pending"]`,
    );
    await approval.waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}-approver.png`, fullPage: true });
    await approval.locator(testId('deploy-approval-comment')).fill('ops says yes');
    await approval.locator(testId('deploy-approval-approve')).click();
    await approval.waitFor({ state: 'detached' });

    const prod = await serves('prod', greeting('v3'));
    assert.equal(prod.digest, dev.digest);
    await page
      .locator(`${testId('history-row')}[data-trigger="promote"][data-digest="${dev.digest}"]`)
      .filter({ hasText: 'approved by olga' })
      .waitFor();
    await page.locator(`${testId('env-approval')}[data-pending="false"]`).waitFor();

    // The app page, as an approver: its environments, none of its runs, source or secrets.
    await page.locator(testId('env-app-link')).click();
    await page.locator(testId('app-approver-note')).waitFor();
    await page.locator(`${testId('env-card')}[data-env="prod"]`).waitFor();
    for (const part of ['dispatch-open', 'app-clone-url', 'secrets'])
      assert.equal(await page.locator(testId(part)).count(), 0, `no ${part}`);
  },
);

step('a viewer sees the environment page without any action', async () => {
  const deploys = (
    await api<{ deploys: { kind: string }[] }>(
      valve,
      ada.token,
      'GET',
      `/api/apps/${repo}/environments/dev/history`,
    )
  ).body.deploys.filter((d) => d.kind === 'deploy');
  await signup(valve, 'vic', team, password);
  const approved = await api(valve, ada.token, 'POST', `/api/teams/${team}/members/vic`, {
    role: 'viewer',
    status: 'active',
  });
  assert.equal(approved.status, 204);
  await context.clearCookies();
  await signIn('vic');
  await page.goto(at(envPage('dev')));
  await waitForCount(
    'the deploys in the history',
    page.locator(`${testId('history-row')}[data-trigger="deploy"]`),
    deploys.length,
  );
  assert.equal(await page.locator(testId('history-rollback')).count(), 0);
  assert.equal(await page.locator(testId('promote-open')).count(), 0);
  assert.equal(await page.locator(testId('env-sync-button')).count(), 0);
  await page.locator(`${testId('env-diff')}[data-sync="Synced"]`).waitFor();
  // A phone's width: the page still reads (wide tables scroll inside their card).
  await page.setViewportSize({ width: 420, height: 900 });
  await page.screenshot({ path: `${SCREENSHOTS}-narrow.png`, fullPage: true });
  assert.deepEqual(pageErrors, [], 'no errors in the page');
});
