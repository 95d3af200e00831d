import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../target.js';
import { isPortFree } from './ports.js';
import { WorkloadProxy } from './proxy.js';

async function backend(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function freePort(): Promise<number> {
  const probe = await backend(() => {});
  probe.server.close();
  await once(probe.server, 'close');
  return probe.port;
}

describe('WorkloadProxy', () => {
  const servers: Server[] = [];
  let proxy: WorkloadProxy;

  before(async () => {
    let port = await freePort();
    while (!(await isPortFree(port))) port = await freePort();
    proxy = new WorkloadProxy({
      host: '127.0.0.1',
      port,
      name: 'team/app/dev',
      logger: silentLogger,
    });
    await proxy.listen();
  });

  after(async () => {
    await proxy.close();
    for (const server of servers) {
      server.closeAllConnections();
      server.close();
    }
  });

  const named = async (name: string) => {
    const started = await backend((req, res) => {
      res.setHeader('connection', 'keep-alive, x-private');
      res.setHeader('x-private', 'hop');
      res.end(`${name} ${req.method} ${req.url} xff=${req.headers['x-forwarded-for']}`);
    });
    servers.push(started.server);
    return { id: name, port: started.port };
  };

  it('answers 502 while no instance is ready', async () => {
    proxy.setBackends([]);
    const res = await fetch(proxy.url);
    assert.equal(res.status, 502);
    assert.match(await res.text(), /no ready instance of team\/app\/dev/);
  });

  it('spreads requests round-robin and forwards path, method and client address', async () => {
    proxy.setBackends([await named('a'), await named('b')]);
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await (await fetch(`${proxy.url}/x?y=1`)).text());
    assert.deepEqual(answers.map((answer) => answer.split(' ')[0]).sort(), ['a', 'a', 'b', 'b']);
    assert.match(answers[0]!, /^[ab] GET \/x\?y=1 xff=127\.0\.0\.1$/);
  });

  it('drops hop-by-hop headers of the answer', async () => {
    proxy.setBackends([await named('c')]);
    const res = await fetch(proxy.url);
    await res.text();
    assert.equal(res.headers.get('x-private'), null);
  });

  it('streams request bodies both ways', async () => {
    const echo = await backend((req, res) => req.pipe(res));
    servers.push(echo.server);
    proxy.setBackends([{ id: 'echo', port: echo.port }]);
    const body = 'x'.repeat(1 << 20);
    const res = await fetch(proxy.url, { method: 'POST', body });
    assert.equal(await res.text(), body);
  });

  it('sends a GET to another instance when one does not answer', async () => {
    const dead = { id: 'dead', port: await freePort() };
    proxy.setBackends([dead, await named('alive')]);
    for (let i = 0; i < 4; i++) {
      const res = await fetch(proxy.url);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^alive /);
    }
  });

  it('splits requests by the canary weight, exactly and evenly, and counts 5xx per set', async () => {
    const failing = await backend((_req, res) => {
      res.writeHead(500);
      res.end('canary broken');
    });
    servers.push(failing.server);
    const since = Date.now();
    const stableBefore = proxy.stats('stable', since);
    proxy.setBackends([await named('stable')]);
    proxy.setCanary([{ id: 'canary', port: failing.port }], 20);
    const statuses: number[] = [];
    for (let i = 0; i < 50; i++) {
      const res = await fetch(proxy.url);
      await res.text();
      statuses.push(res.status);
    }
    // Every fifth request, from the fifth on: 10 of 50.
    assert.deepEqual(
      statuses.flatMap((status, i) => (status === 500 ? [i] : [])),
      [4, 9, 14, 19, 24, 29, 34, 39, 44, 49],
    );
    assert.deepEqual(proxy.stats('canary', since), { requests: 10, errors5xx: 10 });
    assert.deepEqual(proxy.totals('canary'), { requests: 10, errors5xx: 10 });
    const stable = proxy.stats('stable', since);
    assert.equal(stable.requests - stableBefore.requests, 40);
    assert.equal(stable.errors5xx - stableBefore.errors5xx, 0);

    proxy.setCanary([{ id: 'canary', port: failing.port }], 0);
    for (let i = 0; i < 10; i++) assert.equal((await fetch(proxy.url)).status, 200);
    assert.equal(proxy.stats('canary', since).requests, 10, 'weight 0 sends nothing');
    proxy.setCanary([], 0);
  });

  it('counts a canary that does not answer as 5xx and retries the GET on the stable set', async () => {
    // Counted in 250 ms buckets: compare with the counts so far.
    const before = proxy.stats('canary');
    proxy.setBackends([await named('stable')]);
    proxy.setCanary([{ id: 'gone', port: await freePort() }], 50);
    for (let i = 0; i < 10; i++) {
      const res = await fetch(proxy.url);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /^stable /);
    }
    const after = proxy.stats('canary');
    assert.equal(after.requests - before.requests, 5);
    assert.equal(after.errors5xx - before.errors5xx, 5);
    proxy.setCanary([], 0);
  });

  it('waits for in-flight requests of replaced instances before they may stop', async () => {
    let finish: () => void = () => {};
    let signalArrived: () => void = () => {};
    const arrived = new Promise<void>((resolve) => (signalArrived = resolve));
    const slow = await backend((_req, res) => {
      finish = () => res.end('slow done');
      signalArrived();
    });
    servers.push(slow.server);
    proxy.setBackends([{ id: 'slow', port: slow.port }]);
    const answer = fetch(proxy.url).then((res) => res.text());
    await arrived;
    proxy.setBackends([await named('new')]);
    let idle = false;
    const drained = proxy.waitForIdle(['slow'], 60_000).then((result) => (idle = result));
    assert.match(await (await fetch(proxy.url)).text(), /^new /, 'new requests go to the new set');
    assert.equal(idle, false, 'the old instance still has a request in flight');
    finish();
    assert.equal(await answer, 'slow done');
    await drained;
    assert.equal(idle, true);
  });
});
