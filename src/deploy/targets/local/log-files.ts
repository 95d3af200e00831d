import { open } from 'node:fs/promises';

/** The last `count` lines of a file (reading at most its last `maxBytes`); [] when it is missing. */
export async function tailLines(
  file: string,
  count: number,
  maxBytes = 1 << 20,
): Promise<string[]> {
  if (count <= 0) return [];
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString('utf8').split('\n');
    if (lines.at(-1) === '') lines.pop();
    // A window that starts mid-line: drop the partial first line.
    if (length < size) lines.shift();
    return lines.slice(-count);
  } finally {
    await handle.close();
  }
}
