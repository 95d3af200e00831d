import { lstat, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import { invalidInput } from '../errors.js';

/** One thing of the build context that goes into the layer. */
export interface ContextEntry {
  /** Posix path relative to the context directory. */
  path: string;
  type: 'directory' | 'file' | 'symlink';
  /** Where to read it from. */
  source: string;
  size: number;
  /** Any execute bit set: the layer then gives it mode 0755, else 0644. */
  executable: boolean;
  /** A symlink's target, as written in the link. */
  linkname?: string;
}

/**
 * Lists the context directory depth-first, each directory's children in byte order of their
 * UTF-8 names, so the order (and so the layer) depends on the tree's content only, never on
 * the filesystem's enumeration order or the host's locale.
 *
 * An exclude pattern without a slash is a name excluded at any depth (`.git`,
 * `node_modules`); one with a slash is a path relative to the context (`dist/cache`).
 */
export async function listContext(
  contextDir: string,
  exclude: readonly string[],
  onSkip?: (relativePath: string, reason: string) => void,
): Promise<ContextEntry[]> {
  const isExcluded = excluder(exclude);
  const entries: ContextEntry[] = [];

  const walk = async (dir: string, relativeDir: string): Promise<void> => {
    const names = (await readdir(dir)).sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );
    for (const name of names) {
      const relative = relativeDir ? `${relativeDir}/${name}` : name;
      if (isExcluded(name, relative)) continue;
      const source = path.join(dir, name);
      const info = await lstat(source);
      const executable = (info.mode & 0o111) !== 0;
      if (info.isDirectory()) {
        entries.push({ path: relative, type: 'directory', source, size: 0, executable: true });
        await walk(source, relative);
      } else if (info.isFile()) {
        entries.push({ path: relative, type: 'file', source, size: info.size, executable });
      } else if (info.isSymbolicLink()) {
        const linkname = await readlink(source);
        entries.push({
          path: relative,
          type: 'symlink',
          source,
          size: 0,
          executable: false,
          linkname,
        });
      } else {
        onSkip?.(relative, 'not a file, directory or symlink');
      }
    }
  };

  const root = await lstat(contextDir).catch(() => null);
  if (!root?.isDirectory()) {
    throw invalidInput(`build context ${contextDir} is not a directory`, { contextDir });
  }
  await walk(contextDir, '');
  return entries;
}

function excluder(patterns: readonly string[]): (name: string, relative: string) => boolean {
  const names = new Set<string>();
  const paths = new Set<string>();
  for (const pattern of patterns) {
    const clean = pattern.replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
    if (!clean) continue;
    (clean.includes('/') ? paths : names).add(clean);
  }
  // The walk never descends into an excluded directory, so matching the node itself suffices.
  return (name, relative) => names.has(name) || paths.has(relative);
}
