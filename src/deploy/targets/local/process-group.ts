import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/**
 * Instances run as detached process-group leaders: a SIGKILL of the server leaves them
 * running (so a restarted server can adopt them), and a stop signals the whole tree.
 */

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** Set when the process could not be started at all (e.g. command not found). */
  error?: string;
}

/** A running instance process, spawned by this server or adopted from an earlier one. */
export interface GroupProcess {
  readonly pid: number;
  /** Kernel start time of the pid, so a reused pid is never mistaken for ours. */
  readonly startTime: string | null;
  /** Resolves when the process is gone. */
  readonly exited: Promise<ExitInfo>;
  /** Stops watching without touching the process (server shutdown). */
  detach(): void;
}

export interface SpawnOptions {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** stdout and stderr are appended here; a file, not a pipe, so output survives the server. */
  logFile: string;
}

export function spawnGroup(options: SpawnOptions): GroupProcess {
  const fd = openSync(options.logFile, 'a');
  let child;
  try {
    child = spawn(options.file, options.args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  child.unref();
  let settle: (info: ExitInfo) => void = () => {};
  const exited = new Promise<ExitInfo>((resolve) => (settle = resolve));
  const onExit = (code: number | null, signal: NodeJS.Signals | null) => settle({ code, signal });
  const onError = (error: Error) => {
    // 'error' without a pid means the process never started; with one, 'exit' follows.
    if (child.pid === undefined) settle({ code: null, signal: null, error: error.message });
  };
  child.on('exit', onExit);
  child.on('error', onError);
  const pid = child.pid ?? 0;
  return {
    pid,
    startTime: pid ? readStartTime(pid) : null,
    exited,
    detach() {
      child.off('exit', onExit);
      child.off('error', onError);
      // Keep a listener so a late spawn error is not thrown as unhandled.
      child.on('error', () => {});
    },
  };
}

/** Watches a process started by an earlier server: `exited` resolves when polling finds it gone. */
export function adoptGroup(
  pid: number,
  startTime: string | null,
  pollMs: number,
): GroupProcess | null {
  if (!isOurProcess(pid, startTime)) return null;
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<ExitInfo>((resolve) => {
    timer = setInterval(() => {
      if (isOurProcess(pid, startTime)) return;
      clearInterval(timer);
      resolve({ code: null, signal: null });
    }, pollMs);
    timer.unref();
  });
  return { pid, startTime, exited, detach: () => clearInterval(timer) };
}

/** True when `pid` runs and, where the kernel tells, is the same process that was started. */
export function isOurProcess(pid: number, startTime: string | null): boolean {
  if (!isAlive(pid)) return false;
  if (startTime === null) return true;
  const now = readStartTime(pid);
  // No /proc (not Linux): liveness is all we can check.
  return now === null || now === startTime;
}

export function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    // ESRCH: gone. EPERM: alive but another user's, so certainly not ours.
    return false;
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or null without /proc. */
export function readStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

/** Signals the whole process group led by `pid`; a group that is already gone is fine. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/**
 * SIGTERM to the group, SIGKILL when it is still there after `graceMs`, then SIGKILL once more
 * for whatever of its tree outlived the leader. Resolves false when it had to kill.
 */
export async function terminateGroup(proc: GroupProcess, graceMs: number): Promise<boolean> {
  signalGroup(proc.pid, 'SIGTERM');
  const graceful = await exitWithin(proc, graceMs);
  if (!graceful) {
    signalGroup(proc.pid, 'SIGKILL');
    await exitWithin(proc, graceMs);
  }
  signalGroup(proc.pid, 'SIGKILL');
  proc.detach();
  return graceful;
}

/** True once the process is gone, false after `ms`; polls as well, for adopted processes. */
async function exitWithin(proc: GroupProcess, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let exited = false;
  void proc.exited.then(() => (exited = true));
  while (!exited && isOurProcess(proc.pid, proc.startTime)) {
    if (Date.now() >= deadline) return false;
    await Promise.race([delay(50), proc.exited]);
  }
  return true;
}
