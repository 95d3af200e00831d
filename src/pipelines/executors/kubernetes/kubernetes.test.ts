import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { V1Pod } from '@kubernetes/client-node';
import { KubeApiStandin, type ExecProtocol } from '../../../../test/support/kube-api-standin.js';
import { describeExecutorContract } from '../executor.case.test.js';
import { kubernetesClientProblem } from './client-probe.js';
import type { JobSession, JobSpec } from '../executor.js';

/**
 * The client is imported only after a child process has shown that it loads: on Node.js 20,
 * @kubernetes/client-node 2.x throws while loading (undici 8 needs Node.js >= 22.19) and then
 * throws again outside any catch, which would end or hang this test process. Then every test
 * here fails with the reason.
 */
const kubernetesModules = kubernetesClientProblem().then(async (problem) => {
  if (problem) throw new Error(problem);
  return Promise.all([import('./index.js'), import('./readiness.js')]);
});
kubernetesModules.catch(() => undefined);
const kubernetesExecutor = async (kubeconfig: string) =>
  new (await kubernetesModules)[0].KubernetesExecutor({ kubeconfig });

const IMAGE = 'localhost/valve-test/busybox:1';
const cannotRunPods = KubeApiStandin.canRunPods();

describeExecutorContract('kubernetes (API stand-in)', async () => {
  if (cannotRunPods) return { skip: cannotRunPods };
  await kubernetesModules;
  const standin = await KubeApiStandin.start();
  const belongsTo =
    (job: JobSpec) => (object: { metadata: { annotations?: Record<string, string> } }) =>
      object.metadata.annotations?.['valve.dev/workspace'] === job.workspace;
  return {
    executor: await kubernetesExecutor(standin.kubeconfig()),
    shell: 'sh',
    job: { container: { image: IMAGE } },
    leftovers: async (job) =>
      standin.listPods().filter(belongsTo(job)).length +
      standin.listSecrets().filter(belongsTo(job)).length,
    teardown: () => standin.close(),
  };
});

