import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FileValidationError } from '../formats/yaml.js';
import { globMatch, jobOrder, matchesPush, parseWorkflow } from './workflow.js';

const file = '.valve/workflows/ci.yml';
const known = new Set(['checkout', 'build-image', 'deploy']);

function problems(text: string): string[] {
  try {
    parseWorkflow(text, file, known);
  } catch (error) {
    assert.ok(error instanceof FileValidationError, String(error));
    return error.message.split('\n');
  }
  assert.fail('expected the workflow to be rejected');
}

const valid = `name: ci
on:
  push:
    branches: [main, 'release/*']
env:
  A: 1
jobs:
  test:
    steps:
      - run: echo hi
  build:
    needs: test
    steps:
      - uses: valve/checkout@v1
      - id: image
        uses: valve/build-image@v1
        with:
          context: .
`;

test('a valid workflow parses, with env values as strings and jobs in needs order', () => {
  const workflow = parseWorkflow(valid, file, known);
  assert.equal(workflow.env?.A, '1');
  assert.deepEqual(jobOrder(workflow), ['test', 'build']);
  assert.ok(matchesPush(workflow, 'refs/heads/main'));
  assert.ok(matchesPush(workflow, 'refs/heads/release/1.0'));
  assert.ok(!matchesPush(workflow, 'refs/heads/feature'));
  assert.ok(!matchesPush(workflow, 'refs/tags/v1'));
});

test('bad workflows are rejected with file:line:column and the field', () => {
  const cases: [string, RegExp][] = [
    [
      valid.replace('      - run: echo hi', '      - run: echo hi\n        timeout: 5'),
      /ci\.yml:11:9: jobs\.test\.steps\[0\]\.timeout: /,
    ],
    [
      valid.replace('    needs: test', '    needs: tset'),
      /ci\.yml:12:12: jobs\.build\.needs\[0\]: unknown job "tset"/,
    ],
    [
      valid.replace('valve/checkout@v1', 'valve/chekout@v1'),
      /ci\.yml:14:15: jobs\.build\.steps\[0\]\.uses: unknown built-in step "chekout"/,
    ],
    [
      valid.replace('valve/checkout@v1', 'actions/checkout@v4'),
      /ci\.yml:14:15: jobs\.build\.steps\[0\]\.uses: expected a built-in step/,
    ],
    [
      valid.replace('      - run: echo hi', '      - name: nothing'),
      /ci\.yml:10:9: jobs\.test\.steps\[0\]: expected exactly one of run or uses/,
    ],
    [valid.replace('jobs:', 'jobz:'), /ci\.yml:7:1: jobz: /],
    [
      valid.replace('  test:\n', '  test:\n    needs: build\n'),
      /jobs\.(test|build)\.needs: job "(test|build)" needs itself through a cycle/,
    ],
    [
      'on: push\njobs:\n  a:\n    steps: []\n',
      /ci\.yml:4:12: jobs\.a\.steps: expected at least one step/,
    ],
    ['on: push\njobs:\n  a:\n    steps:\n      - run: [1, 2\n', /ci\.yml:\d+:\d+: /],
    ['on: push\njobs: {}\n', /ci\.yml:2:7: jobs: expected at least one job/],
  ];
  for (const [text, expected] of cases) {
    const found = problems(text);
    assert.ok(
      found.some((line) => expected.test(line)),
      `expected ${expected} in:\n${found.join('\n')}`,
    );
  }
});

test('branch globs follow GitHub Actions: * stays in a segment, ** crosses them', () => {
  assert.ok(globMatch('release/*', 'release/1'));
  assert.ok(!globMatch('release/*', 'release/1/2'));
  assert.ok(globMatch('release/**', 'release/1/2'));
  assert.ok(globMatch('main', 'main'));
  assert.ok(!globMatch('main', 'mainline'));
});
