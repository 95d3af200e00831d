/**
 * Run logs: one JSON-lines file per run, appended line by line as output arrives (so what a
 * run printed before a crash is kept), numbered from 1, each line published as a `run.log`
 * event for live followers.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EventBus, RunLogLine } from '../events.js';
import { addMaskCommand } from './file-commands.js';
import { MASK, Masker } from './secrets/index.js';

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

  /** A writer that appends to the run's log; every line passes through `masker` first. */
  writer(runId: string, masker: Masker = new Masker()): RunLogWriter {
    return new RunLogWriter(this.file(runId), runId, this.events, this.read(runId).length, masker);
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
    private readonly masker: Masker,
  ) {
    this.count = existing;
  }

  /** Appends a line, with every secret value masked, before anyone can read it. */
  line(text: string, step: string | null = null): void {
    const mask = addMaskCommand(text);
    if (mask !== null) {
      this.masker.add(mask);
      text = `::add-mask::${MASK}`;
    }
    const line: RunLogLine = {
      n: ++this.count,
      ts: new Date().toISOString(),
      step,
      text: this.masker.mask(text),
    };
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
