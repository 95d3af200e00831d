import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { describeExecutorContract } from '../executor.case.test.js';
import type { JobSpec, ScriptRequest } from '../executor.js';
import { LocalExecutor } from './index.js';
import { findBubblewrap, probeBubblewrap } from './sandbox.js';

/** Processes whose working directory is in the job directory. */
async function processesIn(job: JobSpec): Promise<number> {
  let count = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      if (cwd === job.workspace || cwd.startsWith(`${job.workspace}/`)) count++;
    } catch {
      // Exited meanwhile.
    }
  }
  return count;
}

const bubblewrapProblem = probeBubblewrap(findBubblewrap());

describeExecutorContract('local', async () => ({
  executor: new LocalExecutor({ sandbox: 'none' }),
  shell: 'bash',
  leftovers: processesIn,
}));

describeExecutorContract('local + bubblewrap', async () => {
  const problem = await bubblewrapProblem;
  if (problem) return { skip: `no bubblewrap sandbox here: ${problem}` };
  return {
    executor: new LocalExecutor({ sandbox: 'bubblewrap' }),
    shell: 'bash',
    leftovers: processesIn,
  };
});

describe('local executor sandbox', () => {
  let root: string;
  before(() => {
    // Outside /tmp (the sandbox has its own): where a data directory may really be, like ~/.valve-data.
    root = mkdtempSync(join(homedir(), '.valve-sandbox-test-'));
    mkdirSync(join(root, 'data'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const job = (name: string, logs: string[] = []): JobSpec => {
    const dir = join(root, 'data', 'workspaces', name, 'build');
    mkdirSync(join(dir, 'workspace'), { recursive: true });
    return {
      runId: name,
      jobKey: 'build',
      workspace: dir,
      log: (l) => logs.push(l),
      signal: new AbortController().signal,
    };
  };
  const run = async (
    spec: JobSpec,
    session: { runScript(r: ScriptRequest): Promise<{ exitCode: number }> },
    script: string,
  ) => {
    let output = '';
    const result = await session.runScript({
      script,
      shell: 'bash',
      cwd: join(spec.workspace, 'workspace'),
      // A step's PATH may name any directory ($GITHUB_PATH): that must not bind it into the sandbox.
      env: {
        PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:${join(root, 'data', 'repos')}`,
        HOME: process.env.HOME ?? '/root',
      },
      timeoutMs: 60_000,
      signal: new AbortController().signal,
      onOutput: (chunk) => (output += chunk.toString()),
    });
    return { exitCode: result.exitCode, output };
  };

  it('keeps a step away from the data directory, the host /tmp, the server process and system files', async (t) => {
    const problem = await bubblewrapProblem;
    if (problem) return t.skip(problem);
    // What a step must not reach: the database, another run's workspace, a host temp file.
    writeFileSync(join(root, 'data', 'valve.db'), 'secret');
    mkdirSync(join(root, 'data', 'repos'));
    writeFileSync(join(root, 'data', 'repos', 'team-b.git'), 'another team');
    const other = job('other-run');
    writeFileSync(join(other.workspace, 'workspace', 'source.txt'), 'another team');
    const hostTemp = mkdtempSync(join(tmpdir(), 'valve-host-temp-'));
    writeFileSync(join(hostTemp, 'file'), 'host');
    const logs: string[] = [];
    const spec = job('sandboxed', logs);
    const session = await new LocalExecutor({ sandbox: 'bubblewrap' }).prepareJob(spec);
    assert.match(logs.join('\n'), /bubblewrap sandbox/);
    const checks = [
      `test ! -e ${join(root, 'data', 'valve.db')}`,
      `test ! -e ${join(other.workspace, 'workspace', 'source.txt')}`,
      `test ! -e ${join(hostTemp, 'file')}`,
      `test ! -e ${join(root, 'data', 'repos', 'team-b.git')}`,
      `! kill -0 ${process.pid} 2>/dev/null`,
      '! touch /usr/valve-sandbox-probe 2>/dev/null',
      '! touch /etc/valve-sandbox-probe 2>/dev/null',
      'test -r /etc/passwd',
      'echo private > /tmp/scratch && test -w /tmp/scratch',
      'touch written-by-step',
      'command -v node >/dev/null',
    ];
    for (const check of checks) {
      const { exitCode, output } = await run(spec, session, check);
      assert.equal(exitCode, 0, `${check}: ${output}`);
    }
    rmSync(hostTemp, { recursive: true, force: true });
  });

  it('falls back to plain processes when bwrap is missing, and says so in the job log', async () => {
    const logs: string[] = [];
    const spec = job('fallback', logs);
    const session = await new LocalExecutor({ bubblewrap: '/nonexistent/bwrap' }).prepareJob(spec);
    assert.match(
      logs.join('\n'),
      /plain host processes, without a sandbox: bwrap is not installed/,
    );
    // Without the sandbox the host's files are visible (which is why the sandbox is the default).
    writeFileSync(join(root, 'data', 'visible'), 'x');
    assert.equal(
      (await run(spec, session, `test -e ${join(root, 'data', 'visible')}`)).exitCode,
      0,
    );
  });

  it('refuses to run a job when the sandbox is required but unavailable', async () => {
    await assert.rejects(
      new LocalExecutor({ sandbox: 'bubblewrap', bubblewrap: '/nonexistent/bwrap' }).prepareJob(
        job('required'),
      ),
      /bubblewrap sandbox is required but bwrap is not installed/,
    );
  });
});
