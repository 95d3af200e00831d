/**
 * What a bench says about the machine it ran on (cores, versions, load), and the process
 * measures it reads from /proc: memory (VmRSS, VmHWM and its reset) and CPU time including
 * reaped children.
 */
import { spawnSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { readFileSync, writeFileSync } from 'node:fs';

export function machineInfo(): string[] {
  const podman = spawnSync('podman', ['--version'], { encoding: 'utf8' });
  const git = spawnSync('git', ['--version'], { encoding: 'utf8' });
  const cpu = cpus();
  return [
    `cores: ${cpu.length} (${cpu[0]?.model.trim() ?? 'unknown model'}), memory ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `node ${process.version}, ${git.status === 0 ? git.stdout.trim() : 'git: not found'}, ${podman.status === 0 ? podman.stdout.trim() : 'podman: not found'}`,
  ];
}

export function loadAverage(): string {
  return loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
}

/** VmRSS and VmHWM of a process, in kB. */
export function memoryKb(pid: number | 'self' = 'self'): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`no ${name} in /proc/${pid}/status`);
    return Number(match[1]);
  };
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux `clear_refs` 5); false where that is not allowed. */
export function resetPeak(pid: number | 'self' = 'self'): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

const TICKS_PER_SECOND = 100; // USER_HZ, 100 on every Linux this runs on

/**
 * CPU time of this process (user + system) and of the children it has reaped (a git process
 * counts once it exited), in ms, from /proc/self/stat.
 */
export function cpuMs(): { self: number; children: number } {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = (index: number) => Number(fields[index - 3]);
  const ms = (t: number) => (t * 1000) / TICKS_PER_SECOND;
  return { self: ms(ticks(14) + ticks(15)), children: ms(ticks(16) + ticks(17)) };
}
