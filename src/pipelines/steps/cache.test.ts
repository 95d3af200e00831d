import assert from 'node:assert/strict';
import { mkdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { cacheRestoreStep } from './cache-restore.js';
import { cacheSaveStep } from './cache-save.js';
import { cacheStep } from './cache.js';
import { stepFixture, type StepFixture } from './step-fixture.js';

const fixtures: StepFixture[] = [];
afterEach(async () => {
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
});

async function fixture(): Promise<StepFixture> {
  const created = await stepFixture();
  fixtures.push(created);
  return created;
}

/** Runs a step the way the runner does: inputs through the step's schema first. */
async function run<S extends typeof cacheStep | typeof cacheRestoreStep | typeof cacheSaveStep>(
  step: S,
  job: StepFixture,
  raw: Record<string, string>,
) {
  return step.run(job.context, step.inputs.parse(raw) as never);
}

async function writeDeps(job: StepFixture, version: string) {
  const deps = path.join(job.context.workspace, 'node_modules');
  await mkdir(path.join(deps, 'left-pad'), { recursive: true });
  await mkdir(path.join(deps, '.bin'), { recursive: true });
  await writeFile(path.join(deps, 'left-pad/index.js'), `module.exports = '${version}';`);
  await symlink('../left-pad/index.js', path.join(deps, '.bin/left-pad'));
}

describe('valve/cache', () => {
  test('miss, save at the end of a successful job, exact hit in the next job', async () => {
    const first = await fixture();
    const inputs = { path: 'node_modules', key: 'npm-abc', 'restore-keys': 'npm-' };
    assert.deepEqual(await run(cacheStep, first, inputs), {
      'cache-hit': 'false',
      'cache-matched-key': '',
    });
    assert.deepEqual(
      first.postSteps.map((post) => post.name),
      ['Save cache npm-abc'],
    );
    await writeDeps(first, 'v1');
    await first.endJob('success');
    assert.ok(first.logs.some((line) => line.startsWith('cache saved: npm-abc')));

    const second = await first.nextJob('test');
    assert.deepEqual(await run(cacheStep, second, inputs), {
      'cache-hit': 'true',
      'cache-matched-key': 'npm-abc',
    });
    // An exact hit has nothing to save.
    assert.deepEqual(second.postSteps, []);
    const ws = second.context.workspace;
    assert.equal(
      await readFile(path.join(ws, 'node_modules/left-pad/index.js'), 'utf8'),
      "module.exports = 'v1';",
    );
    assert.equal(
      await readlink(path.join(ws, 'node_modules/.bin/left-pad')),
      '../left-pad/index.js',
    );
  });

  test('a restore-key match restores but is no hit, and the new key is saved', async () => {
    const first = await fixture();
    await run(cacheStep, first, { path: 'node_modules', key: 'npm-old' });
    await writeDeps(first, 'old');
    await first.endJob('success');

    const second = await first.nextJob('again');
    const outputs = await run(cacheStep, second, {
      path: 'node_modules',
      key: 'npm-new',
      'restore-keys': 'pip-\nnpm-',
    });
    assert.deepEqual(outputs, { 'cache-hit': 'false', 'cache-matched-key': 'npm-old' });
    assert.equal(
      await readFile(path.join(second.context.workspace, 'node_modules/left-pad/index.js'), 'utf8'),
      "module.exports = 'old';",
    );
    await second.endJob('success');
    const third = await first.nextJob('third');
    assert.equal(
      (await run(cacheStep, third, { path: 'node_modules', key: 'npm-new' }))['cache-hit'],
      'true',
    );
  });

  test('nothing is saved when the job fails or is cancelled', async () => {
    for (const status of ['failure', 'cancelled'] as const) {
      const job = await fixture();
      await run(cacheStep, job, { path: 'node_modules', key: `k-${status}` });
      await writeDeps(job, status);
      await job.endJob(status);
      assert.ok(job.logs.includes(`cache not saved: the job did not succeed (${status})`));
      const next = await job.nextJob('next');
      assert.equal(
        (await run(cacheStep, next, { path: 'node_modules', key: `k-${status}` }))[
          'cache-matched-key'
        ],
        '',
      );
    }
  });

  test('no matching files: a warning, no entry', async () => {
    const job = await fixture();
    await run(cacheStep, job, { path: 'missing/**', key: 'empty' });
    await job.endJob('success');
    assert.ok(job.logs.some((line) => line.startsWith('warning: no files match missing/**')));
  });

  test('inputs: paths outside the workspace and unsafe keys are refused', async () => {
    const job = await fixture();
    await assert.rejects(
      run(cacheStep, job, { path: '../elsewhere', key: 'k' }),
      /with.path: "..\/elsewhere" is outside the workspace/,
    );
    assert.equal(cacheStep.inputs.safeParse({ path: 'a', key: 'has space' }).success, false);
    assert.equal(
      cacheStep.inputs.safeParse({ path: 'a', key: 'k', 'restore-keys': 'ok\nnot,ok' }).success,
      false,
    );
    assert.equal(cacheStep.inputs.safeParse({ path: ' ', key: 'k' }).success, false);
  });
});

describe('valve/cache-save and valve/cache-restore', () => {
  test('save now, restore elsewhere; lookup-only and fail-on-cache-miss', async () => {
    const builder = await fixture();
    await writeDeps(builder, 'saved');
    assert.deepEqual(await run(cacheSaveStep, builder, { path: 'node_modules', key: 'mod-1' }), {
      saved: 'true',
    });
    assert.deepEqual(await run(cacheSaveStep, builder, { path: 'node_modules', key: 'mod-1' }), {
      saved: 'false',
    });
    assert.deepEqual(builder.postSteps, []);

    const lookup = await builder.nextJob('lookup');
    assert.deepEqual(
      await run(cacheRestoreStep, lookup, {
        path: 'node_modules',
        key: 'mod-2',
        'restore-keys': 'mod-',
        'lookup-only': 'true',
      }),
      { 'cache-hit': 'false', 'cache-primary-key': 'mod-2', 'cache-matched-key': 'mod-1' },
    );
    await assert.rejects(
      readFile(path.join(lookup.context.workspace, 'node_modules/left-pad/index.js')),
      { code: 'ENOENT' },
    );

    const restorer = await builder.nextJob('restore');
    assert.deepEqual(
      await run(cacheRestoreStep, restorer, { path: 'node_modules', key: 'mod-1' }),
      { 'cache-hit': 'true', 'cache-primary-key': 'mod-1', 'cache-matched-key': 'mod-1' },
    );
    assert.deepEqual(restorer.postSteps, []);
    assert.equal(
      await readFile(
        path.join(restorer.context.workspace, 'node_modules/left-pad/index.js'),
        'utf8',
      ),
      "module.exports = 'saved';",
    );

    await assert.rejects(
      run(cacheRestoreStep, restorer, {
        path: 'node_modules',
        key: 'nothing',
        'restore-keys': 'none-',
        'fail-on-cache-miss': 'true',
      }),
      /no cache entry for key nothing or restore keys none-/,
    );
  });
});
