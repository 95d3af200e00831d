import { spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';

/**
 * The bubblewrap sandbox of a local step. The step sees the host's system directories read-only,
 * its job directory read-write and nothing else of the host's files: not Valve's data directory
 * (database, other teams' repositories and workspaces), not /root, not /run (sockets). It gets a
 * private /tmp, its own PID namespace (so it cannot signal the server) and no capabilities.
 * The network stays shared: steps install packages.
 */
export interface SandboxLayout {
  /** The job directory, bound read-write at the same path. */
  workspace: string;
  /** The step's script file, bound read-only at the same path. */
  scriptFile: string;
  cwd: string;
  /** The server's PATH: its directories outside /usr are bound read-only so tools installed elsewhere stay usable. */
  path?: string;
}

const readOnlySystemDirs = ['/usr', '/etc'];
const rootEntries = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

export function bubblewrapArgs(layout: SandboxLayout): string[] {
  const args = ['--die-with-parent', '--unshare-pid', '--unshare-ipc', '--new-session'];
  args.push('--cap-drop', 'ALL');
  for (const dir of readOnlySystemDirs) args.push('--ro-bind', dir, dir);
  for (const entry of rootEntries) {
    const stat = lstatSync(entry, { throwIfNoEntry: false });
    if (stat?.isSymbolicLink()) args.push('--symlink', readlinkSync(entry), entry);
    else if (stat?.isDirectory()) args.push('--ro-bind', entry, entry);
  }
  // A resolv.conf managed elsewhere (systemd-resolved: /run/...) must come along for DNS to work.
  const resolv = lstatSync('/etc/resolv.conf', { throwIfNoEntry: false });
  if (resolv?.isSymbolicLink()) {
    const target = realpathSync('/etc/resolv.conf');
    if (!isUnder(target, '/etc') && !isUnder(target, '/usr'))
      args.push('--ro-bind', target, target);
  }
  args.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/var/tmp');
  for (const dir of extraPathDirs(layout.path ?? '', layout.workspace))
    args.push('--ro-bind', dir, dir);
  args.push('--bind', layout.workspace, layout.workspace);
  args.push('--ro-bind', layout.scriptFile, layout.scriptFile);
  args.push('--chdir', layout.cwd);
  return args;
}

/** PATH directories the system binds do not cover; never one that contains the workspace (it would expose the data directory). */
function extraPathDirs(path: string, workspace: string): string[] {
  const dirs = new Set<string>();
  for (const dir of path.split(delimiter)) {
    if (!isAbsolute(dir) || !existsSync(dir)) continue;
    if ([...readOnlySystemDirs, ...rootEntries, '/tmp', '/var/tmp'].some((d) => isUnder(dir, d)))
      continue;
    if (isUnder(workspace, dir) || dir === '/') continue;
    dirs.add(dir);
  }
  return [...dirs];
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/** The bwrap binary on the server's PATH, or null. */
export function findBubblewrap(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, 'bwrap');
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs a tiny step in the sandbox exactly as steps will run. Resolves null when it works, or why
 * not (bwrap missing, or it fails here: no user namespaces, seccomp, a container without
 * CAP_SYS_ADMIN...).
 */
export async function probeBubblewrap(bwrap: string | null): Promise<string | null> {
  if (!bwrap || !isExecutable(bwrap)) return `bwrap is not installed${bwrap ? ` at ${bwrap}` : ''}`;
  const scratch = mkdtempSync(join(tmpdir(), 'valve-bwrap-probe-'));
  try {
    const workspace = join(scratch, 'job');
    const scriptFile = join(scratch, 'probe.sh');
    writeFileSync(join(scratch, 'secret'), 'not for steps');
    mkdirSync(workspace);
    writeFileSync(scriptFile, 'echo ok > probe; test ! -e ../secret; echo $$\n');
    const args = [
      ...bubblewrapArgs({ workspace, scriptFile, cwd: workspace }),
      '--',
      'sh',
      '-e',
      scriptFile,
    ];
    const { code, output } = await new Promise<{ code: number | null; output: string }>(
      (resolve) => {
        const child = spawn(bwrap, args, {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { PATH: '/usr/bin:/bin' },
        });
        let output = '';
        child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.on('error', (error) => resolve({ code: null, output: error.message }));
        child.on('close', (exitCode) => resolve({ code: exitCode, output }));
      },
    );
    // In its own PID namespace the step's shell is PID 2 (bwrap's reaper is 1).
    if (code === 0 && existsSync(join(workspace, 'probe')) && /^\d$/.test(output.trim()))
      return null;
    return `bwrap fails here (exit ${code}): ${output.trim().split('\n').slice(-1)[0] ?? ''}`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
