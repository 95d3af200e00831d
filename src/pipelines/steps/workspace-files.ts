import { lstat, mkdir, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';

/**
 * Selecting files of a job's workspace by path lists and globs (cache, artifacts, test
 * reports). Nothing outside the workspace is ever selected: patterns are refused when they
 * leave it, symlinks are never followed while searching, and every selected file's real
 * directory must be inside the workspace (a symlinked directory pointing elsewhere does not
 * let a pattern reach through it).
 */

/** A `with` list: one item per line, or several on a line separated by spaces. */
export function splitList(value: string): string[] {
  return value
    .split(/\s+/)
    .map((item) => item.trim())
    .filter(Boolean);
}

/** True when `child` is `parent` or below it (both absolute, normalized). */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * A path given in `with` (relative to the workspace, or absolute inside it) as a normalized
 * workspace-relative POSIX path; `''` is the workspace itself. Throws when it leaves the
 * workspace; `what` names the input in the message.
 */
export function workspaceRelative(workspace: string, path: string, what: string): string {
  const absolute = resolve(workspace, path);
  if (!isInside(resolve(workspace), absolute)) {
    throw new Error(`${what}: "${path}" is outside the workspace`);
  }
  return relative(resolve(workspace), absolute).split(sep).join('/');
}

/** One selected workspace entry; directories are walked into, never listed themselves. */
export interface WorkspaceEntry {
  /** Workspace-relative POSIX path. */
  path: string;
  type: 'file' | 'symlink';
  /** Host path to read the content from. */
  source: string;
  size: number;
  /** Permission bits. */
  mode: number;
  /** A symlink's target, as stored in the link. */
  linkname?: string;
}

export interface Selection {
  /** Sorted by path, no duplicates. */
  entries: WorkspaceEntry[];
  /**
   * Per include pattern, the directory its matches are relative to (workspace-relative): the
   * part before the first wildcard, a named directory itself, or a named file's directory.
   */
  searchBases: string[];
}

export interface SelectOptions {
  /** Whether wildcards and walked directories include names starting with a dot. */
  dot: boolean;
  /** The input name, for messages. */
  what: string;
  signal?: AbortSignal;
}

/**
 * Selects the files that `patterns` name. A pattern is a path or a glob relative to the
 * workspace; a directory (named or matched) contributes everything below it; a pattern
 * starting with `!` excludes what it matches (and everything below a matched directory).
 * Symlinks are selected as links and never followed.
 */
export async function selectFiles(
  workspace: string,
  patterns: readonly string[],
  options: SelectOptions,
): Promise<Selection> {
  const root = resolve(workspace);
  const realRoot = await realpath(root);
  const includes: string[] = [];
  const excludes: string[] = [];
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = normalizePattern(root, negated ? raw.slice(1) : raw, options.what);
    (negated ? excludes : includes).push(pattern);
  }
  const excluded = await matchExcludes(root, excludes, options.signal);
  const found = new Map<string, WorkspaceEntry>();
  const searchBases: string[] = [];
  const add = (entry: WorkspaceEntry) => {
    if (!isExcluded(entry.path, excluded)) found.set(entry.path, entry);
  };
  const dirCheck = new Map<string, Promise<boolean>>();
  const insideReal = (dir: string) => {
    let checked = dirCheck.get(dir);
    if (!checked) {
      checked = realpath(join(root, dir)).then(
        (real) => isInside(realRoot, real),
        () => false,
      );
      dirCheck.set(dir, checked);
    }
    return checked;
  };

  for (const pattern of includes) {
    if (isDynamicPattern(pattern)) {
      searchBases.push(staticBase(pattern));
      const matches = await glob(pattern, {
        cwd: root,
        dot: options.dot,
        onlyFiles: false,
        followSymbolicLinks: false,
        expandDirectories: false,
        signal: options.signal,
      });
      // `a/**` matches `a/` and everything below it: walk each directory once.
      const walked = new Set<string>();
      for (const match of matches.sort()) {
        const path = match.replace(/\/+$/, '');
        if (!isInside(root, resolve(root, path)) || isBelow(path, walked)) continue;
        if (match.endsWith('/')) walked.add(path);
        await collect(root, path, options, insideReal, add);
      }
    } else {
      const stats = await lstatOrNull(join(root, pattern));
      searchBases.push(stats?.isDirectory() ? pattern : parentOf(pattern));
      if (stats) await collect(root, pattern, options, insideReal, add);
    }
  }
  const entries = [...found.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  return { entries, searchBases };
}

/** The deepest directory containing every base (`''` is the workspace). */
export function commonAncestor(paths: readonly string[]): string {
  if (paths.length === 0) return '';
  let common = paths[0]!.split('/').filter(Boolean);
  for (const path of paths.slice(1)) {
    const parts = path.split('/').filter(Boolean);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.join('/');
}

/**
 * Patterns as `selectFiles` reads them (normalized, workspace-relative, `!` kept); throws when
 * one leaves the workspace. Lets a step refuse bad input before doing anything.
 */
export function normalizePatterns(
  workspace: string,
  patterns: readonly string[],
  what: string,
): string[] {
  return patterns.map((raw) => {
    const negated = raw.startsWith('!');
    const pattern = normalizePattern(resolve(workspace), negated ? raw.slice(1) : raw, what);
    return negated ? `!${pattern}` : pattern;
  });
}

function normalizePattern(root: string, pattern: string, what: string): string {
  if (pattern === '') throw new Error(`${what}: empty pattern`);
  const absolute = isAbsolute(pattern);
  const normalized = posix.normalize(
    absolute ? relative(root, pattern).split(sep).join('/') : pattern,
  );
  const trimmed = normalized.replace(/\/+$/, '').replace(/^\.\//, '');
  if (trimmed === '..' || trimmed.startsWith('../') || isAbsolute(trimmed)) {
    throw new Error(`${what}: "${pattern}" is outside the workspace`);
  }
  return trimmed === '.' ? '' : trimmed;
}

/** The literal directory a glob starts from: its segments before the first wildcard. */
function staticBase(pattern: string): string {
  const parts = pattern.split('/');
  const literal: string[] = [];
  for (const part of parts.slice(0, -1)) {
    if (isDynamicPattern(part)) break;
    literal.push(part);
  }
  return literal.join('/');
}

async function matchExcludes(
  root: string,
  excludes: string[],
  signal: AbortSignal | undefined,
): Promise<Set<string>> {
  // Literal excludes count even when they are symlinks, which globbing does not return.
  const excluded = new Set(excludes.filter((pattern) => !isDynamicPattern(pattern)));
  const dynamic = excludes.filter((pattern) => isDynamicPattern(pattern));
  if (dynamic.length) {
    const matches = await glob(dynamic, {
      cwd: root,
      dot: true,
      onlyFiles: false,
      followSymbolicLinks: false,
      expandDirectories: false,
      signal,
    });
    for (const match of matches) excluded.add(match.replace(/\/+$/, ''));
  }
  return excluded;
}

function isExcluded(path: string, excluded: Set<string>): boolean {
  return excluded.has(path) || isBelow(path, excluded);
}

/** Whether one of `path`'s ancestor directories is in `dirs`. */
function isBelow(path: string, dirs: Set<string>): boolean {
  if (dirs.size === 0) return false;
  for (let dir = parentOf(path); dir !== ''; dir = parentOf(dir)) {
    if (dirs.has(dir)) return true;
  }
  return false;
}

/**
 * Adds `path`: a file, a symlink, or a directory walked recursively. The name given is taken
 * as it is; hidden names below it follow `options.dot`.
 */
async function collect(
  root: string,
  path: string,
  options: SelectOptions,
  insideReal: (dir: string) => Promise<boolean>,
  add: (entry: WorkspaceEntry) => void,
): Promise<void> {
  options.signal?.throwIfAborted();
  const source = join(root, path);
  const stats = await lstatOrNull(source);
  if (!stats) return;
  if (!(await insideReal(parentOf(path)))) {
    throw new Error(
      `${options.what}: "${path}" is reached through a symlink leading outside the workspace`,
    );
  }
  if (stats.isDirectory()) {
    for (const child of (await readdir(source)).sort()) {
      if (!options.dot && child.startsWith('.')) continue;
      await collect(root, path ? `${path}/${child}` : child, options, insideReal, add);
    }
  } else if (stats.isSymbolicLink()) {
    add({ path, type: 'symlink', source, size: 0, mode: 0o777, linkname: await readlink(source) });
  } else if (stats.isFile()) {
    add({ path, type: 'file', source, size: stats.size, mode: stats.mode & 0o777 });
  }
  // Sockets, fifos and devices are not content.
}

function parentOf(path: string): string {
  const parent = posix.dirname(path);
  return parent === '.' ? '' : parent;
}

async function lstatOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/** The file a symlink finally points to, when that is a regular file inside the workspace. */
export async function resolveFileLink(
  workspace: string,
  entry: WorkspaceEntry,
): Promise<{ source: string; size: number; mode: number } | null> {
  let real: string;
  try {
    real = await realpath(entry.source);
  } catch {
    return null;
  }
  if (!isInside(await realpath(resolve(workspace)), real)) return null;
  const stats = await stat(real);
  return stats.isFile() ? { source: real, size: stats.size, mode: stats.mode & 0o777 } : null;
}

/**
 * Makes the workspace directory `path` (workspace-relative) and returns its real host path.
 * Refuses when an existing component is a file, or a symlink resolving outside the workspace,
 * so nothing is created or written elsewhere through it.
 */
export async function makeWorkspaceDir(
  workspace: string,
  path: string,
  what: string,
): Promise<string> {
  const realRoot = await realpath(resolve(workspace));
  let current = realRoot;
  for (const part of path.split('/').filter(Boolean)) {
    const next = join(current, part);
    const stats = await lstatOrNull(next);
    if (!stats) {
      await mkdir(next);
      current = next;
    } else if (stats.isDirectory()) {
      current = next;
    } else if (stats.isSymbolicLink()) {
      const real = await realpath(next).catch(() => null);
      if (!real || !isInside(realRoot, real) || !(await stat(real)).isDirectory()) {
        throw new Error(`${what}: "${path}" leads through a symlink outside the workspace`);
      }
      current = real;
    } else {
      throw new Error(`${what}: "${path}" is not a directory`);
    }
  }
  return current;
}
