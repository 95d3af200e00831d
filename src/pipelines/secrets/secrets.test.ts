import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SecretCipher } from './cipher.js';
import { Masker } from './mask.js';

const dir = mkdtempSync(join(tmpdir(), 'valve-secrets-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('secrets are sealed with a key made on first use, bound to their owner and name', () => {
  const cipher = SecretCipher.load(dir, {});
  assert.equal(statSync(join(dir, 'secret.key')).mode & 0o777, 0o600);
  const sealed = cipher.encrypt('hunter22', 'dev/app/TOKEN');
  assert.ok(!sealed.includes('hunter22'));
  assert.notEqual(cipher.encrypt('hunter22', 'dev/app/TOKEN'), sealed, 'a fresh nonce every time');
  assert.equal(
    SecretCipher.load(dir, {}).decrypt(sealed, 'dev/app/TOKEN'),
    'hunter22',
    'the same key is used after a restart',
  );
  assert.throws(
    () => cipher.decrypt(sealed, 'ops/app/TOKEN'),
    'moved to another owner, it does not open',
  );
  assert.throws(
    () => SecretCipher.load(dir, { VALVE_SECRET_KEY: 'c2hvcnQ=' }),
    /VALVE_SECRET_KEY: expected 32 bytes/,
  );
});

test('the masker hides every value, longest first, line by line for multi-line values', () => {
  const masker = new Masker();
  masker.add('abc-secret');
  masker.add('abc-secret-longer');
  masker.add('line one\nline two');
  masker.add('xy');
  assert.equal(masker.mask('a abc-secret-longer b abc-secret c'), 'a *** b *** c');
  assert.equal(masker.mask('> line two <'), '> *** <');
  assert.equal(masker.mask('xy stays: too short to mask'), 'xy stays: too short to mask');
});
