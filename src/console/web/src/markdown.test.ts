import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseInline, parseMarkdown, safeHref } from './markdown.js';

test('headings, paragraphs, lists, code, quotes and rules', () => {
  const blocks = parseMarkdown(
    '## Tests\n\nAll *green*,\nno flakes.\n\n- one\n- two\n\n3. three\n4. four\n\n```sh\nnpm test\n  indented\n```\n> said\n\n---\n',
  );
  assert.deepEqual(
    blocks.map((b) => b.kind),
    ['heading', 'paragraph', 'list', 'list', 'code', 'quote', 'rule'],
  );
  assert.deepEqual(blocks[0], {
    kind: 'heading',
    level: 2,
    children: [{ kind: 'text', text: 'Tests' }],
  });
  assert.deepEqual(blocks[3], {
    kind: 'list',
    ordered: true,
    start: 3,
    items: [[{ kind: 'text', text: 'three' }], [{ kind: 'text', text: 'four' }]],
  });
  assert.deepEqual(blocks[4], { kind: 'code', lang: 'sh', text: 'npm test\n  indented' });
});

test('pipe tables with alignment and escaped bars', () => {
  const [table] = parseMarkdown('| job | time |\n|:--|--:|\n| a \\| b | **3s** |\n');
  assert.ok(table?.kind === 'table');
  assert.deepEqual(table.align, ['left', 'right']);
  assert.deepEqual(table.rows, [
    [
      [{ kind: 'text', text: 'a | b' }],
      [{ kind: 'strong', children: [{ kind: 'text', text: '3s' }] }],
    ],
  ]);
});

test('inline code, bold and links; snake_case is not emphasis', () => {
  assert.deepEqual(parseInline('**ok** `a*b*` my_var_name'), [
    { kind: 'strong', children: [{ kind: 'text', text: 'ok' }] },
    { kind: 'text', text: ' ' },
    { kind: 'code', text: 'a*b*' },
    { kind: 'text', text: ' my_var_name' },
  ]);
  assert.deepEqual(parseInline('[run](https://valve.example/runs/1)'), [
    {
      kind: 'link',
      href: 'https://valve.example/runs/1',
      children: [{ kind: 'text', text: 'run' }],
    },
  ]);
});

test('links to other schemes than http(s) become plain text', () => {
  assert.equal(safeHref('javascript:alert(1)'), null);
  assert.equal(safeHref('data:text/html,x'), null);
  assert.equal(safeHref('/apps/dev/hello'), '/apps/dev/hello');
  assert.deepEqual(parseInline('[x](javascript:void)'), [{ kind: 'text', text: 'x' }]);
});
