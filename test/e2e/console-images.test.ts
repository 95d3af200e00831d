/**
 * The console's Images pages in a real browser (Chromium through playwright-core) against the
 * real server: a pushed commit's pipeline run builds and stores an image (`valve/build-image`),
 * and a second tag is pushed over the OCI Distribution API. The app's Images page shows both
 * tags with their digest, size and who pushed them (the run, the user); a tag opens its
 * manifest with its layers and config; a tag is deleted after confirming and is gone; the
 * team's Images page lists the repository; a viewer sees the tags but no Delete button.
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
  signup,
  startValve,
  waitFor,
  waitForRun,
  type Session,
  type Valve,
} from './harness.js';

const SCREENSHOT_TAGS = '/tmp/valve-console-images.png';
const SCREENSHOT_MANIFEST = '/tmp/valve-console-image-manifest.png';

const password = 'correct horse battery';
const team = 'dev';
const appName = 'hello';
const repo = `${team}/${appName}`;
const RELEASE_TAG = 'release-1';

let valve: Valve;
let context: BrowserContext;
let page: Page;
let profileDir: string;
let workDir: string;
let ada: Session;
/** The tag the build step gave the pushed commit's image: the commit's first 12 digits. */
let builtTag: string;
let runNumber: number;

interface Tag {
  tag: string;
  digest: string;
  size: number;
  pushed: { by: string | null; via: string; run: number | null } | null;
}
interface Manifest {
  digest: string;
  layers: { digest: string; size: number }[];
  config: { entrypoint: string[] | null } | null;
}

const at = (path: string) => new URL(path, valve.url).href;
const testId = (id: string) => `[data-testid="${id}"]`;
const tagsPath = `/api/teams/${team}/images/${appName}/tags`;
const tagRow = (tag: string) => page.locator(`${testId('image-tag-row')}[data-tag="${tag}"]`);

/** The console's own size format (format.ts), to compare what is shown with the API's bytes. */
function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

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

