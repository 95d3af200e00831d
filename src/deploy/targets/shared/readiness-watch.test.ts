import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import type { ProbeResult } from '../local/readiness.js';
import { ReadinessWatcher, type WatchClock } from './readiness-watch.js';

/** Time that moves only when the test says so. */
class ManualClock implements WatchClock {
  time = 0;
  /** Every wait asked for, in order. */
  readonly waits: number[] = [];
  private timers: { at: number; fire: () => void }[] = [];

  now(): number {
    return this.time;
  }

  timer(ms: number, fire: () => void): () => void {
    const entry = { at: this.time + ms, fire };
    this.waits.push(ms);
    this.timers.push(entry);
    return () => (this.timers = this.timers.filter((timer) => timer !== entry));
  }

  get pending(): number {
    return this.timers.length;
  }

  /** Moves to the next timer, fires it, and lets what it started run until it waits again. */
  async next(): Promise<void> {
    const [first] = [...this.timers].sort((a, b) => a.at - b.at);
    assert.ok(first, 'a timer is pending');
    this.timers = this.timers.filter((timer) => timer !== first);
    this.time = Math.max(this.time, first.at);
    first.fire();
    await settle();
  }
}

/** Lets every promise that can settle now do so. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

const pass: ProbeResult = { ok: true };
const miss: ProbeResult = { ok: false, reason: 'GET /healthz answered HTTP 503' };

/** A probe answering from a script (then passing), or held open until the test answers it. */
class FakeProbe {
  calls = 0;
  private held: ((result: ProbeResult) => void) | null = null;

  constructor(
    private readonly script: ProbeResult[] = [],
    private hold = false,
  ) {}

  readonly check = (port: number, path: string): Promise<ProbeResult> => {
    assert.equal(port, 8080);
    assert.equal(path, '/healthz');
    this.calls++;
    if (this.hold) return new Promise((resolve) => (this.held = resolve));
    return Promise.resolve(this.script.shift() ?? pass);
  };

  /** Answers the probe under way. */
  answer(result: ProbeResult): void {
    assert.ok(this.held, 'a probe is under way');
    const held = this.held;
    this.held = null;
    this.hold = false;
    held(result);
  }

  /** Holds the next probes open until answered. */
  holdNext(): void {
    this.hold = true;
  }
}

function watcher(probe: FakeProbe, failureThreshold = 3) {
  const clock = new ManualClock();
  const changes: { ready: boolean; problem: string | null }[] = [];
  const readiness = new ReadinessWatcher({
    port: 8080,
    probe: { path: '/healthz', periodMs: 10_000, timeoutMs: 1000, failureThreshold },
    onServingChange: (ready, problem) => changes.push({ ready, problem }),
    check: probe.check,
    clock,
    startupDelays: { firstMs: 5, maxMs: 50 },
  });
  return { readiness, clock, changes };
}

const running = { timeoutMs: 60_000, ended: () => null };

