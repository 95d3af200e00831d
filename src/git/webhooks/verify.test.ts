import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { verifyWebhook, type WebhookVerification } from './verify.js';

const body = readFileSync(new URL('./testdata/github-push.json', import.meta.url));
const secret = 'It is a secret to everybody';
const hexHmac = (key: string, data: Buffer) => createHmac('sha256', key).update(data).digest('hex');

function refused(result: WebhookVerification, pattern: RegExp): void {
  assert.equal(result.ok, false);
  if (!result.ok) assert.match(result.reason, pattern);
}

test("GitHub: the documentation's own example signature verifies", () => {
  // The test values GitHub publishes for checking an implementation.
  const result = verifyWebhook(
    'github',
    {
      'x-hub-signature-256':
        'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
    },
    Buffer.from('Hello, World!'),
    "It's a Secret to Everybody",
  );
  assert.deepEqual(result, { ok: true });
});

test('GitHub: a signature over other bytes, or with another secret, is refused', () => {
  const signature = `sha256=${hexHmac(secret, body)}`;
  assert.deepEqual(verifyWebhook('github', { 'X-Hub-Signature-256': signature }, body, secret), {
    ok: true,
  });
  // One changed byte (re-serialized JSON would differ in whitespace just the same).
  const altered = Buffer.from(body);
  const at = altered.length - 2;
  altered.writeUInt8(altered.readUInt8(at) ^ 1, at);
  refused(
    verifyWebhook('github', { 'x-hub-signature-256': signature }, altered, secret),
    /does not match the body/,
  );
  refused(
    verifyWebhook('github', { 'x-hub-signature-256': signature }, body, 'another secret'),
    /does not match the body/,
  );
});

test('GitHub: missing, SHA-1-only, garbled and repeated headers each say what is wrong', () => {
  refused(verifyWebhook('github', {}, body, secret), /X-Hub-Signature-256 header is missing/);
  refused(
    verifyWebhook('github', { 'x-hub-signature': 'sha1=0123' }, body, secret),
    /only the SHA-1 X-Hub-Signature/,
  );
  for (const garbled of [
    'sha256=xyz',
    hexHmac(secret, body),
    'sha1=abc',
    `sha256=${'a'.repeat(63)}`,
  ]) {
    refused(
      verifyWebhook('github', { 'x-hub-signature-256': garbled }, body, secret),
      /must be "sha256=" followed by 64 hex digits/,
    );
  }
  const good = `sha256=${hexHmac(secret, body)}`;
  refused(
    verifyWebhook('github', { 'x-hub-signature-256': [good, good] }, body, secret),
    /sent 2 times/,
  );
});

test('no secret configured refuses everything', () => {
  for (const provider of ['github', 'gitlab', 'gitea'] as const) {
    refused(
      verifyWebhook(provider, { 'x-gitlab-token': '', 'x-hub-signature-256': '' }, body, ''),
      /no webhook secret/,
    );
  }
});

test('Gitea: X-Gitea-Signature is the bare hex HMAC', () => {
  const hex = hexHmac(secret, body);
  assert.deepEqual(verifyWebhook('gitea', { 'x-gitea-signature': hex }, body, secret), {
    ok: true,
  });
  refused(
    verifyWebhook('gitea', { 'x-gitea-signature': hexHmac('wrong', body) }, body, secret),
    /does not match the body/,
  );
  refused(
    verifyWebhook('gitea', { 'x-gitea-signature': 'not-hex' }, body, secret),
    /X-Gitea-Signature must be 64 hex digits/,
  );
  // Gitea sends an empty signature when the webhook has no secret.
  refused(
    verifyWebhook('gitea', { 'x-gitea-signature': '' }, body, secret),
    /empty: set a secret on the Gitea webhook/,
  );
});

test("Gitea: GitHub's header, which Gitea also sends, is accepted on its own", () => {
  const signature = `sha256=${hexHmac(secret, body)}`;
  assert.deepEqual(verifyWebhook('gitea', { 'x-hub-signature-256': signature }, body, secret), {
    ok: true,
  });
  refused(verifyWebhook('gitea', {}, body, secret), /set a secret on the Gitea webhook/);
});

test('GitLab: X-Gitlab-Token must equal the secret', () => {
  assert.deepEqual(verifyWebhook('gitlab', { 'x-gitlab-token': secret }, body, secret), {
    ok: true,
  });
  for (const token of ['wrong', `${secret}x`, secret.slice(0, -1), '']) {
    refused(
      verifyWebhook('gitlab', { 'X-Gitlab-Token': token }, body, secret),
      /X-Gitlab-Token does not match/,
    );
  }
  refused(verifyWebhook('gitlab', {}, body, secret), /X-Gitlab-Token header is missing/);
});

// The Standard Webhooks specification's example, which GitLab's signing tokens follow.
const signing = {
  token: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: '1614265330',
  body: Buffer.from('{"test": 2432232314}'),
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};
const signedHeaders = (signature = signing.signature) => ({
  'webhook-id': signing.id,
  'webhook-timestamp': signing.timestamp,
  'webhook-signature': signature,
});
const sentAt = Number(signing.timestamp) * 1000;

test('GitLab signing token: a signed delivery verifies, also among several signatures', () => {
  assert.deepEqual(
    verifyWebhook('gitlab', signedHeaders(), signing.body, signing.token, { now: sentAt }),
    { ok: true },
  );
  const rotating = `v1,${Buffer.alloc(32).toString('base64')} ${signing.signature}`;
  assert.deepEqual(
    verifyWebhook('gitlab', signedHeaders(rotating), signing.body, signing.token, {
      now: sentAt,
    }),
    { ok: true },
  );
});

test('GitLab signing token: altered body, wrong id, no v1 entry and a plain token are refused', () => {
  const options = { now: sentAt };
  refused(
    verifyWebhook('gitlab', signedHeaders(), Buffer.from('{"test": 1}'), signing.token, options),
    /webhook-signature does not match/,
  );
  refused(
    verifyWebhook(
      'gitlab',
      { ...signedHeaders(), 'webhook-id': 'msg_other' },
      signing.body,
      signing.token,
      options,
    ),
    /webhook-signature does not match/,
  );
  refused(
    verifyWebhook('gitlab', signedHeaders('v2,abc'), signing.body, signing.token, options),
    /no "v1,<base64>" entry/,
  );
  // A secret that is a signing token is not accepted as a plain X-Gitlab-Token.
  refused(
    verifyWebhook('gitlab', { 'x-gitlab-token': signing.token }, signing.body, signing.token),
    /webhook-id header is missing/,
  );
});

test('GitLab signing token: a delivery from far in the past or future is refused', () => {
  const minutes = (n: number) => n * 60 * 1000;
  for (const now of [sentAt + minutes(10), sentAt - minutes(10)]) {
    refused(
      verifyWebhook('gitlab', signedHeaders(), signing.body, signing.token, { now }),
      /webhook-timestamp is 600s away/,
    );
  }
  refused(
    verifyWebhook(
      'gitlab',
      { ...signedHeaders(), 'webhook-timestamp': '2021-02-25T15:02:10Z' },
      signing.body,
      signing.token,
      { now: sentAt },
    ),
    /whole seconds/,
  );
});
