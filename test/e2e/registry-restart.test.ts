/**
 * Killing the server (SIGKILL) while large blobs stream in: after a restart on the same data
 * directory, the chunked upload resumes from the Range the registry reports, a monolithic one
 * can simply be sent again, and no partial blob is ever served under a digest.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { api, signup, startValve, type Session, type Valve } from './harness.js';

const MiB = 1024 * 1024;
const dataDir = mkdtempSync(join(tmpdir(), 'valve-registry-restart-'));
let valve: Valve | undefined;

after(async () => {
  await valve?.destroy();
  rmSync(dataDir, { recursive: true, force: true });
});

const digestOf = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

function basic(session: Session) {
  return `Basic ${Buffer.from(`${session.username}:${session.token}`).toString('base64')}`;
}

async function registryFetch(
  session: Session,
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: Buffer } = {},
) {
  return fetch(new URL(path, valve!.url), {
    method,
    headers: { authorization: basic(session), ...init.headers },
    ...(init.body ? { body: new Uint8Array(init.body) } : {}),
  });
}

/**
 * Streams `data` to the server in 1 MiB writes and kills the server once `killAfter` bytes are
 * written; resolves when the request has failed (as it must).
 */
function streamAndKill(
  session: Session,
  method: string,
  path: string,
  headers: Record<string, string>,
  data: Buffer,
  killAfter: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, valve!.url);
    const req = httpRequest(url, {
      method,
      headers: {
        authorization: basic(session),
        'content-type': 'application/octet-stream',
        'content-length': String(data.length),
        ...headers,
      },
    });
    req.on('response', (response) =>
      reject(new Error(`the upload finished (${response.statusCode}) before the kill`)),
    );
    req.on('error', () => resolve());
    let offset = 0;
    const writeMore = () => {
      while (offset < killAfter) {
        const chunk = data.subarray(offset, offset + MiB);
        offset += chunk.length;
        if (!req.write(chunk)) {
          req.once('drain', writeMore);
          return;
        }
      }
      // Give the server a moment to write what it received, then kill it mid-request.
      setTimeout(() => void valve!.kill(), 200);
    };
    writeMore();
  });
}

test('a server killed during large uploads: the upload resumes or restarts, no partial blob is served', async () => {
  valve = await startValve({ dataDir });
  const alice = await signup(valve, 'alice', 'dev');
  const created = await api(valve, alice.token, 'POST', '/api/apps', {
    team: 'dev',
    name: 'big',
    template: 'node-http',
  });
  assert.equal(created.status, 201);

  const chunked = randomBytes(96 * MiB);
  const monolithic = randomBytes(48 * MiB);
  const chunkedDigest = digestOf(chunked);
  const monolithicDigest = digestOf(monolithic);

  // A chunked upload: a first chunk completes, the second is cut by the kill.
  const started = await registryFetch(alice, 'POST', '/v2/dev/big/blobs/uploads/');
  assert.equal(started.status, 202);
  const location = started.headers.get('location')!;
  const first = await registryFetch(alice, 'PATCH', location, {
    headers: { 'content-type': 'application/octet-stream', 'content-range': `0-${32 * MiB - 1}` },
    body: chunked.subarray(0, 32 * MiB),
  });
  assert.equal(first.status, 202);
  assert.equal(first.headers.get('range'), `0-${32 * MiB - 1}`);
  await streamAndKill(
    alice,
    'PATCH',
    location,
    { 'content-range': `${32 * MiB}-${chunked.length - 1}` },
    chunked.subarray(32 * MiB),
    24 * MiB,
  );

  valve = await startValve({ dataDir });
  // A monolithic upload, cut the same way.
  await streamAndKill(
    alice,
    'POST',
    `/v2/dev/big/blobs/uploads/?digest=${monolithicDigest}`,
    {},
    monolithic,
    20 * MiB,
  );

  valve = await startValve({ dataDir });
  for (const digest of [chunkedDigest, monolithicDigest]) {
    const head = await registryFetch(alice, 'HEAD', `/v2/dev/big/blobs/${digest}`);
    assert.equal(head.status, 404, `no partial blob under ${digest}`);
  }

  // The chunked upload resumes where the registry says it stands.
  const status = await registryFetch(alice, 'GET', location);
  assert.equal(status.status, 204);
  const range = /^0-(\d+)$/.exec(status.headers.get('range') ?? '');
  assert.ok(range, `Range header: ${status.headers.get('range')}`);
  const have = Number(range[1]) + 1;
  assert.ok(have >= 32 * MiB && have < chunked.length, `resume point ${have}`);
  const rest = await registryFetch(alice, 'PUT', `${location}?digest=${chunkedDigest}`, {
    headers: {
      'content-type': 'application/octet-stream',
      'content-range': `${have}-${chunked.length - 1}`,
    },
    body: chunked.subarray(have),
  });
  assert.equal(rest.status, 201, await rest.text());

  // The monolithic upload is simply sent again.
  const again = await registryFetch(
    alice,
    'POST',
    `/v2/dev/big/blobs/uploads/?digest=${monolithicDigest}`,
    { headers: { 'content-type': 'application/octet-stream' }, body: monolithic },
  );
  assert.equal(again.status, 201, await again.text());

  for (const [digest, data] of [
    [chunkedDigest, chunked],
    [monolithicDigest, monolithic],
  ] as const) {
    const pulled = await registryFetch(alice, 'GET', `/v2/dev/big/blobs/${digest}`);
    assert.equal(pulled.status, 200);
    const body = Buffer.from(await pulled.arrayBuffer());
    assert.equal(body.length, data.length);
    assert.equal(digestOf(body), digest);
  }
});
