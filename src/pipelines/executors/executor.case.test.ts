/**
 * The contract every executor keeps, run by each driver's test file against the real thing
 * (host processes, bubblewrap, podman, a Kubernetes API stand-in):
 * `describeExecutorContract('podman', async () => ({ executor, shell: 'sh', ... }))`.
 */
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Executor, JobSession, JobSpec, ScriptRequest } from './executor.js';

export interface ContractSetup {
  executor: Executor;
  /** The shell the executor's environment has (`sh` for busybox images). */
  shell: 'bash' | 'sh';
  /** Added to every job (a `container:` image, for instance). */
  job?: Partial<Pick<JobSpec, 'container' | 'services'>>;
  /** How many things a job still has (processes, containers, networks, pods): 0 once it is cleaned up. */
  leftovers(job: JobSpec): Promise<number>;
  /** Called once after the suite. */
  teardown?(): Promise<void>;
}

export type ContractFactory = () => Promise<ContractSetup | { skip: string }>;

export function describeExecutorContract(name: string, make: ContractFactory): void {
  describe(`executor contract: ${name}`, () => {
    let setup: ContractSetup | undefined;
    let skip: string | undefined;
    let root: string;
    const sessions: JobSession[] = [];
    let counter = 0;

    before(async () => {
      root = mkdtempSync(join(tmpdir(), 'valve-executor-contract-'));
      const made = await make();
      if ('skip' in made) skip = made.skip;
      else setup = made;
    });
    after(async () => {
      for (const session of sessions) await session.close().catch(() => undefined);
      await setup?.teardown?.();
      rmSync(root, { recursive: true, force: true });
    });

    /** A job laid out as the runner does: `<workspaces>/<runId>/<jobKey>/{workspace,temp}`. */
    const newJob = (): JobSpec & { logs: string[]; dir: string; runDir: string } => {
      const runId = `run${++counter}-${process.pid}`;
      const runDir = join(root, 'workspaces', runId);
      const dir = join(runDir, 'build');
      mkdirSync(join(dir, 'workspace'), { recursive: true });
      mkdirSync(join(dir, 'temp'), { recursive: true });
      const logs: string[] = [];
      return {
        runId,
        jobKey: 'build',
        workspace: dir,
        ...setup!.job,
        log: (line) => logs.push(line),
        signal: new AbortController().signal,
        logs,
        dir,
        runDir,
      };
    };

    const start = async (t: TestContext) => {
      if (skip) {
        t.skip(skip);
        return null;
      }
      const job = newJob();
      const session = await setup!.executor.prepareJob(job);
      sessions.push(session);
      return { job, session };
    };

    const request = (
      job: ReturnType<typeof newJob>,
      script: string,
      extra: Partial<ScriptRequest> = {},
    ): ScriptRequest & { output: () => string } => {
      const chunks: Buffer[] = [];
      return {
        script,
        shell: setup!.shell,
        cwd: join(job.dir, 'workspace'),
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        timeoutMs: 120_000,
        signal: new AbortController().signal,
        onOutput: (chunk) => chunks.push(chunk),
        ...extra,
        output: () => Buffer.concat(chunks).toString('utf8'),
      };
    };

    it('runs a script and streams its stdout and stderr', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      assert.equal(session.workspacePath, job.workspace);
      const req = request(job, "echo out\necho err >&2\nprintf 'caf\\303\\251\\n'\n");
      const result = await session.runScript(req);
      assert.deepEqual(result, { exitCode: 0, stopped: undefined });
      for (const text of ['out\n', 'err\n', 'café\n'])
        assert.ok(req.output().includes(text), req.output());
    });

    it('reports the exit code, and -e stops at the first failing command', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      assert.equal((await session.runScript(request(job, 'exit 3'))).exitCode, 3);
      const failing = request(job, 'false\necho not reached');
      assert.equal((await session.runScript(failing)).exitCode, 1);
      assert.ok(!failing.output().includes('not reached'));
    });

    it('passes the environment and runs in the requested directory', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const cwd = join(job.dir, 'workspace', 'sub dir');
      mkdirSync(cwd);
      const value = 'it\'s "quoted" $HOME `x`\nsecond line';
      const req = request(job, 'printf "%s|%s|%s" "$GREETING" "$(pwd)" "$EMPTY"', {
        cwd,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GREETING: value, EMPTY: '' },
      });
      const result = await session.runScript(req);
      assert.equal(result.exitCode, 0, req.output());
      assert.equal(req.output(), `${value}|${cwd}|`);
    });

    it('shares the job directory with the host both ways, at the same path', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const workspace = join(job.dir, 'workspace');
      writeFileSync(join(workspace, 'from-host.txt'), 'written by a built-in step\n');
      const outputFile = join(job.dir, 'temp', 'output');
      writeFileSync(outputFile, '');
      const req = request(
        job,
        'cat from-host.txt > from-step.txt\nmkdir -p dist/deep\necho artifact > dist/deep/a.txt\necho "answer=42" >> "$GITHUB_OUTPUT"',
        { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', GITHUB_OUTPUT: outputFile } },
      );
      const result = await session.runScript(req);
      assert.equal(result.exitCode, 0, req.output());
      assert.equal(
        readFileSync(join(workspace, 'from-step.txt'), 'utf8'),
        'written by a built-in step\n',
      );
      assert.equal(readFileSync(join(workspace, 'dist/deep/a.txt'), 'utf8'), 'artifact\n');
      assert.equal(readFileSync(outputFile, 'utf8'), 'answer=42\n');
      // A file the host removes between steps is gone for the next step too.
      rmSync(join(workspace, 'from-host.txt'));
      const next = request(job, 'test ! -e from-host.txt && cat from-step.txt');
      assert.equal((await session.runScript(next)).exitCode, 0, next.output());
    });

    it('a timeout kills the whole process tree', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const marker = markerSeconds();
      const req = request(job, `sleep ${marker} &\necho started\nwait`, { timeoutMs: 3000 });
      const result = await session.runScript(req);
      assert.equal(result.stopped, 'timeout');
      assert.notEqual(result.exitCode, 0);
      assert.ok(
        req.output().includes('started'),
        'the background child started before the timeout',
      );
      await assertMarkerGone(marker);
    });

    it('a cancel through the signal kills the whole process tree (and output streams while it runs)', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const marker = markerSeconds();
      const controller = new AbortController();
      const req = request(job, `sleep ${marker} &\necho started\nwait`, {
        signal: controller.signal,
      });
      const onOutput = req.onOutput;
      req.onOutput = (chunk) => {
        onOutput(chunk);
        // Streaming: this arrives while the script still runs, or the cancel never happens.
        if (req.output().includes('started')) controller.abort();
      };
      const result = await session.runScript(req);
      assert.equal(result.stopped, 'cancelled');
      assert.notEqual(result.exitCode, 0);
      await assertMarkerGone(marker);
    });

    it('a background process does not outlive its step (and does not keep the step running)', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const marker = markerSeconds();
      const req = request(job, `sleep ${marker} &\necho left behind`);
      const result = await session.runScript(req);
      assert.deepEqual(result, { exitCode: 0, stopped: undefined });
      await assertMarkerGone(marker);
    });

    it('does not start a script when the signal is already aborted', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const controller = new AbortController();
      controller.abort();
      const result = await session.runScript(
        request(job, 'touch ran', { signal: controller.signal }),
      );
      assert.equal(result.stopped, 'cancelled');
      assert.equal(existsSync(join(job.dir, 'workspace', 'ran')), false);
    });

    it('close() removes everything the job started', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      assert.equal((await session.runScript(request(job, 'echo hi'))).exitCode, 0);
      await session.close();
      assert.equal(await setup!.leftovers(job), 0);
    });

    it('cleanupAfterCrash stops what a job of the run left running', async (t) => {
      const started = await start(t);
      if (!started) return;
      const { job, session } = started;
      const marker = markerSeconds();
      let running!: () => void;
      const isRunning = new Promise<void>((resolve) => (running = resolve));
      const req = request(job, `sleep ${marker} &\necho started\nwait`);
      const onOutput = req.onOutput;
      req.onOutput = (chunk) => {
        onOutput(chunk);
        if (req.output().includes('started')) running();
      };
      const step = session.runScript(req).catch((error: Error) => error);
      await isRunning;
      // Another run's workspace is not touched.
      assert.equal(
        await setup!.executor.cleanupAfterCrash(join(root, 'workspaces', 'other-run')),
        0,
      );
      const stopped = await setup!.executor.cleanupAfterCrash(job.runDir);
      assert.ok(stopped >= 1, `stopped ${stopped}`);
      const outcome = await step;
      if (!(outcome instanceof Error)) assert.notEqual(outcome.exitCode, 0);
      await assertMarkerGone(marker);
      assert.equal(await setup!.leftovers(job), 0);
    });
  });
}

/** A `sleep` duration no other process uses: the marker of a test's background child. */
function markerSeconds(): number {
  return 100_000 + Math.floor(Math.random() * 800_000);
}

/** Whether a `sleep <seconds>` process exists anywhere on the host (containers' processes included). */
export function markerRunning(seconds: number): boolean {
  const wanted = `sleep\0${seconds}\0`;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'latin1').endsWith(wanted)) return true;
    } catch {
      // Exited meanwhile.
    }
  }
  return false;
}

/** SIGKILL is delivered asynchronously: allow the kernel a moment, but the process must go. */
async function assertMarkerGone(seconds: number): Promise<void> {
  for (let i = 0; i < 100 && markerRunning(seconds); i++) await sleep(50);
  assert.equal(markerRunning(seconds), false, `sleep ${seconds} is still running`);
}
