import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { ArtifactStore } from './artifact-store.js';
import { downloadArtifactStep } from './download-artifact.js';
import { stepFixture, type StepFixture } from './step-fixture.js';
import { uploadArtifactStep } from './upload-artifact.js';

const fixtures: StepFixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
});

/** A build job that uploaded `dist` (two files) and `coverage`, and a deploy job after it. */
async function twoJobs(): Promise<{ build: StepFixture; deploy: StepFixture }> {
  const build = await stepFixture();
  fixtures.push(build);
  const ws = build.context.workspace;
  await mkdir(path.join(ws, 'dist/js'), { recursive: true });
  await writeFile(path.join(ws, 'dist/index.html'), '<h1>shop</h1>');
  await writeFile(path.join(ws, 'dist/js/app.js'), 'run()', { mode: 0o755 });
  await writeFile(path.join(ws, 'coverage.txt'), '93%');
  for (const [name, p] of [
    ['dist', 'dist'],
    ['coverage', 'coverage.txt'],
  ] as const) {
    await uploadArtifactStep.run(build.context, uploadArtifactStep.inputs.parse({ name, path: p }));
  }
  return { build, deploy: await build.nextJob('deploy') };
}

const download = (fixture: StepFixture, raw: Record<string, string>) =>
  downloadArtifactStep.run(fixture.context, downloadArtifactStep.inputs.parse(raw));

describe('valve/download-artifact', () => {
  test('by name, into a directory of the next job, contents and modes intact', async () => {
    const { deploy } = await twoJobs();
    const ws = deploy.context.workspace;
    const outputs = await download(deploy, { name: 'dist', path: 'public' });
    assert.equal(outputs['download-path'], path.join(ws, 'public'));
    assert.equal(await readFile(path.join(ws, 'public/index.html'), 'utf8'), '<h1>shop</h1>');
    assert.equal(await readFile(path.join(ws, 'public/js/app.js'), 'utf8'), 'run()');
    const { mode } = await stat(path.join(ws, 'public/js/app.js'));
    assert.equal(mode & 0o111, 0o111);
  });

  test('without a name: every artifact of the run into its own directory', async () => {
    const { deploy } = await twoJobs();
    const ws = deploy.context.workspace;
    await download(deploy, {});
    assert.deepEqual((await readdir(ws)).sort(), ['coverage', 'dist']);
    assert.equal(await readFile(path.join(ws, 'coverage/coverage.txt'), 'utf8'), '93%');
    assert.equal(await readFile(path.join(ws, 'dist/js/app.js'), 'utf8'), 'run()');
  });

  test('an unknown name names the artifacts there are', async () => {
    const { deploy } = await twoJobs();
    await assert.rejects(
      download(deploy, { name: 'docs' }),
      /no artifact named docs in this run \(there are: coverage, dist\)/,
    );
  });

  test('a changed archive is refused before anything is written', async () => {
    const { build, deploy } = await twoJobs();
    const archive = new ArtifactStore(build.context.storage.artifacts).archivePath('dist');
    const bytes = await readFile(archive);
    const at = bytes.length - 5;
    bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at);
    await writeFile(archive, bytes);
    await assert.rejects(
      download(deploy, { name: 'dist', path: 'out' }),
      /artifact dist is corrupt/,
    );
    assert.deepEqual(await readdir(path.join(deploy.context.workspace, 'out')), []);
  });

  test('a file that does not match its recorded sha256 fails the download', async () => {
    const { build, deploy } = await twoJobs();
    const metadataFile = path.join(build.context.storage.artifacts, 'coverage/artifact.json');
    const metadata = JSON.parse(await readFile(metadataFile, 'utf8'));
    metadata.files[0].sha256 = '0'.repeat(64);
    await writeFile(metadataFile, JSON.stringify(metadata));
    await assert.rejects(
      download(deploy, { name: 'coverage' }),
      /coverage.txt does not match its recorded size and sha256/,
    );
  });

  test('destinations outside the workspace, or through a symlink out of it, are refused', async () => {
    const { build, deploy } = await twoJobs();
    await assert.rejects(
      download(deploy, { name: 'dist', path: '../elsewhere' }),
      /with.path: "..\/elsewhere" is outside the workspace/,
    );
    const outside = path.join(build.root, 'outside');
    await mkdir(outside);
    await symlink(outside, path.join(deploy.context.workspace, 'link'));
    await assert.rejects(
      download(deploy, { name: 'dist', path: 'link/site' }),
      /leads through a symlink outside the workspace/,
    );
    assert.deepEqual(await readdir(outside), []);
  });
});
