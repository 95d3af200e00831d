import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { createNotifyStep, type NotifyPolicy } from './notify.js';
import { stepFixture, type StepFixture } from './step-fixture.js';

interface Received {
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A webhook receiver on loopback answering with the scripted statuses, then 200. */
let server: Server;
let base: string;
let received: Received[] = [];
let script: number[] = [];

before(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const status = script.shift() ?? 200;
      response.writeHead(status, status === 302 ? { location: '/elsewhere' } : {});
      response.end(status >= 400 ? `failure ${status}` : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const fixtures: StepFixture[] = [];
afterEach(async () => {
  received = [];
  script = [];
  for (const fixture of fixtures.splice(0)) await fixture.cleanup();
});

/** The step with a sleep that records the backoff instead of waiting. */
function stepWithRecordedBackoff() {
  const delays: number[] = [];
  const policy: NotifyPolicy = {
    retryDelaysMs: [1000, 2000, 4000],
    attemptTimeoutMs: 5000,
    sleep: async (ms) => {
      delays.push(ms);
    },
  };
  return { step: createNotifyStep(policy), delays };
}

async function job(): Promise<StepFixture> {
  const fixture = await stepFixture();
  fixtures.push(fixture);
  return fixture;
}

describe('valve/notify', () => {
  test('POSTs the run as JSON, signed with the secret, with extra headers', async () => {
    const { step } = stepWithRecordedBackoff();
    const fixture = await job();
    const outputs = await step.run(
      fixture.context,
      step.inputs.parse({
        url: `${base}/hooks/T000/secret-token`,
        message: 'deployed to dev',
        secret: 's3cret',
        headers: 'X-Team: acme\nX-Priority: 2',
      }),
    );
    assert.deepEqual(outputs, { 'status-code': '200' });
    assert.equal(received.length, 1);
    const [delivery] = received;
    assert.equal(delivery!.url, '/hooks/T000/secret-token');
    assert.equal(delivery!.headers['content-type'], 'application/json');
    assert.equal(delivery!.headers['x-team'], 'acme');
    assert.equal(delivery!.headers['x-priority'], '2');
    const expected = createHmac('sha256', 's3cret').update(delivery!.body).digest('hex');
    assert.equal(delivery!.headers['x-valve-signature-256'], `sha256=${expected}`);
    assert.deepEqual(JSON.parse(delivery!.body), {
      app: 'shop',
      team: 'acme',
      run: { id: 'run-1', number: 7, workflow: 'ci.yml', job: 'build' },
      commit: fixture.context.run.commit,
      ref: 'refs/heads/main',
      actor: 'alice',
      status: 'success',
      message: 'deployed to dev',
    });
    // The webhook's path may be a secret: the log names the origin only.
    assert.deepEqual(fixture.logs, [`notified ${base}: 200 (success)`]);
  });

  test('server errors are retried with backoff; the delivery id stays the same', async () => {
    const { step, delays } = stepWithRecordedBackoff();
    const fixture = await job();
    script = [503, 500];
    const outputs = await step.run(
      fixture.context,
      step.inputs.parse({ url: `${base}/hook`, status: 'deployed' }),
    );
    assert.deepEqual(outputs, { 'status-code': '200' });
    assert.equal(received.length, 3);
    assert.deepEqual(delays, [1000, 2000]);
    assert.equal(new Set(received.map((r) => r.headers['x-valve-delivery'])).size, 1);
    assert.equal(JSON.parse(received[2]!.body).status, 'deployed');
    assert.equal(received[0]!.headers['x-valve-signature-256'], undefined);
  });

  test('fails after three retries, naming the last problem', async () => {
    const { step, delays } = stepWithRecordedBackoff();
    const fixture = await job();
    script = [500, 502, 503, 504];
    await assert.rejects(
      step.run(fixture.context, step.inputs.parse({ url: `${base}/hook` })),
      new RegExp(`notify ${base} failed: HTTP 504: failure 504`),
    );
    assert.equal(received.length, 4);
    assert.deepEqual(delays, [1000, 2000, 4000]);
  });

  test('a client error or a redirect is final: no retry', async () => {
    for (const status of [400, 302]) {
      const { step, delays } = stepWithRecordedBackoff();
      const fixture = await job();
      received = [];
      script = [status];
      await assert.rejects(
        step.run(fixture.context, step.inputs.parse({ url: `${base}/hook` })),
        new RegExp(`HTTP ${status}`),
      );
      assert.equal(received.length, 1);
      assert.deepEqual(delays, []);
    }
  });

  test('network errors are retried, then fail the step', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const { step, delays } = stepWithRecordedBackoff();
    const fixture = await job();
    await assert.rejects(
      step.run(fixture.context, step.inputs.parse({ url: `http://127.0.0.1:${port}/` })),
      /failed: .*ECONNREFUSED/,
    );
    assert.deepEqual(delays, [1000, 2000, 4000]);
  });

  test('when job-end: sent by a post step with the job status, even after a cancel', async () => {
    const { step } = stepWithRecordedBackoff();
    const cancel = new AbortController();
    const fixture = await stepFixture({ signal: cancel.signal });
    fixtures.push(fixture);
    const outputs = await step.run(
      fixture.context,
      step.inputs.parse({ url: `${base}/hook`, when: 'job-end' }),
    );
    assert.deepEqual(outputs, { 'status-code': '' });
    assert.equal(received.length, 0);
    cancel.abort();
    await fixture.endJob('cancelled');
    assert.equal(received.length, 1);
    const body = JSON.parse(received[0]!.body);
    assert.equal(body.status, 'cancelled');
    assert.equal(body.message, 'acme/shop run #7 (ci.yml): cancelled');
  });

  test('inputs: only http(s) URLs, header maps without reserved or malformed headers', () => {
    const { step } = stepWithRecordedBackoff();
    const ok = (raw: Record<string, string>) => step.inputs.safeParse(raw).success;
    assert.equal(ok({ url: 'ftp://example.com/x' }), false);
    assert.equal(ok({ url: 'file:///etc/passwd' }), false);
    assert.equal(ok({ url: 'not a url' }), false);
    assert.equal(
      ok({ url: 'https://example.com/x', headers: '{"Authorization": "Bearer t"}' }),
      true,
    );
    assert.equal(
      ok({ url: 'https://example.com/x', headers: 'X-Valve-Signature-256: forged' }),
      false,
    );
    assert.equal(ok({ url: 'https://example.com/x', headers: 'Content-Type: text/plain' }), false);
    assert.equal(ok({ url: 'https://example.com/x', headers: 'Bad Name: x' }), false);
    assert.equal(ok({ url: 'https://example.com/x', headers: '- a list' }), false);
    assert.equal(ok({ url: 'https://example.com/x', headers: '{unclosed' }), false);
  });
});