describe('kubernetes executor', () => {
  let root: string;
  let counter = 0;
  const standins: KubeApiStandin[] = [];
  const sessions: JobSession[] = [];
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'valve-k8s-test-'));
  });
  after(async () => {
    for (const session of sessions) await session.close().catch(() => undefined);
    for (const standin of standins) await standin.close();
    rmSync(root, { recursive: true, force: true });
  });

  const standin = async (t: TestContext, execProtocol?: ExecProtocol) => {
    if (cannotRunPods) {
      t.skip(cannotRunPods);
      return null;
    }
    await kubernetesModules;
    const started = await KubeApiStandin.start({ execProtocol });
    standins.push(started);
    return started;
  };
  const newJob = (extra: Partial<JobSpec> = {}, logs: string[] = []): JobSpec => {
    const runId = `K8s_Run.${++counter}`;
    const dir = join(root, 'workspaces', runId, 'test');
    mkdirSync(join(dir, 'workspace'), { recursive: true });
    return {
      runId,
      jobKey: 'test (node 20)',
      workspace: dir,
      container: { image: IMAGE },
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
      env: { PATH: '/usr/bin:/bin', SECRET_TOKEN: 's3cret' },
      timeoutMs: 120_000,
      signal: new AbortController().signal,
      onOutput: (chunk) => (output += chunk.toString()),
    });
    return { ...result, output };
  };

  it('creates a pod, waits for it by watch, syncs the job directory around each step through exec, deletes the pod', async (t) => {
    const api = await standin(t);
    if (!api) return;
    const logs: string[] = [];
    const job = newJob({}, logs);
    writeFileSync(join(job.workspace, 'workspace', 'input.txt'), 'from the host\n');
    const session = await (await kubernetesExecutor(api.kubeconfig())).prepareJob(job);
    // In the pod the job directory is the pod's own volume (a separate mount), not the host's.
    const step = await runStep(
      job,
      session,
      `grep -qF ' ${job.workspace} ' /proc/self/mountinfo && cat input.txt > output.txt && echo "token=$SECRET_TOKEN"`,
    );
    assert.equal(step.exitCode, 0, step.output);
    assert.equal(step.output, 'token=s3cret\n');
    assert.equal(
      readFileSync(join(job.workspace, 'workspace', 'output.txt'), 'utf8'),
      'from the host\n',
    );
    await session.close();

    const pod = 'valve-k8s-run-1-test-node-20';
    const pods = `/api/v1/namespaces/valve-test/pods`;
    const calls = api.callSummary();
    const expected = [
      `DELETE ${pods}/${pod}`,
      `POST ${pods}`,
      `GET ${pods} (watch)`,
      /^EXEC job: sh -c rm -rf .* && head -c \d+ \| tar -xof - -C \/$/,
      /^EXEC job: sh \/.*\/steps\/step-1\.run$/,
      /^EXEC job: sh -c cd '.*\/test' && tar -cf - \.$/,
      `DELETE ${pods}/${pod}`,
    ];
    assert.equal(calls.length, expected.length, calls.join('\n'));
    expected.forEach((want, i) =>
      typeof want === 'string' ? assert.equal(calls[i], want) : assert.match(calls[i]!, want),
    );
    // The environment (a secret, here) never appears in a URL: it travels in the step's files.
    assert.ok(!api.calls.some((c) => JSON.stringify(c).includes('s3cret')));
    const watch = api.calls.find((c) => c.query.watch);
    assert.deepEqual(watch?.query.fieldSelector, [`metadata.name=${pod}`]);
    assert.match(logs.join('\n'), new RegExp(`pod ${pod} is ready`));
    assert.equal(api.listPods().length, 0);
  });

  it('describes the job as a pod: labels, the job directory at its host path, services beside it reachable by name', async (t) => {
    const api = await standin(t);
    if (!api) return;
    const job = newJob({
      container: {
        image: IMAGE,
        env: { A: '1' },
        credentials: { username: 'robot', password: 'pw' },
      },
      services: {
        redis: {
          image: 'registry.example.com/redis:7',
          ports: ['6379:6379'],
          options:
            '--health-cmd "redis-cli ping" --health-interval 2s --health-retries 5 -e MODE=test',
        },
      },
    });
    const session = await (await kubernetesExecutor(api.kubeconfig())).prepareJob(job);
    sessions.push(session);
    const pod = api.listPods()[0] as unknown as V1Pod;
    assert.deepEqual(pod.metadata?.labels, {
      'valve.dev/run': 'K8s_Run.2',
      'valve.dev/job': `test-node-20-${pod.metadata!.labels!['valve.dev/job']!.slice(-8)}`,
      'app.kubernetes.io/managed-by': 'valve',
    });
    assert.equal(pod.metadata?.annotations?.['valve.dev/workspace'], job.workspace);
    const spec = pod.spec!;
    assert.equal(spec.automountServiceAccountToken, false);
    assert.equal(spec.restartPolicy, 'Never');
    assert.deepEqual(spec.hostAliases, [{ ip: '127.0.0.1', hostnames: ['redis'] }]);
    const [jobContainer, redis] = spec.containers;
    assert.equal(jobContainer!.image, IMAGE);
    assert.deepEqual(jobContainer!.command, ['tail', '-f', '/dev/null']);
    assert.deepEqual(jobContainer!.env, [{ name: 'A', value: '1' }]);
    assert.deepEqual(jobContainer!.volumeMounts?.[0], { name: 'job', mountPath: job.workspace });
    assert.deepEqual(
      spec.volumes?.find((v) => v.name === 'job'),
      { name: 'job', emptyDir: {} },
    );
    assert.equal(redis!.name, 'svc-redis');
    assert.deepEqual(redis!.env, [{ name: 'MODE', value: 'test' }]);
    assert.deepEqual(redis!.ports, [{ containerPort: 6379, protocol: 'TCP' }]);
    assert.deepEqual(redis!.readinessProbe, {
      exec: { command: ['sh', '-c', 'redis-cli ping'] },
      periodSeconds: 2,
      timeoutSeconds: 1,
      failureThreshold: 5,
      initialDelaySeconds: 0,
    });
    // Registry credentials become a pull secret of the pod, removed with it.
    const [secret] = api.listSecrets() as unknown as {
      metadata: { name: string };
      type: string;
      data: Record<string, string>;
    }[];
    assert.equal(secret?.type, 'kubernetes.io/dockerconfigjson');
    assert.deepEqual(spec.imagePullSecrets, [{ name: secret!.metadata.name }]);
    const auths = JSON.parse(
      Buffer.from(secret!.data['.dockerconfigjson']!, 'base64').toString(),
    ).auths;
    assert.deepEqual(Object.keys(auths), ['localhost']);
    assert.equal(auths.localhost.auth, Buffer.from('robot:pw').toString('base64'));
    await session.close();
    assert.equal(api.listPods().length + api.listSecrets().length, 0);
  });

  it('works with a cluster that speaks only v4.channel.k8s.io (stdin cannot be closed there)', async (t) => {
    const api = await standin(t, 'v4.channel.k8s.io');
    if (!api) return;
    const job = newJob();
    const big = Buffer.alloc(3 * 1024 * 1024, 'x');
    writeFileSync(join(job.workspace, 'workspace', 'big.bin'), big);
    const session = await (await kubernetesExecutor(api.kubeconfig())).prepareJob(job);
    sessions.push(session);
    const step = await runStep(job, session, 'wc -c < big.bin && echo changed > big.bin && exit 4');
    assert.equal(step.exitCode, 4);
    assert.equal(step.output.trim(), String(big.length));
    assert.equal(readFileSync(join(job.workspace, 'workspace', 'big.bin'), 'utf8'), 'changed\n');
    const execs = api.calls.filter((c) => c.exec).map((c) => c.exec!);
    assert.ok(execs.length >= 3);
    for (const exec of execs) {
      assert.equal(exec.offered[0], 'v5.channel.k8s.io');
      assert.equal(exec.protocol, 'v4.channel.k8s.io');
    }
  });

  it('fails clearly when the API refuses the credentials', async (t) => {
    const api = await standin(t);
    if (!api) return;
    const kubeconfig = api.kubeconfig().replace(api.token, 'wrong-token');
    await assert.rejects(
      (await kubernetesExecutor(kubeconfig)).prepareJob(newJob()),
      /Kubernetes API: 401 Unauthorized/,
    );
  });

  it('reads a pod status: ready, still waiting, or hopeless', async () => {
    const { podProgress } = (await kubernetesModules)[1];
    const ready = {
      status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] },
    } as V1Pod;
    assert.deepEqual(podProgress(ready), { state: 'ready' });
    const pulling = {
      status: {
        phase: 'Pending',
        containerStatuses: [
          { name: 'job', ready: false, state: { waiting: { reason: 'ContainerCreating' } } },
        ],
      },
    } as unknown as V1Pod;
    assert.deepEqual(podProgress(pulling), {
      state: 'waiting',
      detail: 'Pending, job ContainerCreating',
    });
    const backOff = {
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'svc-db',
            ready: false,
            state: {
              waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "db:1"' },
            },
          },
        ],
      },
    } as unknown as V1Pod;
    assert.deepEqual(podProgress(backOff), {
      state: 'failed',
      reason: 'container svc-db: ImagePullBackOff: Back-off pulling image "db:1"',
    });
    const unschedulable = {
      status: {
        phase: 'Pending',
        conditions: [{ type: 'PodScheduled', status: 'False', message: '0/3 nodes are available' }],
      },
    } as unknown as V1Pod;
    assert.deepEqual(podProgress(unschedulable), {
      state: 'waiting',
      detail: 'Pending, 0/3 nodes are available',
    });
  });
});
