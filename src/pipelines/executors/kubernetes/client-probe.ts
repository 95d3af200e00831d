import { spawn } from 'node:child_process';

/**
 * Whether `@kubernetes/client-node` can be loaded by this Node.js, tried in a child process.
 * A dependency that throws while loading can throw a second time outside the importer's
 * `catch` and end the process: @kubernetes/client-node 2.x does, on Node.js 20, through
 * undici 8 (which needs Node.js >= 22.19). The server must not die because a Kubernetes job
 * arrived, so it asks a child first. Resolves null when the client loads, or why it does not.
 */
export function kubernetesClientProblem(): Promise<string | null> {
  let url: string;
  try {
    url = import.meta.resolve('@kubernetes/client-node');
  } catch (error) {
    return Promise.resolve(`@kubernetes/client-node is not installed: ${(error as Error).message}`);
  }
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      // With this process's own flags (loaders such as tsx included), but none of `--test`'s.
      [
        ...process.execArgv.filter((arg) => !arg.startsWith('--test')),
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(url)})`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (error) => resolve(error.message));
    child.on('close', (code) => {
      if (code === 0) return resolve(null);
      const reason =
        stderr
          .split('\n')
          .find((line) => /Error\b/.test(line))
          ?.trim() ?? `exit code ${code}`;
      resolve(
        `@kubernetes/client-node cannot be loaded on Node.js ${process.version} (${reason}); ` +
          'its version 2.x needs Node.js >= 22.19: use ^1.4.0 on Node.js 20',
      );
    });
  });
}
