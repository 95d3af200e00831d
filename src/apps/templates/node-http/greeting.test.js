import { test } from 'node:test';
import assert from 'node:assert/strict';
import { greeting } from './greeting.js';

test('greeting names the app', () => {
  assert.match(greeting('Hello'), /^Hello from {{app}}/);
});
