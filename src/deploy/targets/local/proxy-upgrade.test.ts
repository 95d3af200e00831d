import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { isPortFree } from './ports.js';
import { WorkloadProxy } from './proxy.js';

/**
 * WebSocket and other upgrade requests through the proxy, on real sockets with `ws` as both the
 * instance and the client. No assertion on timing: each test's timeout is what catches a hang.
 */
describe('WorkloadProxy upgrade requests', () => {
  const testTimeout = { timeout: 20_000 };
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  async function freePort(): Promise<number> {
    for (;;) {
      const probe = createServer();
      probe.listen(0, '127.0.0.1');
      await once(probe, 'listening');
      const { port } = probe.address() as AddressInfo;
      probe.close();
      await once(probe, 'close');
      if (await isPortFree(port)) return port;
    }
  }

  async function newProxy() {
    const retries: string[] = [];
    const proxy = new WorkloadProxy({
      host: '127.0.0.1',
      port: await freePort(),
      name: 'team/app/dev',
      logger: {
        debug: (obj, msg) => {
          if (msg?.includes('retries')) retries.push(String((obj as { err?: unknown }).err));
        },
        info: () => {},
        warn: () => {},
        error: () => {},
      },
    });
    await proxy.listen();
    cleanups.push(() => proxy.close());
    return { proxy, retries, wsUrl: `${proxy.url.replace('http:', 'ws:')}/chat?room=1` };
  }

  /** A WebSocket instance answering each message with `<name>: <message>`. */
  async function echoInstance(name: string) {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    /** The instance's side of each connection, and the request that opened it. */
    const connections: { socket: WebSocket; req: IncomingMessage; closed: Promise<unknown> }[] = [];
    wss.on('connection', (socket, req) => {
      connections.push({ socket, req, closed: once(socket, 'close') });
      socket.on('message', (data) => socket.send(`${name}: ${String(data)}`));
    });
    cleanups.push(() => {
      for (const { socket } of connections) socket.terminate();
      wss.close();
    });
    const { port } = wss.address() as AddressInfo;
    return { backend: { id: name, port }, connections };
  }

  /**
   * An instance that serves HTTP and declines every upgrade offer; an answer `inParts` has no
   * Content-Length (it is chunked).
   */
  async function httpInstance(
    name: string,
    handler: (
      req: IncomingMessage,
      body: string,
    ) => { status: number; text: string; inParts?: boolean },
  ) {
    const server: Server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        const { status, text, inParts } = handler(req, body);
        if (!inParts) {
          res.writeHead(status, { 'content-length': Buffer.byteLength(text) });
          return res.end(text);
        }
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.write(text.slice(0, 3));
        res.end(text.slice(3));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    cleanups.push(() => {
      server.closeAllConnections();
      server.close();
    });
    return { id: name, port: (server.address() as AddressInfo).port };
  }

  async function openClient(url: string): Promise<WebSocket> {
    const client = new WebSocket(url);
    cleanups.push(() => client.terminate());
    await once(client, 'open');
    return client;
  }

  async function say(client: WebSocket, text: string): Promise<string> {
    client.send(text);
    const [data] = (await once(client, 'message')) as [Buffer];
    return String(data);
  }

  /** Writes `request` on a raw connection to the proxy; resolves with all it got until closed. */
  async function rawExchange(
    proxy: WorkloadProxy,
    request: string,
    more?: { after: RegExp; send: string },
  ): Promise<string> {
    const socket = connect(Number(new URL(proxy.url).port), '127.0.0.1');
    cleanups.push(() => socket.destroy());
    await once(socket, 'connect');
    socket.write(request);
    let received = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (more && more.after.test(received)) {
        socket.write(more.send);
        more = undefined;
      }
    });
    await once(socket, 'end');
    socket.end();
    return received;
  }

  it('passes messages both ways and forwards the request', testTimeout, async () => {
    const { proxy, wsUrl } = await newProxy();
    const a = await echoInstance('a');
    proxy.setBackends([a.backend]);
    const client = await openClient(wsUrl);
    assert.equal(await say(client, 'hello'), 'a: hello');
    assert.equal(await say(client, 'again'), 'a: again');
    const { req } = a.connections[0]!;
    assert.equal(req.url, '/chat?room=1');
    assert.equal(req.headers.upgrade, 'websocket');
    assert.equal(req.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(req.headers['x-forwarded-host'], new URL(proxy.url).host);
    // The instance pushes without being asked.
    const pushed = once(client, 'message');
    a.connections[0]!.socket.send('news');
    assert.equal(String((await pushed)[0]), 'news');
    assert.deepEqual(proxy.totals('stable'), { requests: 1, errors5xx: 0 });
  });

  it('sends upgrades to the canary by its weight', testTimeout, async () => {
    const { proxy, wsUrl } = await newProxy();
    const stable = await echoInstance('stable');
    const canary = await echoInstance('canary');
    proxy.setBackends([stable.backend]);
    proxy.setCanary([canary.backend], 100);
    assert.equal(await say(await openClient(wsUrl), 'hi'), 'canary: hi');
    proxy.setCanary([canary.backend], 0);
    assert.equal(await say(await openClient(wsUrl), 'hi'), 'stable: hi');
    assert.deepEqual(proxy.totals('canary'), { requests: 1, errors5xx: 0 });
    assert.deepEqual(proxy.totals('stable'), { requests: 1, errors5xx: 0 });
  });

  it('tries another instance when the connect is refused', testTimeout, async () => {
    const { proxy, retries, wsUrl } = await newProxy();
    const live = await echoInstance('live');
    proxy.setBackends([{ id: 'dead', port: await freePort() }, live.backend]);
    for (let i = 0; i < 3; i++) assert.equal(await say(await openClient(wsUrl), 'hi'), 'live: hi');
    assert.deepEqual(retries, ['ECONNREFUSED'], 'tried once, then skipped');
    assert.deepEqual(proxy.totals('stable'), { requests: 3, errors5xx: 0 });
  });

  it('answers 502 when no instance can be reached', testTimeout, async () => {
    const { proxy, wsUrl } = await newProxy();
    const refused = async () => {
      const client = new WebSocket(wsUrl);
      const [error] = (await once(client, 'error')) as [Error];
      return error.message;
    };
    assert.match(await refused(), /Unexpected server response: 502/, 'no instance at all');
    proxy.setBackends([
      { id: 'dead1', port: await freePort() },
      { id: 'dead2', port: await freePort() },
    ]);
    assert.match(await refused(), /Unexpected server response: 502/, 'none answers');
    assert.deepEqual(proxy.totals('stable'), { requests: 1, errors5xx: 1 });
    const answer = await rawExchange(
      proxy,
      'GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    assert.match(
      answer,
      /^HTTP\/1\.1 502 Bad Gateway\r\n[^]*\r\n\r\ninstance of team\/app\/dev did not answer\n$/,
    );
  });

  it('passes an answer that does not switch, then closes', testTimeout, async () => {
    const { proxy } = await newProxy();
    proxy.setBackends([
      await httpInstance('old', (req) => ({
        status: 426,
        text: `needs ${String(req.headers.upgrade)}, not served`,
        inParts: true,
      })),
    ]);
    const answer = await rawExchange(
      proxy,
      'GET / HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    assert.match(answer, /^HTTP\/1\.1 426 Upgrade Required\r\n/);
    assert.match(answer, /\r\nConnection: close\r\n/);
    assert.doesNotMatch(answer, /transfer-encoding/i);
    assert.match(answer, /\r\n\r\nneeds websocket, not served$/);
    assert.deepEqual(proxy.totals('stable'), { requests: 1, errors5xx: 0 });
  });

  it('serves an offer that comes with a body as an ordinary request', testTimeout, async () => {
    const { proxy } = await newProxy();
    proxy.setBackends([
      await httpInstance('app', (req, body) => ({
        status: 200,
        text: `${req.method} ${req.url} ${body} upgrade=${String(req.headers.upgrade)}`,
      })),
    ]);
    // As curl --http2 sends a POST on http://, then a second request on the same connection.
    const answer = await rawExchange(
      proxy,
      'POST /form HTTP/1.1\r\nHost: app\r\nConnection: Upgrade, HTTP2-Settings\r\n' +
        'Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello',
      {
        after: /upgrade=undefined/,
        send: 'GET /next HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n',
      },
    );
    const answers = answer.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, 2);
    assert.match(answers[0]!, /^HTTP\/1\.1 200 OK\r\n[^]*POST \/form hello upgrade=undefined$/);
    assert.match(answers[1]!, /^HTTP\/1\.1 200 OK\r\n[^]*GET \/next {2}upgrade=undefined$/);
    assert.deepEqual(proxy.totals('stable'), { requests: 2, errors5xx: 0 });
  });

  it('holds the instance while the tunnel is open', testTimeout, async () => {
    const { proxy, wsUrl } = await newProxy();
    const old = await echoInstance('old');
    proxy.setBackends([old.backend]);
    const client = await openClient(wsUrl);
    proxy.setBackends([(await echoInstance('new')).backend]);
    assert.equal(await proxy.waitForIdle(['old'], 0), false, 'the tunnel holds it');
    assert.equal(await say(client, 'still'), 'old: still', 'the switch does not cut it');
    const drained = proxy.waitForIdle(['old'], 15_000);
    client.close();
    assert.equal(await drained, true);
  });

  it(
    'closes the instance side when the client goes away, and the other way',
    testTimeout,
    async () => {
      const { proxy, wsUrl } = await newProxy();
      const a = await echoInstance('a');
      proxy.setBackends([a.backend]);

      const closing = await openClient(wsUrl);
      closing.close();
      await a.connections[0]!.closed;

      const terminated = await openClient(wsUrl);
      await say(terminated, 'x');
      terminated.terminate();
      await a.connections[1]!.closed;

      // A reset must not reach the process as an unhandled error.
      const reset = await openClient(wsUrl);
      await say(reset, 'x');
      (reset as unknown as { _socket: Socket })._socket.resetAndDestroy();
      await a.connections[2]!.closed;

      const dropped = await openClient(wsUrl);
      await say(dropped, 'x');
      a.connections[3]!.socket.terminate();
      await once(dropped, 'close');

      assert.equal(await proxy.waitForIdle(['a'], 15_000), true);
    },
  );

  it('ends open tunnels when it closes', testTimeout, async () => {
    const { proxy, wsUrl } = await newProxy();
    const a = await echoInstance('a');
    proxy.setBackends([a.backend]);
    const client = await openClient(wsUrl);
    await say(client, 'x');
    const clientClosed = once(client, 'close');
    await proxy.close();
    await clientClosed;
    await a.connections[0]!.closed;
  });
});
