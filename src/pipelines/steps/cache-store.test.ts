import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CacheStore, cacheKeySchema, cacheVersion, type CacheLimits } from './cache-store.js';
import { selectFiles } from './workspace-files.js';

let root: string;
let workspace: string;
const version = cacheVersion(['deps']);

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'valve-cache-store-'));
  workspace = path.join(root, 'ws');
  await mkdir(path.join(workspace, 'deps'), { recursive: true });
  await writeFile(path.join(workspace, 'deps/a.txt'), 'a'.repeat(2000));
});
after(() => rm(root, { recursive: true, force: true }));

/** A store with a clock the test moves by hand. */
function storeAt(name: string, limits: CacheLimits = { maxBytes: 1e9, maxIdleDays: 7 }) {
  const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
  const store = new CacheStore(path.join(root, name), limits, () => new Date(clock.now));
  return {
    store,
    clock,
    async save(key: string, ref = 'refs/heads/main', v = version) {
      clock.now += 1000;
      const { entries } = await selectFiles(workspace, ['deps'], { dot: true, what: 'path' });
      return store.save({ key, version: v, ref, entries });
    },
  };
}

describe('CacheStore', () => {
  test('exact key first, then the newest entry for the key or each restore key as a prefix', async () => {
    const { store, save } = storeAt('match');
    await save('npm-linux-aaa');
    await save('npm-linux-bbb');
    await save('npm-mac-ccc');
    const find = (key: string, restoreKeys: string[] = []) =>
      store
        .find({ key, restoreKeys, version, ref: 'refs/heads/main' })
        .then((found) => found && [found.entry.key, found.exact]);

    assert.deepEqual(await find('npm-linux-aaa', ['npm-']), ['npm-linux-aaa', true]);
    assert.deepEqual(await find('npm-linux-zzz', ['npm-linux-', 'npm-']), ['npm-linux-bbb', false]);
    assert.deepEqual(await find('npm-linux-zzz', ['npm-win-', 'npm-']), ['npm-mac-ccc', false]);
    // The key itself is tried as a prefix before the restore keys (GitHub's order).
    assert.deepEqual(await find('npm-linux', ['npm-mac-']), ['npm-linux-bbb', false]);
    assert.equal(await find('pip-', ['pip']), null);
    // Another path list is another version: never restored in place of this one.
    assert.equal(
      await store.find({
        key: 'npm-linux-aaa',
        restoreKeys: ['npm-'],
        version: cacheVersion(['other']),
        ref: 'refs/heads/main',
      }),
      null,
    );
  });

  test("the run's own ref is searched first, then every ref", async () => {
    const { store, save } = storeAt('refs');
    await save('deps-1', 'refs/heads/feature');
    await save('deps-2', 'refs/heads/main');
    const on = (ref: string) =>
      store.find({ key: 'deps-x', restoreKeys: ['deps-'], version, ref }).then((f) => f?.entry.key);
    assert.equal(await on('refs/heads/feature'), 'deps-1');
    assert.equal(await on('refs/heads/main'), 'deps-2');
    assert.equal(await on('refs/heads/other'), 'deps-2');
  });

  test('entries are immutable: a second save of a key keeps the first', async () => {
    const { store, save } = storeAt('immutable');
    assert.equal((await save('k')).saved, true);
    const second = await save('k');
    assert.deepEqual(second, { saved: false, reason: 'an entry with key k exists' });
    assert.equal((await store.list()).length, 1);
  });

  test('concurrent saves of one key: exactly one wins, no temp files remain', async () => {
    const { store, save } = storeAt('race');
    const results = await Promise.all([save('same'), save('same'), save('same')]);
    assert.equal(results.filter((result) => result.saved).length, 1);
    assert.equal((await store.list()).length, 1);
    assert.deepEqual(await readdir(path.join(root, 'race/tmp')), []);
  });

  test('beyond maxBytes the least recently used entries go; restoring counts as use', async () => {
    const probe = storeAt('probe');
    const one = await probe.save('probe');
    assert.ok(one.saved);
    const size = one.entry.size;
    const { store, save, clock } = storeAt('lru', { maxBytes: size * 2, maxIdleDays: 7 });
    await save('old');
    await save('middle');
    clock.now += 1000;
    const old = (await store.list()).find((entry) => entry.key === 'old')!;
    await store.restore(old, path.join(root, 'lru-restore'));
    const third = await save('new');
    assert.ok(third.saved);
    assert.deepEqual(
      third.evicted.map((entry) => entry.key),
      ['middle'],
    );
    assert.deepEqual((await store.list()).map((entry) => entry.key).sort(), ['new', 'old']);
  });

  test('an archive larger than the whole limit is not kept', async () => {
    const { store, save } = storeAt('tiny', { maxBytes: 10, maxIdleDays: 7 });
    const result = await save('big');
    assert.equal(result.saved, false);
    assert.match(
      !result.saved ? result.reason : '',
      /larger than the app's cache limit \(10 bytes\)/,
    );
    assert.deepEqual(await store.list(), []);
  });

  test('entries idle past maxIdleDays and leftovers of crashed saves are removed', async () => {
    const { save, clock } = storeAt('idle', { maxBytes: 1e9, maxIdleDays: 7 });
    await save('stale');
    clock.now += 8 * 24 * 3600 * 1000;
    const leftover = path.join(root, 'idle/tmp/crashed.tar.gz');
    await writeFile(leftover, 'partial');
    const hourAgo = new Date(clock.now - 2 * 3600 * 1000);
    await utimes(leftover, hourAgo, hourAgo);
    const fresh = await save('fresh');
    assert.ok(fresh.saved);
    assert.deepEqual(
      fresh.evicted.map((entry) => entry.key),
      ['stale'],
    );
    assert.deepEqual(await readdir(path.join(root, 'idle/tmp')), []);
    const names = await readdir(path.join(root, 'idle/entries'));
    assert.equal(names.length, 2);
    const metadata = JSON.parse(
      await readFile(
        path.join(
          root,
          'idle/entries',
          names.find((n) => n.endsWith('.json'))!,
        ),
        'utf8',
      ),
    );
    assert.equal(metadata.key, 'fresh');
  });

  test('keys: a safe character set and at most 512 characters', () => {
    assert.ok(cacheKeySchema.safeParse('Linux-npm-3f2a/b:c@d+e=f').success);
    assert.equal(cacheKeySchema.safeParse('a,b').success, false);
    assert.equal(cacheKeySchema.safeParse('with space').success, false);
    assert.equal(cacheKeySchema.safeParse('k'.repeat(513)).success, false);
    assert.equal(cacheKeySchema.safeParse('').success, false);
  });
});
