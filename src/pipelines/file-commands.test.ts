import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addMaskCommand, parseKeyValueFile } from './file-commands.js';

test('GITHUB_OUTPUT and GITHUB_ENV files: name=value lines and heredoc blocks', () => {
  assert.deepEqual(parseKeyValueFile('a=1\nb=x=y\nmulti<<EOF\nline 1\nline 2\nEOF\nc=\n'), {
    a: '1',
    b: 'x=y',
    multi: 'line 1\nline 2',
    c: '',
  });
  assert.deepEqual(parseKeyValueFile('crlf=1\r\n'), { crlf: '1' });
});

test('::add-mask:: lines name the value to mask', () => {
  assert.equal(addMaskCommand('::add-mask::abc'), 'abc');
  assert.equal(addMaskCommand('echo ::add-mask::abc'), null);
});
