/**
 * The job directory lives on the host (built-in steps such as checkout write it there) and in
 * the pod (an emptyDir at the same path). Before each `run` step it is copied into the pod,
 * after it back out, as tar archives through exec (what `kubectl cp` does). Each direction
 * mirrors: what was removed on one side is removed on the other.
 */
import { spawn } from 'node:child_process';
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { shellQuote } from '../container-step.js';
import { execInPod, type PodTarget } from './pod-exec.js';

/** Replaces the contents of `dirs` in the pod with the host's. */
export async function copyIntoPod(target: PodTarget, dirs: string[]): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'valve-k8s-sync-'));
  try {
    const archive = join(scratch, 'in.tar');
    await hostTar(['-C', '/', '-cf', archive, '--', ...dirs.map((d) => relative('/', d))]);
    const size = statSync(archive).size;
    const clear = dirs.map(
      (d) => `rm -rf -- ${shellQuote(d)}/* ${shellQuote(d)}/.[!.]* ${shellQuote(d)}/..?*`,
    );
    const script = [...clear, `head -c ${size} | tar -xof - -C /`].join(' && ');
    let stderr = '';
    const result = await execInPod(target, ['sh', '-c', script], {
      stdin: createReadStream(archive),
      onStderr: (chunk) => (stderr += chunk.toString()),
    });
    if (result.exitCode !== 0)
      throw new Error(
        `copying the job directory into pod ${target.pod} failed (${result.exitCode}): ${result.message ?? stderr.trim()}`,
      );
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Replaces the host's `dir` with the pod's. The archive is complete before the host directory
 * is touched; it is unpacked by GNU tar, which refuses members that climb out (`..`, absolute
 * names) and does not follow symlinks it has just unpacked, and keeps no ownership from the pod.
 */
export async function copyFromPod(target: PodTarget, dir: string): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'valve-k8s-sync-'));
  try {
    const archive = join(scratch, 'out.tar');
    const file = createWriteStream(archive);
    let stderr = '';
    const result = await execInPod(target, ['sh', '-c', `cd ${shellQuote(dir)} && tar -cf - .`], {
      onStdout: (chunk) => file.write(chunk),
      onStderr: (chunk) => (stderr += chunk.toString()),
    });
    await new Promise<void>((resolve, reject) =>
      file.end((error?: Error | null) => (error ? reject(error) : resolve())),
    );
    if (result.exitCode !== 0)
      throw new Error(
        `copying the job directory out of pod ${target.pod} failed (${result.exitCode}): ${result.message ?? stderr.trim()}`,
      );
    for (const entry of readdirSync(dir))
      rmSync(join(dir, entry), { recursive: true, force: true });
    await hostTar(['-C', dir, '-xf', archive, '--no-same-owner']);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function hostTar(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`tar ${args.join(' ')} failed: ${stderr.trim()}`)),
    );
  });
}
