import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import {
  ensureBusyboxHttpImage,
  ensureBusyboxImage,
  podmanInstalled,
} from '../../../../test/support/images.js';
import { describeExecutorContract } from '../executor.case.test.js';
import type { JobSession, JobSpec } from '../executor.js';
import { PodmanExecutor } from './index.js';

const run = promisify(execFile);
const installed = podmanInstalled();
const NOT_INSTALLED = 'podman is not installed (scripts/setup-podman.sh installs it)';

/** Containers and networks still labelled with the job's workspace. */
async function leftovers(job: JobSpec): Promise<number> {
  const filter = `label=valve.workspace=${job.workspace}`;
  const containers = await run('podman', ['ps', '--all', '--quiet', '--filter', filter]);
  const networks = await run('podman', ['network', 'ls', '--quiet', '--filter', filter]);
  return (containers.stdout + networks.stdout).split('\n').filter(Boolean).length;
}

describeExecutorContract('podman', async () => {
  if (!(await installed)) return { skip: NOT_INSTALLED };
  const image = await ensureBusyboxImage();
  return { executor: new PodmanExecutor(), shell: 'sh', job: { container: { image } }, leftovers };
});

describe('podman executor: containers and services', () => {
  let root: string;
  let counter = 0;
  const sessions: JobSession[] = [];
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'valve-podman-test-'));
  });
  after(async () => {
    for (const session of sessions) await session.close().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  const newJob = (extra: Partial<JobSpec>, logs: string[] = []): JobSpec => {
    const runId = `podman${++counter}-${process.pid}`;
    const dir = join(root, 'workspaces', runId, 'test');
    mkdirSync(join(dir, 'workspace'), { recursive: true });
    return {
      runId,
      jobKey: 'test',
      workspace: dir,
      log: (l) => logs.push(l),
      signal: new AbortController().signal,
      ...extra,
    };
  };
  const runStep = async (job: JobSpec, session: JobSession, script: string) => {
    let output = '';
    const result = await session.runScript({
      script,
      shell: 'sh',
      cwd: join(job.workspace, 'workspace'),
      env: {},
      timeoutMs: 120_000,
      signal: new AbortController().signal,
      onOutput: (chunk) => (output += chunk.toString()),
    });
    return { ...result, output };
  };
  const skipWithoutPodman = async (t: TestContext) => {
    if (await installed) return false;
    t.skip(NOT_INSTALLED);
    return true;
  };

  it('runs steps in the container: image, reaches services by name, waits for their health check, publishes their ports', async (t) => {
    if (await skipWithoutPodman(t)) return;
    const [image, httpImage, hostPort] = await Promise.all([
      ensureBusyboxImage(),
      ensureBusyboxHttpImage(),
      freePort(),
    ]);
    const logs: string[] = [];
    const job = newJob(
      {
        container: { image, env: { FROM_CONTAINER_ENV: 'job-env' } },
        services: {
          web: {
            image: httpImage,
            env: { GREETING: 'hello from the web service' },
            ports: [`${hostPort}:80`],
            options:
              '--health-cmd "wget -q -O /dev/null http://127.0.0.1/" --health-interval 1s --health-retries 30',
          },
        },
      },
      logs,
    );
    const session = await new PodmanExecutor().prepareJob(job);
    sessions.push(session);
    assert.match(logs.join('\n'), /service web is healthy/);
    const step = await runStep(
      job,
      session,
      'wget -q -O- http://web/\ncat /etc/valve-test-image\necho "$FROM_CONTAINER_ENV"',
    );
    assert.equal(step.exitCode, 0, step.output);
    assert.equal(step.output, `hello from the web service\n${image}\njob-env\n`);
    const fromHost = await fetch(`http://127.0.0.1:${hostPort}/`);
    assert.equal(await fromHost.text(), 'hello from the web service\n');
    await session.close();
    assert.equal(await leftovers(job), 0);
  });

  it('runs a job with only services in the default image', async (t) => {
    if (await skipWithoutPodman(t)) return;
    const [image, httpImage] = await Promise.all([ensureBusyboxImage(), ensureBusyboxHttpImage()]);
    const job = newJob({ services: { cache: { image: httpImage } } });
    const session = await new PodmanExecutor({ defaultImage: image }).prepareJob(job);
    sessions.push(session);
    const step = await runStep(
      job,
      session,
      'cat /etc/valve-test-image && wget -q -O- http://cache/',
    );
    assert.equal(step.output, `${image}\nhello\n`);
  });

  it('fails clearly for an image that is neither local nor pullable, leaving nothing behind', async (t) => {
    if (await skipWithoutPodman(t)) return;
    const job = newJob({ container: { image: 'localhost:1/valve-test/absent:1' } });
    await assert.rejects(
      new PodmanExecutor().prepareJob(job),
      /image localhost:1\/valve-test\/absent:1 is not in podman's local storage and could not be pulled/,
    );
    assert.equal(await leftovers(job), 0);
  });

  it('refuses options that would reach outside the job, before starting anything', async (t) => {
    if (await skipWithoutPodman(t)) return;
    const image = await ensureBusyboxImage();
    const job = newJob({
      services: { db: { image, options: '--health-cmd true -v /:/host' } },
      container: { image },
    });
    await assert.rejects(
      new PodmanExecutor().prepareJob(job),
      /services\.db: options: -v is not supported/,
    );
    assert.equal(await leftovers(job), 0);
  });

  it('fails when a service stops or turns unhealthy, naming it', async (t) => {
    if (await skipWithoutPodman(t)) return;
    const image = await ensureBusyboxImage();
    // The busybox image's default command is `sh`, which exits at once without a terminal.
    const exits = newJob({ container: { image }, services: { quitter: { image } } });
    await assert.rejects(
      new PodmanExecutor().prepareJob(exits),
      /service quitter stopped \(exited, exit code 0\)/,
    );
    assert.equal(await leftovers(exits), 0);
    const httpImage = await ensureBusyboxHttpImage();
    const unhealthy = newJob({
      container: { image },
      services: {
        sick: {
          image: httpImage,
          options:
            '--health-cmd "echo failing check; exit 1" --health-retries 1 --health-interval 1s',
        },
      },
    });
    await assert.rejects(
      new PodmanExecutor().prepareJob(unhealthy),
      /service sick is unhealthy: failing check/,
    );
    assert.equal(await leftovers(unhealthy), 0);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
