/**
 * The git subcommand (`cat-file`, `log`, `fast-import`...) of every `git` child this process
 * spawns from the moment this module is imported, in order: tests count the processes a piece
 * of code takes. `spawn` is wrapped on node:child_process and the ES module exports are synced,
 * so modules that imported `{ spawn }` call the wrapper too.
 */
import type { ChildProcess } from 'node:child_process';
import { createRequire, syncBuiltinESMExports } from 'node:module';

export const gitSpawns: string[] = [];

const childProcess = createRequire(import.meta.url)('node:child_process') as {
  spawn: (...args: unknown[]) => ChildProcess;
};
const original = childProcess.spawn;
childProcess.spawn = function (this: unknown, ...args: unknown[]) {
  if (args[0] === 'git') {
    // `git <command> ...` or `git --git-dir <dir> <command> ...`
    const argv = args[1] as string[];
    gitSpawns.push((argv[0] === '--git-dir' ? argv[2] : argv[0]) ?? '');
  }
  return original.apply(this, args);
};
syncBuiltinESMExports();
