import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { ArtifactStore } from './artifact-store.js';
import { stepFixture, type StepFixture } from './step-fixture.js';
import { uploadArtifactStep } from './upload-artifact.js';

const fixtures: StepFixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
});

async function job(): Promise<StepFixture> {
  const created = await stepFixture();
  fixtures.push(created);
  const ws = created.context.workspace;
  await mkdir(path.join(ws, 'path/to/artifact'), { recursive: true });
  await mkdir(path.join(ws, 'reports/unit'), { recursive: true });
  await writeFile(path.join(ws, 'path/to/artifact/world.txt'), 'hello');
  await writeFile(path.join(ws, 'path/to/artifact/debug.tmp'), 'tmp');
  await writeFile(path.join(ws, 'path/to/artifact/.secret'), 'hidden');
  await writeFile(path.join(ws, 'reports/unit/junit.xml'), '<testsuite/>');
  return created;
}

const upload = (fixture: StepFixture, raw: Record<string, string>) =>
  uploadArtifactStep.run(fixture.context, uploadArtifactStep.inputs.parse(raw));

const stored = (fixture: StepFixture, name: string) =>
  new ArtifactStore(fixture.context.storage.artifacts).get(name);

describe('valve/upload-artifact', () => {
  test('a directory: its files relative to it, hidden files and exclusions left out', async () => {
    const fixture = await job();
    const outputs = await upload(fixture, {
      name: 'site',
      path: 'path/to/artifact/\n!**/*.tmp',
      'retention-days': '5',
    });
    const metadata = await stored(fixture, 'site');
    assert.ok(metadata);
    assert.deepEqual(outputs, {
      'artifact-id': metadata.id,
      'artifact-digest': metadata.digest,
      size: String(metadata.size),
    });
    assert.deepEqual(
      metadata.files.map((file) => [file.path, file.size]),
      [['world.txt', 5]],
    );
    assert.equal(
      metadata.files[0]!.sha256,
      '2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
    );
    assert.equal(metadata.retentionDays, 5);
    assert.equal(Date.parse(metadata.expiresAt) - Date.parse(metadata.createdAt), 5 * 86_400_000);
    assert.equal(metadata.runId, 'run-1');
    assert.equal(metadata.jobKey, 'build');
  });

  test('several paths keep their hierarchy below the least common ancestor', async () => {
    const fixture = await job();
    await upload(fixture, {
      path: 'path/to/artifact/world.txt reports/**/*.xml',
      'include-hidden-files': 'true',
    });
    const metadata = await stored(fixture, 'artifact');
    assert.deepEqual(
      metadata?.files.map((file) => file.path),
      ['path/to/artifact/world.txt', 'reports/unit/junit.xml'],
    );
    assert.equal(metadata?.retentionDays, 90);
  });

  test('a wildcard keeps the hierarchy from the first wildcard on', async () => {
    const fixture = await job();
    await upload(fixture, { name: 'xml', path: 'reports/*/junit.xml' });
    assert.deepEqual(
      (await stored(fixture, 'xml'))?.files.map((file) => file.path),
      ['unit/junit.xml'],
    );
  });

  test('names are unique per run unless overwrite; overwrite gives a new id', async () => {
    const fixture = await job();
    const first = await upload(fixture, { name: 'once', path: 'reports' });
    await assert.rejects(
      upload(fixture, { name: 'once', path: 'path' }),
      /an artifact named once already exists in this run/,
    );
    const second = await upload(fixture, { name: 'once', path: 'path', overwrite: 'true' });
    assert.notEqual(second['artifact-id'], first['artifact-id']);
    assert.deepEqual(
      (await stored(fixture, 'once'))?.files.map((file) => file.path),
      ['to/artifact/debug.tmp', 'to/artifact/world.txt'],
    );
    // Nothing half-written is left next to the artifacts.
    assert.deepEqual(await readdir(path.join(fixture.context.storage.artifacts, '.tmp')), []);
  });

  test('if-no-files-found: warn (default), error, ignore', async () => {
    const fixture = await job();
    assert.deepEqual(await upload(fixture, { path: 'nothing/**' }), {});
    assert.ok(fixture.logs.some((line) => line.startsWith('warning: no files were found')));
    await assert.rejects(
      upload(fixture, { path: 'nothing', 'if-no-files-found': 'error' }),
      /no files were found with the provided path: nothing/,
    );
    const before = fixture.logs.length;
    assert.deepEqual(await upload(fixture, { path: 'nothing', 'if-no-files-found': 'ignore' }), {});
    assert.equal(fixture.logs.length, before);
    assert.equal(await stored(fixture, 'artifact'), null);
  });

  test('paths escaping the workspace, bad names and retention are refused', async () => {
    const fixture = await job();
    await assert.rejects(
      upload(fixture, { path: '../../etc/passwd' }),
      /with.path: "..\/..\/etc\/passwd" is outside the workspace/,
    );
    await assert.rejects(upload(fixture, { path: '/etc/passwd' }), /is outside the workspace/);
    for (const name of ['../x', 'a/b', '.hidden', 'a:b', '']) {
      assert.equal(uploadArtifactStep.inputs.safeParse({ name, path: 'x' }).success, false, name);
    }
    assert.equal(
      uploadArtifactStep.inputs.safeParse({ path: 'x', 'retention-days': '91' }).success,
      false,
    );
  });

  test('symlinks: to a workspace file, uploaded as that file; elsewhere, skipped', async () => {
    const fixture = await job();
    const ws = fixture.context.workspace;
    await symlink('world.txt', path.join(ws, 'path/to/artifact/alias.txt'));
    await symlink('/etc/hostname', path.join(ws, 'path/to/artifact/host'));
    await upload(fixture, { name: 'dir', path: 'path/to/artifact' });
    const files = (await stored(fixture, 'dir'))?.files.map((file) => [file.path, file.size]);
    assert.deepEqual(files, [
      ['alias.txt', 5],
      ['debug.tmp', 3],
      ['world.txt', 5],
    ]);
    assert.ok(
      fixture.logs.includes(
        'warning: path/to/artifact/host is a symlink to no file in the workspace; skipped',
      ),
    );
    const archive = await readFile(
      new ArtifactStore(fixture.context.storage.artifacts).archivePath('dir'),
    );
    assert.ok(archive.length > 0);
  });
});
