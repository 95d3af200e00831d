import { PassThrough, Writable, type Readable } from 'node:stream';
import type { Exec, V1Status } from '@kubernetes/client-node';

export interface PodTarget {
  exec: Exec;
  namespace: string;
  pod: string;
  container: string;
}

export interface ExecResult {
  exitCode: number;
  /** The API's message when the command could not run at all. */
  message?: string;
}

export interface ExecIo {
  /** Bytes for the command's stdin. The stream is never ended: see below. */
  stdin?: Readable;
  onStdout?(chunk: Buffer): void;
  onStderr?(chunk: Buffer): void;
}

/**
 * Runs a command in a container through the exec API (a WebSocket with one channel per
 * stream; the exit code arrives as a `Status` on channel 3). Stdin is never closed: only the
 * v5 protocol can close it without dropping the connection (v4 clusters would lose the
 * status), so commands that read stdin are told how many bytes to read (`head -c N`).
 * Resolves when the status arrives; rejects when the connection fails or closes without one
 * (the pod went away).
 */
export async function execInPod(
  target: PodTarget,
  command: string[],
  io: ExecIo = {},
): Promise<ExecResult> {
  const sink = (onChunk?: (chunk: Buffer) => void) =>
    onChunk
      ? new Writable({
          write(chunk: Buffer, _encoding, callback) {
            onChunk(chunk);
            callback();
          },
        })
      : null;
  const stdin = io.stdin ? io.stdin.pipe(new PassThrough(), { end: false }) : null;
  let settle!: { resolve(result: ExecResult): void; reject(error: Error): void };
  const done = new Promise<ExecResult>((resolve, reject) => (settle = { resolve, reject }));
  let finished = false;
  const ws = await target.exec.exec(
    target.namespace,
    target.pod,
    target.container,
    command,
    sink(io.onStdout),
    sink(io.onStderr),
    stdin,
    false,
    (status: V1Status) => {
      finished = true;
      settle.resolve(exitOf(status));
    },
  );
  const closed = () => {
    if (!finished)
      settle.reject(
        new Error(`the exec of ${command[0]} in pod ${target.pod} ended without an exit status`),
      );
  };
  if (ws.readyState === ws.CLOSED) closed();
  ws.on('close', closed);
  ws.on('error', (error: Error) => {
    if (!finished) settle.reject(error);
  });
  try {
    return await done;
  } finally {
    io.stdin?.unpipe();
    stdin?.destroy();
  }
}

function exitOf(status: V1Status): ExecResult {
  if (status.status === 'Success') return { exitCode: 0 };
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  if (cause?.message && /^\d+$/.test(cause.message)) return { exitCode: Number(cause.message) };
  return { exitCode: 126, message: status.message ?? 'the command could not be run' };
}