before(async () => {
  valve = await startValve();
  profileDir = mkdtempSync(join(tmpdir(), 'valve-images-chromium-'));
  workDir = mkdtempSync(join(tmpdir(), 'valve-images-work-'));
  ({ context, page } = await launchChromium(profileDir));
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

step('a pushed commit runs the pipeline, which builds and stores an image', async () => {
  ada = await signup(valve, 'ada', team, password);
  const created = await api(valve, ada.token, 'POST', '/api/apps', {
    team,
    name: appName,
    template: 'node-http',
  });
  assert.equal(created.status, 201);

  const dir = join(workDir, appName);
  git(workDir, ['clone', '-q', cloneUrl(valve, ada, repo), dir]);
  // Build and push only: the deploy is another test's subject.
  const workflow = join(dir, '.valve/workflows/ci.yml');
  const buildOnly = readFileSync(workflow, 'utf8').replace(
    /\n\s+- name: Deploy to dev[\s\S]*$/,
    '\n',
  );
  assert.doesNotMatch(buildOnly, /valve\/deploy/);
  writeFileSync(workflow, buildOnly);
  git(dir, ['commit', '-qam', 'Build the image only']);
  git(dir, ['push', '-q', 'origin', 'main']);
  const commit = git(dir, ['rev-parse', 'HEAD']).output.trim();
  builtTag = commit.slice(0, 12);

  const run = await waitFor('the push to start a run', async () => {
    const runs = await api<{ number: number; commit: string }[]>(
      valve,
      ada.token,
      'GET',
      `/api/apps/${repo}/runs`,
    );
    return runs.body.find((r) => r.commit === commit);
  });
  runNumber = run.number;
  const finished = await waitForRun(valve, ada, repo, runNumber);
  assert.equal(finished.status, 'succeeded', JSON.stringify(finished, null, 2));

  // A second tag for the same image, pushed as a registry client does (Basic, API token).
  const basic = `Basic ${Buffer.from(`ada:${ada.token}`).toString('base64')}`;
  const manifest = await fetch(at(`/v2/${repo}/manifests/${builtTag}`), {
    headers: { authorization: basic, accept: 'application/vnd.oci.image.manifest.v1+json' },
  });
  assert.equal(manifest.status, 200);
  const pushed = await fetch(at(`/v2/${repo}/manifests/${RELEASE_TAG}`), {
    method: 'PUT',
    headers: { authorization: basic, 'content-type': manifest.headers.get('content-type')! },
    body: new Uint8Array(await manifest.arrayBuffer()),
  });
  assert.equal(pushed.status, 201, await pushed.text());
});

step("the app's Images page lists the tags with digest, size and who pushed", async () => {
  const tags = (await api<Tag[]>(valve, ada.token, 'GET', tagsPath)).body;
  const built = tags.find((t) => t.tag === builtTag);
  assert.ok(built, `no tag ${builtTag} in ${JSON.stringify(tags)}`);
  assert.deepEqual(built.pushed && { ...built.pushed }, {
    ...built.pushed,
    by: 'ada',
    via: 'pipeline',
    run: runNumber,
  });

  await signIn('ada');
  await page.goto(at(`/apps/${repo}`));
  await page.click(testId('app-images-link'));
  await page.waitForURL((url) => url.pathname === `/apps/${repo}/images`);

  const row = tagRow(builtTag);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-digest'), built.digest);
  const digest = row.locator(testId('image-tag-digest'));
  assert.equal(
    await digest.innerText(),
    built.digest.slice('sha256:'.length, 'sha256:'.length + 12),
  );
  assert.equal(await digest.getAttribute('title'), built.digest);
  const size = row.locator(testId('image-tag-size'));
  assert.equal(await size.innerText(), formatBytes(built.size));
  assert.equal(Number(await size.getAttribute('data-bytes')), built.size);
  const builtBy = row.locator(testId('image-tag-pushed-by'));
  assert.equal(await builtBy.getAttribute('data-via'), 'pipeline');
  assert.equal(await builtBy.getAttribute('data-run'), String(runNumber));
  assert.match(await builtBy.innerText(), new RegExp(`run #${runNumber}\\s+by ada`));

  const release = tagRow(RELEASE_TAG);
  await release.waitFor();
  assert.equal(await release.getAttribute('data-digest'), built.digest, 'the same image');
  const releaseBy = release.locator(testId('image-tag-pushed-by'));
  assert.equal(await releaseBy.getAttribute('data-via'), 'registry');
  assert.equal(await releaseBy.innerText(), 'ada');
  await page.screenshot({ path: SCREENSHOT_TAGS, fullPage: true });
});

step('a tag opens its manifest: layers with their sizes, and the config', async () => {
  const tags = (await api<Tag[]>(valve, ada.token, 'GET', tagsPath)).body;
  const digest = tags.find((t) => t.tag === builtTag)!.digest;
  const manifest = (
    await api<Manifest>(
      valve,
      ada.token,
      'GET',
      `/api/teams/${team}/images/${appName}/manifests/${encodeURIComponent(digest)}`,
    )
  ).body;
  assert.ok(manifest.layers.length > 0, 'the built image has layers');

  await tagRow(builtTag).locator(testId('image-tag-link')).click();
  await page.waitForURL((url) => url.pathname === `/apps/${repo}/images/${digest}`);
  const shown = page.locator(`${testId('image-manifest')}[data-digest="${digest}"]`);
  await shown.waitFor();
  assert.equal(await shown.getAttribute('data-kind'), 'image');
  assert.equal(await page.locator(testId('manifest-digest')).getAttribute('data-digest'), digest);
  assert.deepEqual(
    (await page.locator(testId('manifest-tags')).innerText()).split(/\s+/).sort(),
    [builtTag, RELEASE_TAG].sort(),
  );
  const layers = page.locator(testId('layer-row'));
  assert.equal(await layers.count(), manifest.layers.length);
  for (const [i, layer] of manifest.layers.entries()) {
    const row = layers.nth(i);
    assert.equal(await row.getAttribute('data-digest'), layer.digest);
    assert.equal(await row.locator(testId('layer-size')).innerText(), formatBytes(layer.size));
  }
  const entrypoint = await page.locator(testId('config-entrypoint')).innerText();
  assert.equal(
    entrypoint,
    manifest.config?.entrypoint ? JSON.stringify(manifest.config.entrypoint) : '—',
  );
  assert.match(
    await page.locator(testId('config-labels')).innerText(),
    /org\.opencontainers\.image\.revision/,
  );
  await page.screenshot({ path: SCREENSHOT_MANIFEST, fullPage: true });
});

step('deleting a tag asks first, then the tag is gone (the image stays)', async () => {
  await page.click(testId('manifest-repo-link'));
  await page.waitForURL((url) => url.pathname === `/apps/${repo}/images`);
  await tagRow(RELEASE_TAG).waitFor();

  // Dismissed: nothing happens.
  page.once('dialog', (dialog) => void dialog.dismiss());
  await tagRow(RELEASE_TAG).locator(testId('image-tag-delete')).click();
  assert.equal(await tagRow(RELEASE_TAG).count(), 1);
  assert.ok(
    (await api<Tag[]>(valve, ada.token, 'GET', tagsPath)).body.some((t) => t.tag === RELEASE_TAG),
  );

  let asked = '';
  page.once('dialog', (dialog) => {
    asked = dialog.message();
    void dialog.accept();
  });
  await tagRow(RELEASE_TAG).locator(testId('image-tag-delete')).click();
  await tagRow(RELEASE_TAG).waitFor({ state: 'detached' });
  assert.match(asked, new RegExp(`Delete tag ${RELEASE_TAG} of ${repo}`));
  await page.locator(testId('image-tag-deleted')).waitFor();
  await tagRow(builtTag).waitFor();
  assert.deepEqual(
    (await api<Tag[]>(valve, ada.token, 'GET', tagsPath)).body.map((t) => t.tag),
    [builtTag],
  );
});

step("the team's Images page lists the repository", async () => {
  await page.click(testId('nav-images'));
  await page.waitForURL((url) => url.pathname === '/images');
  const row = page.locator(`${testId('image-repo-row')}[data-repo="${repo}"]`);
  await row.waitFor();
  assert.equal(await row.locator(testId('image-repo-tags')).innerText(), '1');
  await row.locator(testId('image-repo-link')).click();
  await page.waitForURL((url) => url.pathname === `/apps/${repo}/images`);
  await tagRow(builtTag).waitFor();
});

step('a viewer sees the tags but no Delete button', async () => {
  await signup(valve, 'vic', team, password);
  const approved = await api(valve, ada.token, 'POST', `/api/teams/${team}/members/vic`, {
    role: 'viewer',
    status: 'active',
  });
  assert.equal(approved.status, 204);
  await context.clearCookies();
  await signIn('vic');
  await page.goto(at(`/apps/${repo}/images`));
  await tagRow(builtTag).waitFor();
  assert.equal(await page.locator(testId('image-tag-delete')).count(), 0);
});
