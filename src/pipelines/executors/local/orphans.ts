import { readdirSync, readlinkSync } from 'node:fs';

/**
 * Kills every process whose working directory is inside `dir`. After a crash of the server, the
 * steps it was running are orphans still working in the run's workspace; /proc tells which
 * they are without any record having had to survive the crash.
 */
export function killProcessesIn(dir: string): number {
  let killed = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      if (cwd === dir || cwd.startsWith(`${dir}/`)) {
        process.kill(Number(pid), 'SIGKILL');
        killed++;
      }
    } catch {
      // Exited meanwhile, or not ours to inspect.
    }
  }
  return killed;
}
