/**
 * Run logs: one JSON-lines file per run, appended line by line as output arrives (so what a
 * run printed before a crash is kept), numbered from 1, each line published as a `run.log`
 * event for live followers.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EventBus, RunLogLine } from '../events.js';

export class RunLogStore {
  constructor(
    private readonly dir: string,
    private readonly events: EventBus,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  private file(runId: string) {
    return join(this.dir, `${runId}.jsonl`);
  }

  writer(runId: string): RunLogWriter {
    return new RunLogWriter(this.file(runId), runId, this.events, this.read(runId).length);
  }

  read(runId: string): RunLogLine[] {
    const file = this.file(runId);
    if (!existsSync(file)) return [];
    const lines: RunLogLine[] = [];
    for (const raw of readFileSync(file, 'utf8').split('\n')) {
      if (!raw) continue;
      try {
        lines.push(JSON.parse(raw) as RunLogLine);
      } catch {
        // A line cut short by a crash mid-write: everything before it is intact.
      }
    }
    return lines;
  }
}

export class RunLogWriter {
  private count: number;

  constructor(
    private readonly file: string,
    private readonly runId: string,
    private readonly events: EventBus,
    existing: number,
  ) {
    this.count = existing;
  }

  line(text: string, step: string | null = null): void {
    const line: RunLogLine = { n: ++this.count, ts: new Date().toISOString(), step, text };
    appendFileSync(this.file, JSON.stringify(line) + '\n');
    this.events.emit('run.log', { runId: this.runId, line });
  }

  /** A stream of output chunks, split into lines (a partial line waits for its end). */
  lineSplitter(step: string | null): { write(chunk: Buffer | string): void; flush(): void } {
    let pending = '';
    return {
      write: (chunk) => {
        pending += chunk.toString();
        const parts = pending.split(/\r?\n/);
        pending = parts.pop() ?? '';
        for (const part of parts) this.line(part, step);
      },
      flush: () => {
        if (pending) this.line(pending, step);
        pending = '';
      },
    };
  }
}