describe('ReadinessWatcher: a starting instance', () => {
  it('probes at once, then after waits growing to the maximum, until the first pass', async () => {
    const probe = new FakeProbe([miss, miss, miss, miss, miss, miss, miss, miss]);
    const { readiness, clock } = watcher(probe);
    const outcome = readiness.untilReady(readiness.begin(), running);
    await settle();
    assert.equal(probe.calls, 1, 'the first probe does not wait');
    while (probe.calls < 9) await clock.next();
    assert.deepEqual(await outcome, { kind: 'ready' });
    assert.deepEqual(clock.waits, [5, 8, 12, 18, 27, 41, 50, 50]);
    assert.equal(clock.pending, 0);
  });

  it('fails with the last reason once the start timeout has passed', async () => {
    const probe = new FakeProbe(Array.from({ length: 100 }, () => miss));
    const { readiness, clock } = watcher(probe);
    const outcome = readiness.untilReady(readiness.begin(), { ...running, timeoutMs: 200 });
    await settle();
    while (clock.time < 200) await clock.next();
    await settle();
    assert.deepEqual(await outcome, {
      kind: 'failed',
      reason: 'not ready within 0.2 s (last: GET /healthz answered HTTP 503)',
    });
  });

  it('fails when the instance ended, without probing again; a wake cuts the wait short', async () => {
    const probe = new FakeProbe([miss]);
    const { readiness, clock } = watcher(probe);
    let exited: string | null = null;
    let exit = () => {};
    const wake = new Promise<void>((resolve) => (exit = resolve));
    const outcome = readiness.untilReady(readiness.begin(), {
      timeoutMs: 60_000,
      ended: () => exited,
      wake,
    });
    await settle();
    assert.equal(clock.pending, 1, 'waiting before the next probe');
    exited = 'exited with code 3 before it was ready';
    exit();
    assert.deepEqual(await outcome, { kind: 'failed', reason: exited });
    assert.equal(probe.calls, 1);
    assert.equal(clock.pending, 0, 'the wait was cancelled');
  });

  it('a probe of an older generation is ignored: superseded, not ready', async () => {
    const probe = new FakeProbe([], true);
    const { readiness } = watcher(probe);
    const first = readiness.begin();
    const outcome = readiness.untilReady(first, running);
    await settle();
    const second = readiness.begin();
    probe.answer(pass);
    assert.deepEqual(await outcome, { kind: 'superseded' });
    assert.equal(readiness.isCurrent(first), false);
    assert.equal(readiness.isCurrent(second), true);
  });
});

describe('ReadinessWatcher: a serving instance', () => {
  it('takes it out after failureThreshold misses in a row, back in on the next pass', async () => {
    // miss, miss, pass (the count starts again), miss x3 (out), miss (still out), pass (back).
    const probe = new FakeProbe([miss, miss, pass, miss, miss, miss, miss, pass]);
    const { readiness, clock, changes } = watcher(probe);
    readiness.serve(readiness.begin());
    assert.equal(probe.calls, 0, 'serving probes wait a period first');
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      await clock.next();
      seen.push(changes.length);
    }
    assert.deepEqual(seen, [0, 0, 0, 0, 0, 1, 1, 2]);
    assert.deepEqual(changes, [
      { ready: false, problem: 'readiness failing: GET /healthz answered HTTP 503' },
      { ready: true, problem: null },
    ]);
    assert.ok(clock.waits.every((ms) => ms === 10_000));
    assert.equal(clock.pending, 1, 'it keeps probing');
  });

  it('a new generation starts the count afresh', async () => {
    const probe = new FakeProbe([miss, miss, miss, miss, miss]);
    const { readiness, clock, changes } = watcher(probe);
    readiness.serve(readiness.begin());
    await clock.next();
    await clock.next();
    // Restarted: two misses of the old process and one of the new one are not three in a row.
    readiness.serve(readiness.begin());
    assert.equal(clock.pending, 1, 'the old generation stopped probing');
    await clock.next();
    assert.deepEqual(changes, []);
    await clock.next();
    assert.deepEqual(changes, []);
    await clock.next();
    assert.equal(changes.length, 1, 'three misses of the new one are');
  });

  it('a probe answering after a new generation began, or after a pause, is ignored', async () => {
    const probe = new FakeProbe([], true);
    const { readiness, clock, changes } = watcher(probe, 1);
    readiness.serve(readiness.begin());
    await clock.next();
    readiness.begin();
    probe.answer(miss);
    await settle();
    assert.deepEqual(changes, []);
    assert.equal(clock.pending, 0, 'no probe of the old generation is scheduled');

    readiness.serve(readiness.generation);
    probe.holdNext();
    await clock.next();
    readiness.pause();
    probe.answer(miss);
    await settle();
    assert.deepEqual(changes, []);
    assert.equal(clock.pending, 0);
  });

  it('serve() for a generation that is over does nothing', async () => {
    const probe = new FakeProbe();
    const { readiness, clock } = watcher(probe);
    const old = readiness.begin();
    readiness.begin();
    readiness.serve(old);
    assert.equal(clock.pending, 0);
  });
});
