import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { podmanInstalled } from '../../../test/support/images.js';
import { createExecutors } from './index.js';
import { LocalExecutor } from './local/index.js';
import { PodmanExecutor } from './podman/index.js';

describe('createExecutors', () => {
  it('offers local always, podman when its CLI works here, kubernetes only when configured', async () => {
    const logged: object[] = [];
    const log = {
      info: (obj: object) => logged.push(obj),
      warn: (obj: object) => logged.push(obj),
    };
    const executors = createExecutors({ log });
    assert.ok(executors.get('local') instanceof LocalExecutor);
    assert.equal(executors.get('podman') instanceof PodmanExecutor, await podmanInstalled());
    assert.equal(executors.has('kubernetes'), false);
    assert.deepEqual(logged.at(-1), { executors: [...executors.keys()] });

    const withoutPodman = createExecutors({ podman: { podman: '/nonexistent/podman' }, log });
    assert.deepEqual([...withoutPodman.keys()], ['local']);
    assert.ok(logged.some((entry) => 'reason' in entry && /ENOENT/.test(String(entry.reason))));
  });

  it('loads the Kubernetes client and kubeconfig only when a job needs them; a failure fails the job, not the server', async () => {
    const executors = createExecutors({ kubeconfig: '/nonexistent/kubeconfig' });
    const kubernetes = executors.get('kubernetes')!;
    assert.equal(kubernetes.name, 'kubernetes');
    assert.deepEqual(kubernetes.capabilities, { container: true, services: true });
    // Either the client cannot load on this Node.js (2.x on Node 20) or the kubeconfig is missing.
    await assert.rejects(
      kubernetes.cleanupAfterCrash('/nonexistent/run'),
      /cannot be loaded|ENOENT/,
    );
  });
});
