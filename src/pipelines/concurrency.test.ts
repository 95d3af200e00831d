import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConcurrencyGroups, Semaphore } from './concurrency.js';

test('a concurrency group runs one holder; a newcomer replaces the waiting one, and cancels the holder with cancel-in-progress', async () => {
  const groups = new ConcurrencyGroups();
  const cancelled: string[] = [];
  const releaseA = await groups.acquire('g', false, () => cancelled.push('a'));
  let bStarted = false;
  void groups.acquire('g', false, () => cancelled.push('b')).then(() => (bStarted = true));
  let releaseC: (() => void) | undefined;
  const c = groups
    .acquire('g', false, () => cancelled.push('c'))
    .then((release) => (releaseC = release));
  assert.deepEqual(cancelled, ['b'], 'the waiting one is replaced');
  releaseA();
  await c;
  assert.equal(bStarted, false);
  const d = groups.acquire('g', true, () => cancelled.push('d'));
  assert.deepEqual(cancelled, ['b', 'c'], 'cancel-in-progress cancels the holder');
  releaseC!();
  const releaseD = await d;
  releaseD();
  assert.ok(
    await Promise.race([
      groups.acquire('g', false, () => undefined).then(() => true),
      new Promise((r) => setTimeout(() => r(false), 50)),
    ]),
  );
});

test('the semaphore bounds holders and serves them in order; an aborted waiter leaves the queue', async () => {
  const slots = new Semaphore(2);
  const order: number[] = [];
  const r1 = await slots.acquire();
  const r2 = await slots.acquire();
  const controller = new AbortController();
  const aborted = slots.acquire(controller.signal).then(
    () => 'granted',
    () => 'aborted',
  );
  const third = slots.acquire().then((release) => {
    order.push(3);
    return release;
  });
  controller.abort();
  assert.equal(await aborted, 'aborted');
  assert.deepEqual(order, []);
  r1();
  const r3 = await third;
  assert.deepEqual(order, [3]);
  r2();
  r3();
  r3();
});
