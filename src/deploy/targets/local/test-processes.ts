import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Target, WorkloadStatus } from '../target.js';
import { isOurProcess, readStartTime, signalGroup } from './process-group.js';
import { localStateSchema } from './state-file.js';

/**
 * Test support for the local target's tests: every process a test saw, so `after` can kill
 * what a failed test left behind; a status poller; a polling HTTP client. Not used outside
 * tests.
 */

export class ProcessTracker {
  private readonly seen = new Map<number, string | null>();

  track(status: WorkloadStatus): WorkloadStatus {
    for (const { pid } of status.instances) {
      if (pid > 0 && !this.seen.has(pid)) this.seen.set(pid, readStartTime(pid));
    }
    return status;
  }

  async killAll(dataDir: string): Promise<void> {
    const stateFile = join(dataDir, 'targets/local/state.json');
    if (existsSync(stateFile)) {
      const state = localStateSchema.parse(JSON.parse(await readFile(stateFile, 'utf8')));
      for (const workload of state.workloads) {
        for (const instance of workload.instances) {
          if (instance.pid > 0 && !this.seen.has(instance.pid)) {
            this.seen.set(instance.pid, instance.pidStartTime);
          }
        }
      }
    }
    for (const [pid, startTime] of this.seen) {
      if (isOurProcess(pid, startTime)) signalGroup(pid, 'SIGKILL');
    }
  }
}

/** Polls the status until `accept` holds; the deadline only bounds a broken test. */
export async function waitForStatus(
  target: Target,
  key: string,
  accept: (status: WorkloadStatus) => boolean,
  options: { intervalMs?: number; verify?: boolean } = {},
): Promise<WorkloadStatus> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await target.status(key, { verify: options.verify });
    if (accept(status)) return status;
    if (Date.now() > deadline)
      assert.fail(`status never matched: ${JSON.stringify(status, null, 2)}`);
    await delay(options.intervalMs ?? 100);
  }
}

export async function get(url: string): Promise<string> {
  const res = await fetch(url);
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: ${text}`);
  return text;
}

export const portBase = () => 20_000 + Math.floor(Math.random() * 300) * 100;

export interface Answer {
  /** When the answer (or the failure) arrived. */
  at: number;
  client: number;
  /** 0: no answer. */
  status: number;
  text: string;
}

/** Clients that GET `url` in a loop, each waiting 10-20 ms between requests, until stopped. */
export class Poller {
  readonly answers: Answer[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(
    private readonly url: string,
    clients = 2,
  ) {
    this.loops = Array.from({ length: clients }, (_, client) => this.loop(client));
  }

  async stop(): Promise<Answer[]> {
    this.running = false;
    await Promise.all(this.loops);
    return this.answers;
  }

  /** Answers other than 200, arrived in [from, to). */
  failures(from = 0, to = Infinity): Answer[] {
    return this.answers.filter(
      (answer) => answer.status !== 200 && answer.at >= from && answer.at < to,
    );
  }

  /**
   * The share of the answers arrived between `from` and `to` that were `text`; 50 ms in from
   * either end, so that a request in flight at a switch counts for neither side.
   */
  share(text: string, from: number, to: number): number {
    const inside = this.answers.filter((answer) => answer.at > from + 50 && answer.at < to - 50);
    return inside.filter((answer) => answer.text === text).length / inside.length;
  }

  /** Waits until `count` more answers arrived. */
  async more(count: number): Promise<void> {
    const target = this.answers.length + count;
    while (this.answers.length < target) await delay(10);
  }

  private async loop(client: number): Promise<void> {
    while (this.running) {
      try {
        const res = await fetch(this.url);
        const text = await res.text();
        this.answers.push({ at: Date.now(), client, status: res.status, text });
      } catch (error) {
        const text = String((error as Error).cause ?? error);
        this.answers.push({ at: Date.now(), client, status: 0, text });
      }
      await delay(10 + Math.random() * 10);
    }
  }
}
