/**
 * Is this webhook delivery really from the provider the app is linked to? Each provider proves it
 * differently; all checks run over the exact bytes received (never re-serialized JSON) and
 * compare in constant time, so a forger learns nothing from how long a refusal takes.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readHeader, type WebhookHeaders } from './headers.js';

export const webhookProviders = ['github', 'gitlab', 'gitea'] as const;
export type WebhookProvider = (typeof webhookProviders)[number];

export type WebhookVerification = { ok: true } | { ok: false; reason: string };

export interface VerifyOptions {
  /** The current time in milliseconds; only GitLab's signed deliveries carry a timestamp. */
  now?: number;
}

/** GitLab signing tokens are Standard Webhooks secrets: `whsec_` and a base64 key. */
const SIGNING_TOKEN_PREFIX = 'whsec_';
/** How far a signed delivery's timestamp may be from our clock (the Standard Webhooks default). */
const TIMESTAMP_TOLERANCE_SECONDS = 5 * 60;

const ok: WebhookVerification = { ok: true };
const refuse = (reason: string): WebhookVerification => ({ ok: false, reason });

/**
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
 * - Gitea: `X-Gitea-Signature: <hex>` (same HMAC), or GitHub's header, which Gitea also sends.
 * - GitLab: `X-Gitlab-Token` equal to the secret; or, when the secret is a signing token
 *   (`whsec_...`), the `webhook-signature` over `<webhook-id>.<webhook-timestamp>.<body>`.
 */
export function verifyWebhook(
  provider: WebhookProvider,
  headers: WebhookHeaders,
  rawBody: Buffer,
  secret: string,
  options: VerifyOptions = {},
): WebhookVerification {
  if (!secret) return refuse('no webhook secret is configured for this app');
  switch (provider) {
    case 'github':
      return verifyHubSignature(headers, rawBody, secret, 'GitHub');
    case 'gitea':
      return verifyGitea(headers, rawBody, secret);
    case 'gitlab':
      return secret.startsWith(SIGNING_TOKEN_PREFIX)
        ? verifyGitlabSignature(headers, rawBody, secret, options.now ?? Date.now())
        : verifyGitlabToken(headers, secret);
    default:
      return refuse(`unknown webhook provider "${String(provider)}"`);
  }
}

function hmacSha256(key: string | Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

const HEX_DIGEST = /^[0-9a-f]{64}$/i;

function verifyHubSignature(
  headers: WebhookHeaders,
  rawBody: Buffer,
  secret: string,
  providerName: string,
): WebhookVerification {
  const header = readHeader(headers, 'X-Hub-Signature-256');
  if ('reason' in header) return refuse(header.reason);
  if ('missing' in header) {
    return refuse(
      'missing' in readHeader(headers, 'X-Hub-Signature')
        ? `X-Hub-Signature-256 header is missing: set a secret on the ${providerName} webhook`
        : 'only the SHA-1 X-Hub-Signature header was sent; Valve needs X-Hub-Signature-256',
    );
  }
  const match = /^sha256=(.*)$/.exec(header.value);
  if (!match || !HEX_DIGEST.test(match[1] ?? '')) {
    return refuse('X-Hub-Signature-256 must be "sha256=" followed by 64 hex digits');
  }
  return compareDigest(Buffer.from(match[1] ?? '', 'hex'), hmacSha256(secret, rawBody));
}

function verifyGitea(
  headers: WebhookHeaders,
  rawBody: Buffer,
  secret: string,
): WebhookVerification {
  const header = readHeader(headers, 'X-Gitea-Signature');
  if ('reason' in header) return refuse(header.reason);
  if ('missing' in header) return verifyHubSignature(headers, rawBody, secret, 'Gitea');
  // Gitea sends the header even without a secret, empty.
  if (header.value === '') {
    return refuse('X-Gitea-Signature is empty: set a secret on the Gitea webhook');
  }
  const hex = header.value.replace(/^sha256=/, '');
  if (!HEX_DIGEST.test(hex)) return refuse('X-Gitea-Signature must be 64 hex digits');
  return compareDigest(Buffer.from(hex, 'hex'), hmacSha256(secret, rawBody));
}

function compareDigest(given: Buffer, expected: Buffer): WebhookVerification {
  return given.length === expected.length && timingSafeEqual(given, expected)
    ? ok
    : refuse('signature does not match the body: wrong secret, or the body was altered');
}

function verifyGitlabToken(headers: WebhookHeaders, secret: string): WebhookVerification {
  const header = readHeader(headers, 'X-Gitlab-Token');
  if ('reason' in header) return refuse(header.reason);
  if ('missing' in header) {
    return refuse('X-Gitlab-Token header is missing: set a secret token on the GitLab webhook');
  }
  // Hashing both sides first makes the comparison constant-time whatever the lengths.
  const given = createHash('sha256').update(header.value).digest();
  const expected = createHash('sha256').update(secret).digest();
  return timingSafeEqual(given, expected)
    ? ok
    : refuse('X-Gitlab-Token does not match the webhook secret');
}

function verifyGitlabSignature(
  headers: WebhookHeaders,
  rawBody: Buffer,
  secret: string,
  now: number,
): WebhookVerification {
  const parts: Record<'webhook-id' | 'webhook-timestamp' | 'webhook-signature', string> = {
    'webhook-id': '',
    'webhook-timestamp': '',
    'webhook-signature': '',
  };
  for (const name of Object.keys(parts) as (keyof typeof parts)[]) {
    const header = readHeader(headers, name);
    if ('reason' in header) return refuse(header.reason);
    if ('missing' in header || header.value === '') {
      return refuse(
        `${name} header is missing: the app's secret is a GitLab signing token, so deliveries must be signed`,
      );
    }
    parts[name] = header.value;
  }
  const key = Buffer.from(secret.slice(SIGNING_TOKEN_PREFIX.length), 'base64');
  if (key.length === 0) return refuse('the signing token is not "whsec_" followed by base64');
  if (!/^\d+$/.test(parts['webhook-timestamp'])) {
    return refuse('webhook-timestamp must be whole seconds since 1970');
  }
  const skew = Math.abs(Math.floor(now / 1000) - Number(parts['webhook-timestamp']));
  if (skew > TIMESTAMP_TOLERANCE_SECONDS) {
    return refuse(
      `webhook-timestamp is ${skew}s away from this server's clock (more than ${TIMESTAMP_TOLERANCE_SECONDS}s): a replayed delivery, or a clock out of sync`,
    );
  }
  const expected = hmacSha256(
    key,
    Buffer.concat([Buffer.from(`${parts['webhook-id']}.${parts['webhook-timestamp']}.`), rawBody]),
  );
  // Several signatures may be sent (space-separated) while a token is being rotated.
  const candidates = parts['webhook-signature']
    .split(' ')
    .filter((entry) => entry.startsWith('v1,'))
    .map((entry) => Buffer.from(entry.slice(3), 'base64'));
  if (candidates.length === 0) {
    return refuse('webhook-signature has no "v1,<base64>" entry');
  }
  const matched = candidates.some(
    (candidate) => candidate.length === expected.length && timingSafeEqual(candidate, expected),
  );
  return matched
    ? ok
    : refuse(
        'webhook-signature does not match the body: wrong signing token, or the body was altered',
      );
}
