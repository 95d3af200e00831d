import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { z } from 'zod';

/** How a driver's state file is read and written; its schema stays with the driver. */

/**
 * The state file parsed by `schema`; null when there is none. A file that does not match
 * throws, naming `what` (e.g. `local target state file`).
 */
export async function readJsonStateFile<T>(
  file: string,
  schema: z.ZodType<T>,
  what: string,
): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const parsed = schema.safeParse(JSON.parse(text));
  if (!parsed.success) {
    throw new Error(`${file}: not a valid ${what}: ${parsed.error.message}`);
  }
  return parsed.data;
}

/**
 * Writes `state` as JSON. Temp file, fsync, rename, fsync the directory: a crash leaves the
 * old or the new file. `mode` is the new file's (default 0o666 less the umask).
 */
export async function writeJsonStateFile(
  file: string,
  state: unknown,
  options: { mode?: number } = {},
): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(temp, 'w', options.mode);
    try {
      await handle.writeFile(JSON.stringify(state, null, 2) + '\n');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

/**
 * Saves of one state file, one at a time; saves asked for while one runs are folded into the
 * next (which writes what is current then).
 */
export class StateSaves {
  private saving: Promise<void> = Promise.resolve();
  private pending = false;
  private closed = false;

  constructor(private readonly write: () => Promise<void>) {}

  /** Resolves once a save that started after this call has written (or failed). */
  save(): Promise<void> {
    if (this.closed) return this.saving;
    if (!this.pending) {
      this.pending = true;
      this.saving = this.saving
        .catch(() => {})
        .then(() => {
          this.pending = false;
          return this.write();
        });
    }
    return this.saving;
  }

  /** From now on `save` writes nothing; it returns the saves already under way. */
  close(): void {
    this.closed = true;
  }

  /** Runs `write` once the saves under way are over, whatever they did: the last word. */
  writeLast(write: () => Promise<void>): Promise<void> {
    this.saving = this.saving.catch(() => {}).then(write);
    return this.saving;
  }
}
