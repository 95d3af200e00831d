import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * File writes that survive a crash at any moment: data is fsynced before the rename that makes
 * it visible, and the directory is fsynced after it so the rename itself is on disk before
 * the caller acknowledges anything.
 */

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `file` atomically: readers see the old content or the new, never a part. */
export async function writeFileDurably(file: string, data: string | Buffer): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true });
  // A dot prefix keeps temp files out of listings: tags and digests never start with a dot.
  const temp = path.join(dir, `.${randomUUID()}.tmp`);
  const handle = await open(temp, 'wx');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDirectory(dir);
}

/** Moves an fsynced file into place and makes the move durable. */
export async function renameDurably(from: string, to: string): Promise<void> {
  await mkdir(path.dirname(to), { recursive: true });
  await rename(from, to);
  await fsyncDirectory(path.dirname(to));
}

export async function readFileIfExists(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

export async function sizeIfExists(file: string): Promise<number | null> {
  try {
    const info = await stat(file);
    return info.isFile() ? info.size : null;
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
}

export async function existsOnDisk(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
}

/** Removes a file; returns whether it was there. The removal is made durable. */
export async function removeDurably(file: string): Promise<boolean> {
  try {
    await rm(file);
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
  await fsyncDirectory(path.dirname(file));
  return true;
}

export function isNotFound(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
