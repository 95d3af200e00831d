import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream } from 'node:stream/web';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../target.js';
import { isPortFree } from './ports.js';
import { WorkloadProxy, type WorkloadProxyOptions } from './proxy.js';

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

/**
 * Instances that die, stall or reset, on real sockets: the proxy must neither hang nor fail a
 * request another instance can serve, nor send twice what cannot be sent twice, and must
 * count each request once. No assertion on timing: each test's own timeout is what catches a
 * hang (the kernel gives up on a dropped SYN after about two minutes).
 */
describe('WorkloadProxy when instances fail', () => {
  /** Each test gets this long: it takes about a second, a connect waiting out the kernel minutes. */
  const testTimeout = { timeout: 20_000 };
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  interface LogEvent {
    level: string;
    msg: string | undefined;
    /** The failure a retry or a 502 was for. */
    err: unknown;
  }

  async function newProxy(options: Partial<WorkloadProxyOptions> = {}) {
    let port = await freePort();
    while (!(await isPortFree(port))) port = await freePort();
    const events: LogEvent[] = [];
    const record =
      (level: string) =>
      (obj: object, msg?: string): void => {
        events.push({ level, msg, err: (obj as { err?: unknown }).err });
      };
    const proxy = new WorkloadProxy({
      host: '127.0.0.1',
      port,
      name: 'team/app/dev',
      logger: {
        debug: record('debug'),
        info: record('info'),
        warn: record('warn'),
        error: record('error'),
      },
      ...options,
    });
    await proxy.listen();
    cleanups.push(() => proxy.close());
    /** Why each retry happened, in order. */
    const retries = () =>
      events.filter((event) => event.msg?.includes('retries')).map((event) => String(event.err));
    return { proxy, retries };
  }

  /** An HTTP server that records what it was sent and answers `name <method> <body>`. */
  async function recording(name: string, delayMs = 0) {
    const seen: string[] = [];
    const started = await backend((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push(`${req.method} ${body}`);
        setTimeout(() => res.end(`${name} ${req.method} ${body}`), delayMs);
      });
    });
    cleanups.push(() => {
      started.server.closeAllConnections();
      started.server.close();
    });
    return { backend: { id: name, port: started.port }, seen };
  }

  /** Reads each request whole, then resets the connection without answering. */
  async function resetting(name: string) {
    const seen: string[] = [];
    const started = await backend((req) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        seen.push(`${req.method} ${body}`);
        req.socket.resetAndDestroy();
      });
    });
    cleanups.push(() => {
      started.server.closeAllConnections();
      started.server.close();
    });
    return { backend: { id: name, port: started.port }, seen };
  }

  /** Accepts connections and never answers; `sockets` are the connections it holds. */
  async function silent(name: string) {
    const sockets: Socket[] = [];
    const server = createNetServer((socket) => {
      sockets.push(socket);
      socket.resume();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => {
      for (const socket of sockets) socket.destroy();
      server.close();
    });
    return { backend: { id: name, port: (server.address() as AddressInfo).port }, sockets };
  }

  /** A node process serving `name <method>` over HTTP after `delayMs`, to be killed. */
  async function childServer(name: string, delayMs = 0) {
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const server = require('node:http').createServer((req, res) => {
           req.resume();
           req.on('end', () => setTimeout(() => res.end(${JSON.stringify(name)} + ' ' + req.method), ${delayMs}));
         });
         server.listen(0, '127.0.0.1', () => console.log(server.address().port));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => child.kill('SIGKILL'));
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    return { backend: { id: name, port: Number(String(line).trim()) }, child };
  }

  /**
   * A port whose connects never complete: a listening socket in a process that never accepts,
   * its accept queue filled, so the kernel drops further SYNs, as it does for a published port
   * of a container torn down.
   */
  async function stalled(name: string) {
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const server = require('node:net').createServer();
         server.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => {
           console.log(server.address().port);
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    cleanups.push(() => child.kill('SIGKILL'));
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const port = Number(String(line).trim());
    const fillers: Socket[] = [];
    cleanups.push(() => fillers.forEach((socket) => socket.destroy()));
    for (;;) {
      const socket = connect(port, '127.0.0.1');
      fillers.push(socket);
      const completed = await Promise.race([
        once(socket, 'connect').then(() => true),
        // Long enough that a busy test process is not taken for a full queue.
        delay(1000).then(() => false),
      ]);
      if (!completed) break;
      assert.ok(fillers.length < 50, 'the accept queue never filled');
    }
    return { id: name, port };
  }

  async function get(url: string, init?: RequestInit): Promise<{ status: number; text: string }> {
    const res = await fetch(url, init);
    return { status: res.status, text: await res.text() };
  }

  it(
    'gives up a connect that does not complete, serves elsewhere, then skips that instance',
    testTimeout,
    async () => {
      const { proxy, retries } = await newProxy();
      const good = await recording('good');
      proxy.setBackends([await stalled('stalled'), good.backend]);
      for (let i = 0; i < 6; i++)
        assert.deepEqual(await get(proxy.url), { status: 200, text: 'good GET ' });
      assert.deepEqual(retries(), ['connect timeout'], 'tried once, then skipped');
      assert.deepEqual(proxy.totals('stable'), { requests: 6, errors5xx: 0 });
    },
  );

  it(
    'answers 502, counted for its set, when the only instance never accepts',
    testTimeout,
    async () => {
      const { proxy } = await newProxy();
      proxy.setBackends([await stalled('stalled')]);
      const answer = await get(proxy.url);
      assert.equal(answer.status, 502);
      assert.match(answer.text, /instance of team\/app\/dev did not answer/);
      assert.deepEqual(proxy.totals('stable'), { requests: 1, errors5xx: 1 });
    },
  );

  it(
    'sends a streamed POST elsewhere when the connect fails: nothing of it was sent',
    testTimeout,
    async () => {
      const { proxy, retries } = await newProxy();
      const good = await recording('good');
      proxy.setBackends([{ id: 'dead', port: await freePort() }, good.backend]);
      for (let i = 0; i < 4; i++) {
        const answer = await get(proxy.url, {
          method: 'POST',
          body: Readable.toWeb(Readable.from(['part 1, ', `part 2 of ${i}`])) as ReadableStream,
          duplex: 'half',
        } as RequestInit);
        assert.deepEqual(answer, { status: 200, text: `good POST part 1, part 2 of ${i}` });
      }
      assert.deepEqual(retries(), ['ECONNREFUSED']);
      assert.equal(good.seen.length, 4);
    },
  );

  it(
    'retries a GET, or a PUT with a small body, that an instance reset, on another',
    testTimeout,
    async () => {
      // Not skipped after a failure here, so the resetting instance keeps getting requests.
      const { proxy, retries } = await newProxy({ failTimeoutMs: 0 });
      const reset = await resetting('reset');
      const good = await recording('good');
      proxy.setBackends([reset.backend, good.backend]);
      for (let i = 0; i < 4; i++) {
        assert.deepEqual(await get(proxy.url), { status: 200, text: 'good GET ' });
        const put = await get(proxy.url, { method: 'PUT', body: `doc ${i}` });
        assert.deepEqual(put, { status: 200, text: `good PUT doc ${i}` });
      }
      assert.ok(reset.seen.length >= 2, `the resetting instance got requests: ${reset.seen}`);
      assert.equal(retries().length, reset.seen.length);
      assert.ok(
        reset.seen.every((seen) => good.seen.includes(seen)),
        'replayed with the same body',
      );
      assert.deepEqual(proxy.totals('stable'), { requests: 8, errors5xx: 0 });
    },
  );

  it(
    'never sends twice a POST, or a PUT with a streamed body, that an instance reset',
    testTimeout,
    async () => {
      const { proxy, retries } = await newProxy({ failTimeoutMs: 0 });
      const reset = await resetting('reset');
      const good = await recording('good');
      proxy.setBackends([reset.backend, good.backend]);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        statuses.push((await get(proxy.url, { method: 'POST', body: `order ${i}` })).status);
        const streamed = await get(proxy.url, {
          method: 'PUT',
          body: Readable.toWeb(Readable.from([`file ${i}`])) as ReadableStream,
          duplex: 'half',
        } as RequestInit);
        statuses.push(streamed.status);
      }
      assert.deepEqual(retries(), [], 'nothing retried');
      const failed = statuses.filter((status) => status === 502).length;
      assert.equal(failed, reset.seen.length, 'each request the instance reset is a 502');
      assert.ok(failed >= 2, `the resetting instance got requests: ${statuses}`);
      assert.equal(good.seen.length + reset.seen.length, 8, 'each request sent once');
      assert.deepEqual(proxy.totals('stable'), { requests: 8, errors5xx: failed });
    },
  );

  it(
    'loses no request of a polling client while one of two instance processes is killed',
    testTimeout,
    async () => {
      const { proxy } = await newProxy();
      // Answering after 20 ms, so requests are in flight when the process dies.
      const doomed = await childServer('doomed', 20);
      const survivor = await childServer('survivor', 20);
      proxy.setBackends([doomed.backend, survivor.backend]);
      const answers: string[] = [];
      const failures: string[] = [];
      let polling = true;
      const poll = async () => {
        while (polling) {
          try {
            const answer = await get(proxy.url);
            if (answer.status === 200) answers.push(answer.text);
            else failures.push(`${answer.status} ${answer.text}`);
          } catch (error) {
            failures.push(String(error));
          }
        }
      };
      const pollers = [poll(), poll(), poll()];
      while (!answers.includes('doomed GET')) await delay(10);
      doomed.child.kill('SIGKILL');
      await once(doomed.child, 'exit');
      const atKill = answers.length;
      while (answers.length < atKill + 60) await delay(10);
      polling = false;
      await Promise.all(pollers);
      assert.deepEqual(failures, []);
      assert.ok(answers.slice(atKill).filter((text) => text === 'survivor GET').length >= 50);
      assert.deepEqual(proxy.totals('stable'), { requests: answers.length, errors5xx: 0 });
    },
  );

  it(
    'counts a request once: retried and served, or failed for its set wherever it ended',
    testTimeout,
    async () => {
      const { proxy } = await newProxy();
      const good = await recording('good');
      const dead = { id: 'dead', port: await freePort() };

      proxy.setBackends([dead, good.backend]);
      for (let i = 0; i < 4; i++) assert.equal((await get(proxy.url)).status, 200);
      assert.deepEqual(proxy.totals('stable'), { requests: 4, errors5xx: 0 });

      // Every canary request: its set has only a dead instance, the stable one serves it.
      proxy.setBackends([good.backend]);
      proxy.setCanary([{ id: 'dead-canary', port: await freePort() }], 100);
      for (let i = 0; i < 3; i++) assert.equal((await get(proxy.url)).status, 200);
      assert.deepEqual(proxy.totals('canary'), { requests: 3, errors5xx: 3 });
      assert.deepEqual(proxy.totals('stable'), { requests: 4, errors5xx: 0 });

      proxy.setCanary([], 0);
      proxy.setBackends([dead]);
      assert.equal((await get(proxy.url)).status, 502);
      assert.deepEqual(proxy.totals('stable'), { requests: 5, errors5xx: 1 });
    },
  );

  it(
    'waits for a slow answer by default, and with a response-header timeout moves on',
    testTimeout,
    async () => {
      const slow = await recording('slow', 800);
      const { proxy: patient } = await newProxy();
      patient.setBackends([slow.backend]);
      assert.deepEqual(await get(patient.url), { status: 200, text: 'slow GET ' });

      const { proxy, retries } = await newProxy({ responseHeadersTimeoutMs: 200 });
      const mute = await silent('mute');
      const good = await recording('good');
      proxy.setBackends([mute.backend, good.backend]);
      for (let i = 0; i < 3; i++)
        assert.deepEqual(await get(proxy.url), { status: 200, text: 'good GET ' });
      assert.deepEqual(retries(), ['response headers timeout']);

      proxy.setBackends([mute.backend]);
      const post = await get(proxy.url, { method: 'POST', body: 'once' });
      assert.equal(post.status, 504);
      assert.deepEqual(proxy.totals('stable'), { requests: 4, errors5xx: 1 });
    },
  );

  it(
    'sends a GET elsewhere when an instance dies between its answer headers and body',
    testTimeout,
    async () => {
      const { proxy, retries } = await newProxy({ failTimeoutMs: 0 });
      // Headers promising a body, then a reset: what a killed process that wrote them leaves.
      const seen: string[] = [];
      const cut = createNetServer((socket) => {
        socket.once('data', (head: Buffer) => {
          seen.push(String(head).split(' ')[0]!);
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n', () =>
            setTimeout(() => socket.resetAndDestroy(), 20),
          );
        });
      });
      cut.listen(0, '127.0.0.1');
      await once(cut, 'listening');
      cleanups.push(() => cut.close());
      const good = await recording('good');
      proxy.setBackends([{ id: 'cut', port: (cut.address() as AddressInfo).port }, good.backend]);
      for (let i = 0; i < 4; i++)
        assert.deepEqual(await get(proxy.url), { status: 200, text: 'good GET ' });
      assert.ok(seen.length >= 2, `the cut instance got requests: ${seen}`);
      assert.equal(retries().length, seen.length);
      assert.match(retries()[0]!, /answer cut before its body/);
      assert.deepEqual(proxy.totals('stable'), { requests: 4, errors5xx: 0 });

      // A POST is never sent twice: its client sees the answer cut.
      proxy.setBackends([{ id: 'cut', port: (cut.address() as AddressInfo).port }]);
      await assert.rejects(get(proxy.url, { method: 'POST', body: 'once' }));
      assert.equal(seen.at(-1), 'POST');
    },
  );

  it('aborts the request to the instance when the client goes away', testTimeout, async () => {
    const { proxy } = await newProxy();
    const mute = await silent('mute');
    proxy.setBackends([mute.backend]);
    const client = new AbortController();
    const pending = fetch(`${proxy.url}/long-poll`, { signal: client.signal }).catch(
      (error: Error) => error.name,
    );
    while (mute.sockets.length === 0) await delay(10);
    const [upstream] = mute.sockets;
    assert.equal(await proxy.waitForIdle(['mute'], 0), false, 'in flight');
    client.abort();
    assert.equal(await pending, 'AbortError');
    await once(upstream!, 'close');
    assert.equal(await proxy.waitForIdle(['mute'], 5000), true);
    assert.deepEqual(proxy.totals('stable'), { requests: 0, errors5xx: 0 }, 'not counted');
  });
});
